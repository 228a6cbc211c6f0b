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

Result<ChunkResult> ChunkWriter::Write(ByteView plaintext, const DeltaContext* delta) {
  if (plaintext.size() > kMaxChunkSize) {
    return InvalidArgumentError("chunk larger than the limit");
  }
  ChunkResult r;
  r.content_id = keyset_.ChunkIdOf(plaintext);
  r.id = r.content_id;
  r.plain_size = static_cast<uint32_t>(plaintext.size());
  stats_.chunks.fetch_add(1, std::memory_order_relaxed);
  stats_.plain_bytes.fetch_add(plaintext.size(), std::memory_order_relaxed);

  if (delta != nullptr && delta->want_signature) {
    const ByteView* known = nullptr;
    if (delta->known_signatures != nullptr) {
      auto it = delta->known_signatures->find(r.content_id);
      if (it != delta->known_signatures->end()) known = &it->second;
    }
    if (known != nullptr) {
      r.signature.assign(known->begin(), known->end());
    } else {
      r.signature = delta::ComputeSignature(*delta->hasher, plaintext);
    }
  }
  ASSIGN_OR_RETURN(std::optional<uint32_t> existing, sink_.ChunkSealedSize(r.content_id));
  if (existing) {
    r.sealed_size = *existing;
    return r;
  }
  if (delta != nullptr) {
    // Content already held as a delta chunk: reference that.
    std::optional<KnownDelta> found;
    if (delta->known_deltas != nullptr) {
      auto it = delta->known_deltas->find(r.content_id);
      if (it != delta->known_deltas->end()) found = it->second;
    }
    if (!found) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = written_deltas_.find(r.content_id);
      if (it != written_deltas_.end()) found = it->second;
    }
    if (found) {
      ASSIGN_OR_RETURN(std::optional<uint32_t> size, sink_.ChunkSealedSize(found->id));
      if (size && *size == found->sealed_size) {
        r.id = found->id;
        r.sealed_size = found->sealed_size;
        r.bases = std::move(found->bases);
        return r;
      }
    }
  }
  // Two workers may seal the same new bytes at once (identical chunks in
  // flight together); the sink keeps one and says which.
  auto key = KeyFor(plaintext.size());
  thread_local Bytes sealed;
  sealed.clear();
  std::optional<delta::Encoded> encoded;
  if (delta != nullptr && delta->index != nullptr && !delta->index->empty() &&
      delta->base_sealed_sizes != nullptr) {
    encoded = delta::Encode(*delta->hasher, *delta->index, plaintext, plaintext.size() / 2);
  }
  if (encoded) {
    for (const ChunkId& base : encoded->bases) {
      auto size = delta->base_sealed_sizes->find(base);
      if (size == delta->base_sealed_sizes->end()) {
        return InternalError("delta made from a base whose sealed size is not known");
      }
      r.bases.emplace_back(base, size->second);
    }
    r.id = delta->hasher->DeltaId(encoded->payload);
    ASSIGN_OR_RETURN(std::optional<uint32_t> same, sink_.ChunkSealedSize(r.id));
    if (same) {  // the same delta, stored before
      r.sealed_size = *same;
      return r;
    }
    RETURN_IF_ERROR(SealDeltaChunk(r.id, r.content_id, encoded->payload, encoded->bases, key->key,
                                   sealed, seal_options_));
  } else {
    RETURN_IF_ERROR(SealChunk(r.id, plaintext, key->key, sealed, seal_options_));
  }
  ASSIGN_OR_RETURN(PutResult put, sink_.PutChunk(r.id, sealed, key->key.id, key->wrapped));
  r.sealed_size = put.sealed_size;
  r.is_new = put.added;
  if (encoded) {
    std::lock_guard<std::mutex> lock(mu_);
    if (written_deltas_.size() < kMaxWrittenDeltas) {
      written_deltas_.emplace(r.content_id, KnownDelta{r.id, r.sealed_size, r.bases});
    }
  }
  if (r.is_new) {
    stats_.new_chunks.fetch_add(1, std::memory_order_relaxed);
    stats_.new_plain_bytes.fetch_add(plaintext.size(), std::memory_order_relaxed);
    stats_.stored_bytes.fetch_add(sealed.size(), std::memory_order_relaxed);
    if (encoded) {
      stats_.delta_chunks.fetch_add(1, std::memory_order_relaxed);
      stats_.delta_plain_bytes.fetch_add(plaintext.size(), std::memory_order_relaxed);
    }
  }
  return r;
}

}  // namespace ferry::snapshot
