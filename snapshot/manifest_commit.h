// The last steps every writer of a snapshot into a LocalStore shares
// (volume captures, stream cuts): the manifest's origin fields and
// reference-set summary, then sign, check and commit.
//
// Errors: SignManifest's and the store's CommitSnapshot's.
// Thread-safety: as the store's CommitSnapshot.
#pragma once

#include <string>

#include "core/status.h"
#include "snapshot/keyset.h"
#include "snapshot/local_store.h"
#include "snapshot/manifest.h"
#include "snapshot/ref_set.h"

namespace ferry::snapshot {

// Sets the keyset id, this host's name, the Ferry version and the
// reference set's summary (count, sealed bytes, digest).
void SetManifestOrigin(pb::Manifest& m, const Keyset& keyset, const RefSetSummaryInfo& refs);

// A fresh path in the store's tmp/ for a snapshot's reference set.
std::string NewRefsPath(LocalStore& store);

// Signs `m` with the keyset's signing key and commits it with the refs file
// at `refs_path` (which the store takes over; removed if the commit fails).
Result<ParsedManifest> SignAndCommit(LocalStore& store, const Keyset& keyset, const pb::Manifest& m,
                                     const std::string& refs_path);

}  // namespace ferry::snapshot
