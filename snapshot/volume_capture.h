// Volume capture: a consistent, encrypted, deduplicated snapshot of a
// directory tree into a LocalStore.
//
// What is captured: regular files (content, sparse holes as extents), directories,
// symlinks, hard links, mode, uid/gid, mtime in ns, user.* xattrs; names as
// byte strings. Sockets, FIFOs and devices are skipped with a warning.
//
// Excludes: entries matching one of CaptureOptions::excludes (fnmatch(3)
// glob patterns) are left out — not read, not stored, a directory not
// descended into — and counted in CaptureReport::excluded, without a
// warning. A pattern without '/' matches an entry's name at any depth
// ("*.tmp", "cache"); a pattern with '/' matches the entry's path relative
// to the source root, with '*', '?' and '[...]' never matching '/'
// ("logs/*.gz"; a leading '/' anchors a name at the root: "/build"). A
// trailing '/' restricts a pattern to directories ("cache/"). '*' also
// matches names that start with a dot. The source root itself is never
// excluded.
//
// Consistency without filesystem support: each file is read, then re-checked
// (size, mtime, ctime, inode). A file that changed while it was read — or
// whose ctime is too recent to tell — is read again, up to `max_retries`
// times; what still could not be read consistently is flagged in its tree
// node, counted in the manifest and listed in the report, never silently.
//
// Memory: bounded by the worker pool's queue (in-flight chunks), one chunk
// stream, the current directory listings on the path from the root, and the
// ref set builder's budget; not by the dataset's size.
//
// Thread-safety: CaptureVolume may run concurrently on different stores.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/clock.h"
#include "snapshot/chunker.h"
#include "snapshot/keyset.h"
#include "snapshot/local_store.h"

namespace ferry::snapshot {

struct CaptureOptions {
  // Dataset name recorded in the manifest; default: the source's base name.
  std::string dataset_name;
  ChunkerParams chunker;
  // CPU workers for hashing, compression and sealing; 0 = the CPUs available.
  size_t workers = 0;
  // Re-reads of a file that changed while it was read.
  int max_retries = 3;
  std::map<std::string, std::string> labels;
  // Use and update the file cache in the store's cache/ folder.
  bool use_file_cache = true;
  SealOptions seal;
  Clock* clock = Clock::Real();
  // Called (from the capturing thread) for each warning: skipped or inconsistent entries.
  std::function<void(const std::string&)> on_warning;
  // Glob patterns of entries to leave out (see the top of this file).
  // Default: none. An empty pattern, or one holding a NUL byte or nothing but
  // '/', is kInvalidArgument.
  std::vector<std::string> excludes;
  // Store a changed file's new chunks as deltas of its previous chunks where
  // that halves them (snapshot/delta.h): fewer bytes to keep and to send,
  // for ~1% more file cache and one more keyed hash of what is read. Needs
  // the file cache.
  bool delta = false;
};

struct CaptureReport {
  SnapshotId id{};
  std::string dataset_name;
  uint64_t files = 0;
  uint64_t directories = 0;
  uint64_t symlinks = 0;
  uint64_t hardlinks = 0;      // extra names of already-seen inodes
  uint64_t bytes_logical = 0;  // sum of file sizes
  uint64_t bytes_data = 0;     // file bytes that hold data (sizes without sparse holes)
  uint64_t bytes_read = 0;     // file bytes actually read (cache misses, retries)
  uint64_t bytes_new = 0;      // plaintext of chunks the store did not have
  uint64_t bytes_stored = 0;   // sealed bytes added to the store
  uint64_t chunks = 0;         // chunks referenced (data and trees)
  uint64_t chunks_new = 0;
  uint64_t chunks_delta = 0;              // new chunks stored as deltas
  uint64_t bytes_delta = 0;               // their plaintext
  uint64_t cache_hits = 0;                // files taken from the file cache
  std::vector<std::string> inconsistent;  // printable paths
  std::vector<std::string> skipped;       // "path: reason"
  // Entries left out by CaptureOptions::excludes (a directory counts once,
  // its contents are not visited). Not warnings: not in `skipped`.
  uint64_t excluded = 0;
  double seconds = 0;
  std::string cache_note;  // why the file cache was not used, if it was not
};

// Captures `source` (a directory) into `store`, signs the manifest with the
// keyset's signing key and commits it. kInvalidArgument if source is not a
// directory or an exclude pattern is invalid (the message names it); I/O
// errors on the source root or the store fail the capture, while unreadable
// entries below the root are skipped and reported.
Result<CaptureReport> CaptureVolume(const std::string& source, const Keyset& keyset,
                                    LocalStore& store, const CaptureOptions& options = {});

}  // namespace ferry::snapshot
