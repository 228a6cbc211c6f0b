// HubChunkSource: a hub's copy of a tenant's snapshots as a ChunkSource, so
// that restore and verify run on the operator's machine: sealed chunks,
// wrapped data keys, manifests and reference sets come over the hub's REST
// API (docs/api.md "Manifest and refs", "Chunks and data keys") and are
// decrypted and checked here with the tenant keyset. The hub never sees a key.
//
// Nothing the hub sends is trusted: manifests are checked (signature, and
// that they hash to the id asked for), every chunk against its id after
// decryption (ChunkReader), the reference set against the signed manifest.
//
// Errors: kNotFound for an object the hub does not have; kDataLoss for a
// forged or damaged one; the HubClient's errors otherwise (kUnavailable...).
// Thread-safety: thread-safe (the client is).
#pragma once

#include <atomic>
#include <string>

#include "ctl/hub_client.h"
#include "snapshot/chunk_source.h"

namespace ferry::ctl {

class HubChunkSource : public snapshot::ChunkSource {
 public:
  // `client` must outlive this. `tenant`: a valid tenant name.
  HubChunkSource(HubClient& client, std::string tenant);

  Status ReadSealedChunk(const snapshot::ChunkId& id, Bytes& out) override;
  Result<Bytes> WrappedKey(const snapshot::KeyId& id) override;
  Result<snapshot::ParsedManifest> LoadManifest(const snapshot::SnapshotId& id) override;
  Result<Bytes> ReadRefs(const snapshot::SnapshotId& id, uint64_t max_bytes) override;

  // Bytes downloaded so far (sealed chunks, keys, manifests, refs).
  uint64_t bytes_downloaded() const { return downloaded_.load(std::memory_order_relaxed); }

 private:
  HubClient& client_;
  const std::string prefix_;  // "/v1/tenants/<tenant>"
  std::atomic<uint64_t> downloaded_{0};
};

}  // namespace ferry::ctl
