// PowerLossEnv: an Env (core/env.h) that remembers what a power cut could
// still take away, and on SimulatePowerLoss() leaves the files on disk as
// such a cut might have — the fault-injecting file layer of the power-loss
// suite (docs/reliability.md, "Power loss and crash sites"), after SQLite's
// crash tests.
//
// What counts as durable, as on a POSIX filesystem:
//  - file content up to the last WritableFile::Sync (fdatasync); bytes
//    appended after it may be kept, dropped, or torn (a random prefix kept,
//    its last up to 512 bytes garbage) — chosen per file;
//  - directory entries (a file's creation, a rename, an unlink) once
//    SyncDir of the directory they are in; those after it are kept up to a
//    random point, per directory, and undone after it (in reverse order: an
//    unlink brings the file back, a rename moves it back and restores the
//    file it replaced, a creation removes the file).
// Files this Env did not write (SQLite's, or created before) count as
// durable. SQLite's own files are not faulted: with synchronous=FULL a
// COMMIT is durable when it returns, and an uncommitted transaction is
// rolled back at the next open, which a process exit gives as well.
//
// A crash: CrashBeforeOperation(n) stops the process before its n-th
// mutating operation (create, append, sync, rename, unlink, directory sync;
// counted from 1) by calling the given function — typically
// SimulatePowerLoss then _exit. Every operation is serialized by one mutex,
// held while the crash function runs, so no other thread changes a file
// meanwhile. Meant for a forked child that is the only user of its files.
//
// Backups of replaced and unlinked files are hard links in `backup_dir`
// (same filesystem as the files), removed when they are no longer needed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "core/env.h"

namespace ferry::testing {

struct PowerLossReport {
  int files_kept = 0;     // files with unsynced bytes left as they were
  int files_dropped = 0;  // cut back to their synced size
  int files_torn = 0;     // a random part of the unsynced bytes kept, some garbled
  int entries_kept = 0;   // unsynced directory entries kept
  int entries_undone = 0;
  std::string ToString() const;
};

class PowerLossEnv final : public Env {
 public:
  // `real_syncs` false: Sync and SyncDir only record durability, without
  // fdatasync/fsync (the model, not the disk, decides what a cut keeps).
  PowerLossEnv(Env* base, std::string backup_dir, bool real_syncs = true);
  ~PowerLossEnv() override;

  // Calls `crash` (under the Env's lock) before mutating operation n.
  void CrashBeforeOperation(uint64_t n, std::function<void()> crash);
  // Mutating operations so far.
  uint64_t operations() const;
  // Applies a power cut to the files, as chosen by `rng`. The Env keeps
  // nothing afterwards (it is meant to be the process's last act).
  PowerLossReport SimulatePowerLoss(std::mt19937_64& rng);
  // The same, for callers already inside the crash function.
  PowerLossReport SimulatePowerLossLocked(std::mt19937_64& rng);

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path,
                                                        mode_t mode = 0644) override;
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override;
  Result<Bytes> ReadFile(const std::string& path, uint64_t max_size) override;
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status SyncDir(const std::string& dir) override;
  Status CreateDirs(const std::string& path, mode_t mode = 0755) override;
  Status RemoveFile(const std::string& path) override;
  Result<bool> FileExists(const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& path) override;
  Result<uint64_t> FileSize(const std::string& path) override;

 private:
  class File;
  friend class File;
  struct FileState {
    uint64_t size = 0;    // bytes written
    uint64_t synced = 0;  // bytes made durable by a Sync
  };
  struct EntryOp {
    enum Kind { kCreate, kRename, kRemove } kind;
    std::string path;    // created, renamed to, removed
    std::string from;    // kRename: renamed from
    std::string backup;  // the file `path` replaced (kRename) or was (kRemove); "" if none
    uint64_t seq = 0;    // order of arrival, across directories
  };

  // Counts a mutating operation and crashes if it is the chosen one. Needs mu_.
  void Step();
  std::string NewBackupPath();
  void Record(EntryOp op);  // needs mu_

  Env* const base_;
  const std::string backup_dir_;
  const bool real_syncs_;
  mutable std::mutex mu_;
  uint64_t ops_ = 0;
  uint64_t crash_at_ = 0;
  std::function<void()> crash_;
  uint64_t backups_ = 0;
  uint64_t next_seq_ = 0;
  std::map<std::string, std::shared_ptr<FileState>> files_;  // by current path
  std::map<std::string, std::vector<EntryOp>> dirs_;         // unsynced entries, by directory
};

}  // namespace ferry::testing
