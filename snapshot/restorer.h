// Restore and verify of volume snapshots from a ChunkSource: a LocalStore,
// or a remote store such as a hub (the operator CLI over HTTP). Nothing the
// source returns is trusted: the manifest's signature and id, every chunk
// against its id, every tree's structure are checked.
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

#include "snapshot/chunk_source.h"
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
  // Called with the bytes of file content just written, from the worker
  // threads (keep it cheap and thread-safe): progress display.
  std::function<void(uint64_t bytes)> on_progress;
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

// Restores snapshot `id` of `source` into `target` (absent or empty, unless
// options.force). kFailedPrecondition when the keyset cannot decrypt or is
// not the snapshot's; kDataLoss for damaged or hostile snapshot data;
// kNotFound for an unknown sub_path or a snapshot, chunk or key the source
// does not have; other errors of the source (e.g. kUnavailable) pass
// through. A restore that fails part way leaves what it wrote in `target`.
Result<RestoreReport> RestoreSnapshot(ChunkSource& source, const Keyset& keyset,
                                      const SnapshotId& id, const std::string& target,
                                      const RestoreOptions& options = {});

// The largest reference set a remote verify reads (bytes, about 7.4 million
// chunks): a hub serves reference sets up to this size and answers 501 above
// it (cloud-hub/rest_api.cc, kMaxRefsBytes). The whole object is held in
// memory while it is checked.
inline constexpr uint64_t kMaxRemoteRefsBytes = uint64_t{256} << 20;

struct VerifyReport {
  uint64_t files = 0;
  uint64_t directories = 0;
  uint64_t chunks_read = 0;  // chunk reads (data and trees), each decrypted and checked
  uint64_t bytes_read = 0;   // plaintext bytes checked
  // Entries of the reference set checked: found in the store's index with
  // their sealed size (local), or read by the walk with their sealed size
  // (remote).
  uint64_t refs_checked = 0;
  // Packs holding the snapshot whose footer and index were checked. Local
  // stores only: always 0 when `remote`.
  uint64_t packs_checked = 0;
  // True when verified through a ChunkSource rather than a LocalStore: the
  // store's index and packs were not checked (print "pack checks: skipped
  // (remote)"); the reference set was matched against the chunks the walk
  // read instead.
  bool remote = false;
  double seconds = 0;
};

// Verify reads every chunk of a snapshot and writes nothing: it loads the
// manifest (signature, id, keyset), walks every tree (checking its
// structure) and decrypts every chunk (checking it against its id and size),
// then checks that the reference set is the one the manifest signs (digest
// and count). Errors: as RestoreSnapshot; kDataLoss for any damage or
// mismatch found, naming what and where.

// Verify of a local store: also checks that every entry of the reference set
// (streamed from its file) is in the store's index with its sealed size, and
// the footer and index of every pack that holds one of its chunks. Memory
// does not grow with the number of chunks.
// `on_progress` (optional) gets the plaintext bytes of each chunk checked,
// on the calling thread.
Result<VerifyReport> VerifySnapshot(LocalStore& store, const Keyset& keyset, const SnapshotId& id,
                                    size_t workers = 0,
                                    const std::function<void(uint64_t)>& on_progress = {});

// Verify through any source, for remote stores (report.remote is true, even
// for a LocalStore passed as a ChunkSource&): the reference set is read with
// ReadRefs (at most kMaxRemoteRefsBytes, else the source's
// kResourceExhausted passes through), and must name exactly the chunks the
// walk read — trees and data — each with the sealed size the source
// returned for it. Memory grows with the snapshot: the reference set, plus
// about 36 bytes per distinct chunk read (at most twice that between
// compactions).
Result<VerifyReport> VerifySnapshot(ChunkSource& source, const Keyset& keyset, const SnapshotId& id,
                                    size_t workers = 0,
                                    const std::function<void(uint64_t)>& on_progress = {});

}  // namespace ferry::snapshot
