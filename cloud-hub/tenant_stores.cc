#include "cloud-hub/tenant_stores.h"

#include "cloud-hub/catalog.h"
#include "core/env.h"

namespace ferry::hub {

TenantStores::TenantStores(std::string data_dir, snapshot::LocalStoreOptions options)
    : data_dir_(std::move(data_dir)), options_(options) {}

TenantStores::~TenantStores() { FlushAll().IgnoreError(); }

std::string TenantStores::StoreDir(const std::string& tenant) const {
  return data_dir_ + "/tenants/" + tenant + "/store";
}

Result<snapshot::ChunkStore*> TenantStores::Get(const std::string& tenant) {
  RETURN_IF_ERROR(ValidateName("tenant", tenant));
  std::lock_guard lock(mu_);
  auto it = stores_.find(tenant);
  if (it != stores_.end()) return it->second.get();
  RETURN_IF_ERROR(Env::Default()->CreateDirs(data_dir_ + "/tenants/" + tenant, 0700));
  ASSIGN_OR_RETURN(std::unique_ptr<snapshot::LocalStore> store,
                   snapshot::LocalStore::OpenOrCreate(StoreDir(tenant), options_));
  snapshot::LocalStore* raw = store.get();
  stores_.emplace(tenant, std::move(store));
  return raw;
}

Status TenantStores::FlushAll() {
  std::lock_guard lock(mu_);
  Status first;
  for (auto& [name, store] : stores_) {
    Status s = store->Flush();
    if (!s.ok() && first.ok()) first = s.WithContext("tenant " + name);
  }
  return first;
}

std::vector<std::string> TenantStores::OpenTenants() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> names;
  for (const auto& [name, store] : stores_) names.push_back(name);
  return names;
}

}  // namespace ferry::hub
