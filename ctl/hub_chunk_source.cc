#include "ctl/hub_chunk_source.h"

#include "snapshot/types.h"

namespace ferry::ctl {

namespace {

// A sealed chunk is its plaintext bound plus a small header and tag; allow
// generous room over the largest chunk.
constexpr uint64_t kMaxSealedChunkDownload = uint64_t{snapshot::kMaxChunkSize} + (64 << 10);
constexpr uint64_t kMaxKeyDownload = 64 << 10;
constexpr uint64_t kMaxManifestDownload = snapshot::kMaxManifestBodySize + (64 << 10);

}  // namespace

HubChunkSource::HubChunkSource(HubClient& client, std::string tenant)
    : client_(client), prefix_("/v1/tenants/" + tenant) {}

Status HubChunkSource::ReadSealedChunk(const snapshot::ChunkId& id, Bytes& out) {
  ASSIGN_OR_RETURN(HubAnswer a, client_.Call("GET", prefix_ + "/chunks/" + HexEncode(id), "", "",
                                             kMaxSealedChunkDownload));
  out.assign(a.body.begin(), a.body.end());
  downloaded_.fetch_add(out.size(), std::memory_order_relaxed);
  return OkStatus();
}

Result<Bytes> HubChunkSource::WrappedKey(const snapshot::KeyId& id) {
  ASSIGN_OR_RETURN(Bytes key,
                   client_.Download(prefix_ + "/keys/" + HexEncode(id), kMaxKeyDownload));
  downloaded_.fetch_add(key.size(), std::memory_order_relaxed);
  return key;
}

Result<snapshot::ParsedManifest> HubChunkSource::LoadManifest(const snapshot::SnapshotId& id) {
  const std::string hex = HexEncode(id);
  Result<Bytes> downloaded =
      client_.Download(prefix_ + "/snapshots/" + hex + "/manifest", kMaxManifestDownload);
  if (!downloaded.ok() && downloaded.status().code() == StatusCode::kNotFound) {
    return NotFoundError(downloaded.status().message() + " (see ferryctl snapshot list)");
  }
  ASSIGN_OR_RETURN(Bytes envelope, std::move(downloaded));
  downloaded_.fetch_add(envelope.size(), std::memory_order_relaxed);
  ASSIGN_OR_RETURN(snapshot::ParsedManifest m,
                   snapshot::ParseManifest(std::move(envelope), "the hub's manifest of " + hex));
  if (m.id != id) {
    return DataLossError("the hub answered snapshot " + hex + " with the manifest of " +
                         HexEncode(m.id) + " (forged or damaged)");
  }
  return m;
}

Result<Bytes> HubChunkSource::ReadRefs(const snapshot::SnapshotId& id, uint64_t max_bytes) {
  Result<Bytes> refs =
      client_.Download(prefix_ + "/snapshots/" + HexEncode(id) + "/refs", max_bytes);
  if (!refs.ok() && refs.status().code() == StatusCode::kDataLoss) {
    return ResourceExhaustedError("the reference set of " + HexEncode(id) + " is over " +
                                  std::to_string(max_bytes) + " bytes");
  }
  if (refs.ok()) downloaded_.fetch_add(refs->size(), std::memory_order_relaxed);
  return refs;
}

}  // namespace ferry::ctl
