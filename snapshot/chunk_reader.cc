#include "snapshot/chunk_reader.h"

namespace ferry::snapshot {

Result<std::shared_ptr<const SecretBytes>> ChunkReader::Key(const KeyId& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = keys_.find(id); it != keys_.end()) return it->second;
  }
  ASSIGN_OR_RETURN(Bytes wrapped, source_.WrappedKey(id));
  ASSIGN_OR_RETURN(SecretBytes key, keyset_.UnwrapDataKey(id, wrapped));
  auto shared = std::make_shared<const SecretBytes>(std::move(key));
  std::lock_guard<std::mutex> lock(mu_);
  keys_.emplace(id, shared);
  return shared;
}

Result<Bytes> ChunkReader::Read(const ChunkId& id, uint32_t expected_size) {
  Bytes plain;
  RETURN_IF_ERROR(Read(id, expected_size, plain));
  return plain;
}

Status ChunkReader::Read(const pb::ChunkRef& ref, Bytes& plaintext) {
  ASSIGN_OR_RETURN(ChunkId id, ArrayFromBytes<32>(AsBytes(ref.id()), "chunk id"));
  return Read(id, ref.size(), plaintext);
}

Status ChunkReader::Read(const ChunkId& id, uint32_t expected_size, Bytes& plaintext) {
  thread_local Bytes sealed;
  RETURN_IF_ERROR(source_.ReadSealedChunk(id, sealed));
  ASSIGN_OR_RETURN(SealedChunkHeader header, ParseSealedChunkHeader(sealed));
  if (header.plain_len != expected_size) {
    return DataLossError("chunk " + HexEncode(ByteView(id.data(), 8)) + " holds " +
                         std::to_string(header.plain_len) + " bytes where its tree says " +
                         std::to_string(expected_size));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const SecretBytes> key, Key(header.key_id));
  return OpenChunk(id, sealed, *key, keyset_.chunk_id_hasher(), plaintext);
}

Result<Bytes> ChunkReader::Read(const pb::ChunkRef& ref) {
  ASSIGN_OR_RETURN(ChunkId id, ArrayFromBytes<32>(AsBytes(ref.id()), "chunk id"));
  return Read(id, ref.size());
}

Result<Bytes> ChunkReader::ReadAll(const google::protobuf::RepeatedPtrField<pb::ChunkRef>& refs,
                                   size_t max_total) {
  uint64_t total = 0;
  for (const pb::ChunkRef& r : refs) total += r.size();
  if (total > max_total) {
    return DataLossError("object of " + std::to_string(total) + " bytes exceeds the limit of " +
                         std::to_string(max_total));
  }
  Bytes out;
  out.reserve(static_cast<size_t>(total));
  for (const pb::ChunkRef& r : refs) {
    ASSIGN_OR_RETURN(Bytes part, Read(r));
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

}  // namespace ferry::snapshot
