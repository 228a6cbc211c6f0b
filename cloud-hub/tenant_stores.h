// TenantStores: one chunk store per tenant under DATA/tenants/<tenant>/store,
// opened for writing on first use and kept open. A tenant's chunks never
// share a store with another tenant's: a missing-chunks query can only ever
// reveal what the asking tenant itself uploaded.
//
// Callers see the snapshot::ChunkStore interface; the local pack store
// (snapshot::LocalStore) is the one implementation for now, and S3-compatible
// object storage comes behind the same interface with its own issue.
// Thread-safety: thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/status.h"
#include "snapshot/local_store.h"

namespace ferry::hub {

class TenantStores {
 public:
  // `data_dir` must exist.
  explicit TenantStores(std::string data_dir, snapshot::LocalStoreOptions options = {});
  ~TenantStores();

  // The tenant's store, created on first use. The tenant name must be valid
  // (ValidateName); existence in the catalog is the caller's business.
  Result<snapshot::ChunkStore*> Get(const std::string& tenant);
  // Makes every open store durable (Flush).
  Status FlushAll();
  std::string StoreDir(const std::string& tenant) const;
  std::vector<std::string> OpenTenants() const;

 private:
  const std::string data_dir_;
  const snapshot::LocalStoreOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<snapshot::LocalStore>> stores_;
};

}  // namespace ferry::hub
