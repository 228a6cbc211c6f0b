#include "tests/testing/power_loss_env.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <tuple>

namespace ferry::testing {
namespace {

// "a//b/" -> "a/b": the same directory always gets the same key.
std::string Normalize(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out.push_back(c);
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

}  // namespace

std::string PowerLossReport::ToString() const {
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "files: %d kept, %d dropped, %d torn; unsynced entries: %d kept, %d undone",
                files_kept, files_dropped, files_torn, entries_kept, entries_undone);
  return buf;
}

// A WritableFile whose appends and syncs the Env records.
class PowerLossEnv::File final : public WritableFile {
 public:
  File(PowerLossEnv* env, std::unique_ptr<WritableFile> base, std::shared_ptr<FileState> state)
      : env_(env), base_(std::move(base)), state_(std::move(state)) {}

  Status Append(ByteView data) override {
    std::lock_guard lock(env_->mu_);
    env_->Step();
    Status s = base_->Append(data);
    // What reached the file counts even when the write failed part way.
    state_->size = base_->Size();
    return s;
  }
  Status Sync() override {
    std::lock_guard lock(env_->mu_);
    env_->Step();
    Status s = env_->real_syncs_ ? base_->Sync() : OkStatus();
    if (s.ok()) state_->synced = state_->size;
    return s;
  }
  Status Close() override { return base_->Close(); }
  uint64_t Size() const override { return base_->Size(); }
  const std::string& path() const override { return base_->path(); }

 private:
  PowerLossEnv* env_;
  std::unique_ptr<WritableFile> base_;
  std::shared_ptr<FileState> state_;
};

PowerLossEnv::PowerLossEnv(Env* base, std::string backup_dir, bool real_syncs)
    : base_(base), backup_dir_(std::move(backup_dir)), real_syncs_(real_syncs) {}

PowerLossEnv::~PowerLossEnv() = default;

void PowerLossEnv::CrashBeforeOperation(uint64_t n, std::function<void()> crash) {
  std::lock_guard lock(mu_);
  crash_at_ = n;
  crash_ = std::move(crash);
}

uint64_t PowerLossEnv::operations() const {
  std::lock_guard lock(mu_);
  return ops_;
}

void PowerLossEnv::Step() {
  if (++ops_ == crash_at_ && crash_) crash_();
}

std::string PowerLossEnv::NewBackupPath() {
  return backup_dir_ + "/backup-" + std::to_string(++backups_);
}

PowerLossReport PowerLossEnv::SimulatePowerLoss(std::mt19937_64& rng) {
  std::lock_guard lock(mu_);
  return SimulatePowerLossLocked(rng);
}

PowerLossReport PowerLossEnv::SimulatePowerLossLocked(std::mt19937_64& rng) {
  PowerLossReport report;
  // 1. Directory entries: per directory, a random prefix of the unsynced
  //    ones survives; the rest are undone, newest first across directories.
  std::vector<const EntryOp*> undo;
  for (auto& [dir, ops] : dirs_) {
    const size_t keep = rng() % (ops.size() + 1);
    report.entries_kept += static_cast<int>(keep);
    for (size_t i = 0; i < ops.size(); ++i) {
      if (i < keep) {
        if (!ops[i].backup.empty()) ::unlink(ops[i].backup.c_str());
      } else {
        undo.push_back(&ops[i]);
      }
    }
  }
  std::sort(undo.begin(), undo.end(),
            [](const EntryOp* a, const EntryOp* b) { return a->seq > b->seq; });
  for (const EntryOp* op : undo) {
    ++report.entries_undone;
    switch (op->kind) {
      case EntryOp::kCreate:
        ::unlink(op->path.c_str());
        files_.erase(op->path);
        break;
      case EntryOp::kRename:
        if (Exists(op->path)) ::rename(op->path.c_str(), op->from.c_str());
        if (auto it = files_.find(op->path); it != files_.end()) {
          files_[op->from] = it->second;
          files_.erase(it);
        }
        if (!op->backup.empty()) ::rename(op->backup.c_str(), op->path.c_str());
        break;
      case EntryOp::kRemove:
        if (!op->backup.empty()) ::rename(op->backup.c_str(), op->path.c_str());
        break;
    }
  }
  // 2. File content past the last sync: kept, dropped or torn.
  for (auto& [path, state] : files_) {
    if (state->size <= state->synced || !Exists(path)) continue;
    switch (rng() % 3) {
      case 0:
        ++report.files_kept;
        break;
      case 1:
        ++report.files_dropped;
        if (::truncate(path.c_str(), static_cast<off_t>(state->synced)) != 0) {
          std::perror(("power loss: truncate " + path).c_str());
        }
        break;
      default: {
        ++report.files_torn;
        const uint64_t unsynced = state->size - state->synced;
        const uint64_t len = state->synced + rng() % (unsynced + 1);
        if (::truncate(path.c_str(), static_cast<off_t>(len)) != 0) {
          std::perror(("power loss: truncate " + path).c_str());
          break;
        }
        // The end of what was kept is garbage (a sector written half way).
        // Only the end: garbage followed by intact later writes (write-back
        // out of order) is not modelled; see docs/reliability.md.
        if (len > state->synced && rng() % 2 == 0) {
          const uint64_t n = std::min<uint64_t>(len - state->synced, 1 + rng() % 512);
          const uint64_t from = len - n;
          std::string garbage(n, '\0');
          for (char& c : garbage) c = static_cast<char>(rng());
          const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
          if (fd >= 0) {
            [[maybe_unused]] ssize_t w =
                ::pwrite(fd, garbage.data(), garbage.size(), static_cast<off_t>(from));
            ::close(fd);
          }
        }
        break;
      }
    }
  }
  files_.clear();
  dirs_.clear();
  return report;
}

Result<std::unique_ptr<WritableFile>> PowerLossEnv::NewWritableFile(const std::string& path,
                                                                    mode_t mode) {
  std::lock_guard lock(mu_);
  Step();
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, base_->NewWritableFile(path, mode));
  const std::string p = Normalize(path);
  auto state = std::make_shared<FileState>();
  files_[p] = state;
  Record(EntryOp{EntryOp::kCreate, p, "", "", 0});
  return std::unique_ptr<WritableFile>(new File(this, std::move(f), std::move(state)));
}

