#include "snapshot/chunk_writer.h"

namespace ferry::snapshot {

ChunkWriter::ChunkWriter(const Keyset& keyset, ChunkSink& sink, SealOptions seal_options,
                         uint64_t key_rotation_bytes)
    : keyset_(keyset),
      sink_(sink),
      seal_options_(seal_options),
      key_rotation_bytes_(key_rotation_bytes) {}

std::shared_ptr<const Keyset::NewDataKey> ChunkWriter::KeyFor(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!key_ || key_bytes_ >= key_rotation_bytes_) {
    key_ = std::make_shared<const Keyset::NewDataKey>(keyset_.MakeDataKey());
    key_bytes_ = 0;
  }
  key_bytes_ += bytes;
  return key_;
}

Result<ChunkResult> ChunkWriter::Write(ByteView plaintext) {
  if (plaintext.size() > kMaxChunkSize) {
    return InvalidArgumentError("chunk larger than the limit");
  }
  ChunkResult r;
  r.id = keyset_.ChunkIdOf(plaintext);
  r.plain_size = static_cast<uint32_t>(plaintext.size());
  stats_.chunks.fetch_add(1, std::memory_order_relaxed);
  stats_.plain_bytes.fetch_add(plaintext.size(), std::memory_order_relaxed);

  ASSIGN_OR_RETURN(std::optional<uint32_t> existing, sink_.ChunkSealedSize(r.id));
  if (existing) {
    r.sealed_size = *existing;
    return r;
  }
  // Two workers may seal the same new bytes at once (identical chunks in
  // flight together); the sink keeps one and says which.
  auto key = KeyFor(plaintext.size());
  thread_local Bytes sealed;
  sealed.clear();
  Status s = SealChunk(r.id, plaintext, key->key, sealed, seal_options_);
  RETURN_IF_ERROR(s);
  ASSIGN_OR_RETURN(PutResult put, sink_.PutChunk(r.id, sealed, key->key.id, key->wrapped));
  r.sealed_size = put.sealed_size;
  r.is_new = put.added;
  if (r.is_new) {
    stats_.new_chunks.fetch_add(1, std::memory_order_relaxed);
    stats_.new_plain_bytes.fetch_add(plaintext.size(), std::memory_order_relaxed);
    stats_.stored_bytes.fetch_add(sealed.size(), std::memory_order_relaxed);
  }
  return r;
}

}  // namespace ferry::snapshot
