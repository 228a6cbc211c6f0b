// Restore and verify of volume snapshots from a LocalStore.
//
// Restore treats every tree as hostile even though it decrypted: names are
// validated (no '/', no "..", no NUL, no empty or duplicate names), the
// target is only ever reached through directory file descriptors that the
// restore itself created (openat with O_NOFOLLOW), so no path and no symlink
// in the snapshot can make it write outside the target. Symlinks whose
// target is absolute or climbs out of the restore target are refused unless
// allowed. Every chunk is checked against its id after decryption.
//
// Thread-safety: functions may run concurrently on different targets.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "snapshot/keyset.h"
#include "snapshot/local_store.h"

namespace ferry::snapshot {

struct RestoreOptions {
  // A path inside the dataset ("a/b"); the entry it names is restored into the
  // target under its own name. Empty: the dataset's contents go directly into
  // the target.
  std::string sub_path;
  // Restore into a non-empty target, replacing entries that are in the way.
  bool force = false;
  // Restore symlinks whose target is absolute or leaves the restore target.
  bool allow_external_symlinks = false;
  // Restore uid/gid (needs root). Default: when running as root.
  bool restore_ownership;
  size_t workers = 0;  // 0 = the CPUs available
  std::function<void(const std::string&)> on_warning;
  RestoreOptions();
};

struct RestoreReport {
  uint64_t files = 0;
  uint64_t directories = 0;
  uint64_t symlinks = 0;
  uint64_t hardlinks = 0;
  uint64_t bytes = 0;
  std::vector<std::string> refused;  // "path: reason" — entries not restored
  std::vector<std::string> warnings;
  double seconds = 0;
};

// Restores snapshot `id` into `target` (absent or empty, unless options.force).
// kFailedPrecondition when the keyset cannot decrypt or is not the snapshot's;
// kDataLoss for damaged or hostile snapshot data; kNotFound for an unknown sub_path.
Result<RestoreReport> RestoreSnapshot(LocalStore& store, const Keyset& keyset, const SnapshotId& id,
                                      const std::string& target,
                                      const RestoreOptions& options = {});

struct VerifyReport {
  uint64_t files = 0;
  uint64_t directories = 0;
  uint64_t chunks_read = 0;    // chunk reads (data and trees), each decrypted and checked
  uint64_t bytes_read = 0;     // plaintext bytes checked
  uint64_t refs_checked = 0;   // entries of the reference set found in the index
  uint64_t packs_checked = 0;  // packs holding the snapshot: footer and index checked
  double seconds = 0;
};

// Reads and checks every chunk of a snapshot: decrypts each, checks it
// against its id and size, checks every tree's structure, checks that the
// reference set matches the manifest and is present in the store, and checks
// the footer and index of every pack that holds one of its chunks.
Result<VerifyReport> VerifySnapshot(LocalStore& store, const Keyset& keyset, const SnapshotId& id,
                                    size_t workers = 0);

}  // namespace ferry::snapshot