void PowerLossEnv::Record(EntryOp op) {
  op.seq = ++next_seq_;
  dirs_[Normalize(DirName(op.path))].push_back(std::move(op));
}

Result<std::unique_ptr<RandomAccessFile>> PowerLossEnv::NewRandomAccessFile(
    const std::string& path) {
  return base_->NewRandomAccessFile(path);
}

Result<Bytes> PowerLossEnv::ReadFile(const std::string& path, uint64_t max_size) {
  return base_->ReadFile(path, max_size);
}

Status PowerLossEnv::RenameFile(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  Step();
  const std::string f = Normalize(from), t = Normalize(to);
  std::string backup;
  if (Exists(t)) {
    backup = NewBackupPath();
    if (::link(t.c_str(), backup.c_str()) != 0) {
      return ErrnoToStatus(errno, "power loss env: link " + t + " -> " + backup);
    }
  }
  Status s = base_->RenameFile(from, to);
  if (!s.ok()) {
    if (!backup.empty()) ::unlink(backup.c_str());
    return s;
  }
  if (auto it = files_.find(f); it != files_.end()) {
    files_[t] = it->second;
    files_.erase(it);
  } else {
    files_.erase(t);  // durable content (not ours) took its place
  }
  Record(EntryOp{EntryOp::kRename, t, f, backup, 0});
  return s;
}

Status PowerLossEnv::SyncDir(const std::string& dir) {
  std::lock_guard lock(mu_);
  Step();
  if (real_syncs_) RETURN_IF_ERROR(base_->SyncDir(dir));
  if (auto it = dirs_.find(Normalize(dir)); it != dirs_.end()) {
    for (const EntryOp& op : it->second) {
      if (!op.backup.empty()) ::unlink(op.backup.c_str());
    }
    dirs_.erase(it);
  }
  return OkStatus();
}

Status PowerLossEnv::CreateDirs(const std::string& path, mode_t mode) {
  std::lock_guard lock(mu_);
  Step();
  return base_->CreateDirs(path, mode);
}

Status PowerLossEnv::RemoveFile(const std::string& path) {
  std::lock_guard lock(mu_);
  Step();
  const std::string p = Normalize(path);
  std::string backup;
  if (Exists(p)) {
    backup = NewBackupPath();
    if (::link(p.c_str(), backup.c_str()) != 0) {
      return ErrnoToStatus(errno, "power loss env: link " + p + " -> " + backup);
    }
  }
  Status s = base_->RemoveFile(path);
  if (!s.ok()) {
    if (!backup.empty()) ::unlink(backup.c_str());
    return s;
  }
  // Should the unlink be undone, the file comes back as it is now (its
  // unsynced bytes, if any, are then taken as durable: a simplification).
  files_.erase(p);
  Record(EntryOp{EntryOp::kRemove, p, "", backup, 0});
  return s;
}

Result<bool> PowerLossEnv::FileExists(const std::string& path) { return base_->FileExists(path); }

Result<std::vector<std::string>> PowerLossEnv::ListDir(const std::string& path) {
  return base_->ListDir(path);
}

Result<uint64_t> PowerLossEnv::FileSize(const std::string& path) { return base_->FileSize(path); }

}  // namespace ferry::testing
