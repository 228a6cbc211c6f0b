#include "snapshot/chunk_reader.h"

#include "snapshot/delta.h"
#include "snapshot/sealed_chunk.h"

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
  return ReadAt(id, expected_size, plaintext, 0);
}

Status ChunkReader::ReadAt(const ChunkId& id, std::optional<uint32_t> expected_size,
                           Bytes& plaintext, int depth) {
  thread_local Bytes sealed;
  RETURN_IF_ERROR(source_.ReadSealedChunk(id, sealed));
  ASSIGN_OR_RETURN(SealedChunkHeader header, ParseSealedChunkHeader(sealed));
  if (!header.is_delta() && expected_size && header.plain_len != *expected_size) {
    return DataLossError("chunk " + HexEncode(ByteView(id.data(), 8)) + " holds " +
                         std::to_string(header.plain_len) + " bytes where its tree says " +
                         std::to_string(*expected_size));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const SecretBytes> key, Key(header.key_id));
  if (!header.is_delta()) {
    return OpenChunkPayload(id, sealed, *key, keyset_.chunk_id_hasher(), plaintext, header);
  }
  // A delta chunk: its payload says how to rebuild it from its bases.
  const std::string what = "delta chunk " + HexEncode(ByteView(id.data(), 8));
  if (depth >= kMaxDeltaDepth) {
    return DataLossError(what + " is more than " + std::to_string(kMaxDeltaDepth) +
                         " deltas away from a whole chunk");
  }
  Bytes payload;
  RETURN_IF_ERROR(OpenChunkPayload(id, sealed, *key, keyset_.chunk_id_hasher(), payload, header));
  if (DeltaHasher().DeltaId(payload) != id) {
    return DataLossError(what + ": payload does not match its id");
  }
  Result<delta::ParsedDelta> parsed_or = delta::Parse(payload);
  if (!parsed_or.ok()) return parsed_or.status().WithContext(what);
  const delta::ParsedDelta& parsed = *parsed_or;
  if (parsed.bases != header.bases) {
    return DataLossError(what + ": its payload and its header name different bases");
  }
  if (expected_size && parsed.size != *expected_size) {
    return DataLossError(what + " rebuilds " + std::to_string(parsed.size) +
                         " bytes where its tree says " + std::to_string(*expected_size));
  }
  std::vector<Bytes> bases(parsed.bases.size());
  std::vector<ByteView> views(parsed.bases.size());
  for (size_t i = 0; i < parsed.bases.size(); ++i) {
    RETURN_IF_ERROR(ReadAt(parsed.bases[i], std::nullopt, bases[i], depth + 1)
                        .WithContext(what + ", base " + std::to_string(i)));
    views[i] = bases[i];
  }
  RETURN_IF_ERROR(delta::Apply(parsed, views, plaintext).WithContext(what));
  // A block the writer matched wrongly (its signatures are only evidence)
  // is caught here: the content must have the id the writer computed.
  if (keyset_.ChunkIdOf(plaintext) != header.content_id) {
    plaintext.clear();
    return DataLossError(what + ": rebuilt content does not match its content id");
  }
  return OkStatus();
}

const delta::BlockHasher& ChunkReader::DeltaHasher() {
  std::call_once(delta_hasher_once_, [this] {
    delta_hasher_ = std::make_unique<delta::BlockHasher>(keyset_.chunk_id_hasher());
  });
  return *delta_hasher_;
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
