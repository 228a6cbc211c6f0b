#include "snapshot/manifest_commit.h"

#include <unistd.h>

#include "core/env.h"
#include "core/sodium.h"
#include "core/version.h"

namespace ferry::snapshot {

void SetManifestOrigin(pb::Manifest& m, const Keyset& keyset, const RefSetSummaryInfo& refs) {
  m.set_keyset_id(keyset.id().data(), keyset.id().size());
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  m.set_hostname(host);
  m.set_ferry_version(kFerryVersion);
  pb::RefSetSummary* rs = m.mutable_refs();
  rs->set_count(refs.count);
  rs->set_sealed_bytes(refs.sealed_bytes);
  rs->set_digest(refs.digest.data(), refs.digest.size());
}

std::string NewRefsPath(LocalStore& store) {
  return store.tmp_dir() + "/refs-" + HexEncode(sodium::RandomArray<8>()) + ".tmp";
}

Result<ParsedManifest> SignAndCommit(LocalStore& store, const Keyset& keyset, const pb::Manifest& m,
                                     const std::string& refs_path) {
  Result<Bytes> envelope = SignManifest(m, keyset.signing_key());
  Result<ParsedManifest> parsed = envelope.ok() ? ParseManifest(std::move(*envelope), "(new)")
                                                : Result<ParsedManifest>(envelope.status());
  Status committed = parsed.ok() ? store.CommitSnapshot(*parsed, refs_path) : parsed.status();
  if (!committed.ok()) {
    Env::Default()->RemoveFile(refs_path).IgnoreError();
    return committed;
  }
  return parsed;
}

}  // namespace ferry::snapshot
