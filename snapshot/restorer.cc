#include "snapshot/restorer.h"
#include "snapshot/wire_check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include "core/clock.h"
#include "core/worker_pool.h"
#include "snapshot/chunk_reader.h"
#include "snapshot/ref_set.h"
#include "snapshot/tree.h"

namespace ferry::snapshot {

RestoreOptions::RestoreOptions() : restore_ownership(::geteuid() == 0) {}

namespace {

// Restore and verify walk a tree recursively (restore holds one directory fd
// per level): deeper trees than kMaxTreeDepth (tree.h) are refused as damaged.
constexpr size_t kMaxDepth = kMaxTreeDepth;

constexpr uint32_t kUnknownMode = 0xffffffff;

mode_t CurrentUmask() {
  const mode_t m = ::umask(0);
  ::umask(m);
  return m;
}

size_t Workers(size_t requested) {
  return requested == 0 ? WorkerPool::DefaultThreads() : requested;
}

std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

struct timespec FromNs(int64_t ns) {
  struct timespec ts;
  ts.tv_sec = ns / 1'000'000'000;
  ts.tv_nsec = ns % 1'000'000'000;
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1'000'000'000;
    ts.tv_sec -= 1;
  }
  return ts;
}

Status CheckKeyset(const ParsedManifest& m, const Keyset& keyset) {
  if (AsStringView(keyset.id()) != m.body.keyset_id()) {
    return FailedPreconditionError("snapshot " + HexEncode(m.id).substr(0, 12) +
                                   " was sealed with keyset " +
                                   HexEncode(AsBytes(m.body.keyset_id())) + ", but " +
                                   keyset.origin() + " is keyset " + HexEncode(keyset.id()));
  }
  if (!keyset.unlocked()) {
    return FailedPreconditionError(keyset.kind() == Keyset::Kind::kAgent
                                       ? keyset.origin() +
                                             " is an agent key file: it can add snapshots but "
                                             "not read them; use the tenant keyset"
                                       : keyset.origin() + " is locked (passphrase needed)");
  }
  return OkStatus();
}

Result<pb::Tree> LoadTree(ChunkReader& reader,
                          const google::protobuf::RepeatedPtrField<pb::ChunkRef>& refs,
                          const std::string& where) {
  ASSIGN_OR_RETURN(Bytes bytes, reader.ReadAll(refs, kMaxTreeSize));
  return DecodeTree(bytes, where);
}

// The root of a dataset: a tree of exactly one unnamed directory node.
Result<pb::Node> LoadRoot(ChunkReader& reader, const ParsedManifest& m) {
  const pb::Dataset& ds = m.body.datasets(0);
  if (ds.kind() == pb::DATASET_KIND_STREAM) {
    return FailedPreconditionError(
        "snapshot " + HexEncode(m.id).substr(0, 12) + " is the cut of stream '" + ds.name() +
        "' (offsets " + std::to_string(ds.stream().start_offset()) + " to " +
        std::to_string(ds.stream().end_offset()) +
        "): its records are at the hub; restore it from there (ferryctl restore --hub)");
  }
  ASSIGN_OR_RETURN(Bytes bytes, reader.ReadAll(ds.root(), kMaxTreeSize));
  pb::Tree tree;
  if (!CheckWireLengths(bytes, *pb::Tree::descriptor()).ok() ||
      !tree.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) ||
      tree.nodes_size() != 1 || !tree.nodes(0).name().empty() ||
      tree.nodes(0).type() != pb::NODE_TYPE_DIRECTORY) {
    return DataLossError("dataset '" + ds.name() + "' has a malformed root tree");
  }
  pb::Node root = tree.nodes(0);
  root.set_name("x");  // ValidateNode checks the name's place only in trees
  if (Status s = ValidateNode(root); !s.ok()) {
    return DataLossError("dataset '" + ds.name() + "' root: " + s.message());
  }
  root.clear_name();
  return root;
}

// Whether a symlink at directory depth `depth` (components below the restore
// target) with this target stays inside the restore target.
//
// Only leading ".." components are accepted, at most `depth` of them: they
// climb real directories that the restore made. After a downward component
// the lexical depth proves nothing, because that component may itself be a
// symlink of the snapshot: with "d" -> ".", the target "d/d/../.." counts as
// depth 0 but resolves two levels above the restore target. Without ".."
// after a downward component, every symlink stays inside given that the
// others do, so the whole restored tree does.
bool SymlinkStaysInside(const std::string& target, size_t depth) {
  if (target.empty() || target[0] == '/') return false;
  int64_t level = static_cast<int64_t>(depth);
  bool descended = false;
  size_t pos = 0;
  while (pos <= target.size()) {
    size_t next = target.find('/', pos);
    if (next == std::string::npos) next = target.size();
    const std::string comp = target.substr(pos, next - pos);
    pos = next + 1;
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") {
      if (descended || --level < 0) return false;
    } else {
      descended = true;
    }
  }
  return true;
}

class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

class Restorer {
 public:
  Restorer(ChunkSource& source, const Keyset& keyset, const RestoreOptions& options)
      : reader_(source, keyset),
        options_(options),
        pool_(Workers(options.workers), 2 * Workers(options.workers) + 2),
        window_(4 * Workers(options.workers) + 4) {}

  Result<RestoreReport> Run(const ParsedManifest& m, const std::string& target);

 private:
  // A file being restored. Its chunks are fetched, decrypted and written by
  // the workers, each at its own offsets; the worker that writes the last one
  // sets the size and metadata and closes it.
  struct OpenFile {
    ~OpenFile() {
      if (fd >= 0) ::close(fd);
    }
    int fd = -1;
    // Files with at most one chunk and no hard link are created by the worker
    // (creating files is most of a small-file restore): the directory fd is
    // borrowed and stays open until the directory is drained.
    int create_in_dir_fd = -1;
    uint32_t created_mode = kUnknownMode;
    pb::Node node;
    std::string display;
    std::atomic<size_t> remaining{0};
  };
  // Where part of a chunk goes: [chunk_offset, +length) -> file_offset.
  struct Piece {
    uint64_t chunk_offset = 0;
    uint64_t file_offset = 0;
    uint64_t length = 0;
  };

  Status RestoreChildren(int dir_fd, const pb::Tree& tree, const std::string& rel,
                         const std::string& display);
  Status RestoreNode(int dir_fd, const pb::Node& node, const std::string& rel,
                     const std::string& display);
  Status RestoreFile(int dir_fd, const pb::Node& node, const std::string& rel,
                     const std::string& display);
  Status RestoreSymlink(int dir_fd, const pb::Node& node, const std::string& rel,
                        const std::string& display);
  Status RestoreDirectory(int dir_fd, const pb::Node& node, const std::string& rel,
                          const std::string& display);
  // Makes room for `name` under --force; returns false if it must be refused.
  Result<bool> ClearWay(int dir_fd, const std::string& name, bool want_dir,
                        const std::string& display);
  // created_mode: the mode the entry was created with, or kUnknownMode.
  Status ApplyMetadata(int fd, const pb::Node& node, const std::string& display,
                       uint32_t created_mode = kUnknownMode);
  // Worker side: create if deferred, fetch, decrypt, write, finish when last.
  Status RunFileJob(const std::shared_ptr<OpenFile>& file, const pb::ChunkRef* ref,
                    const std::vector<Piece>& pieces);
  Status CreateFile(int dir_fd, OpenFile& file);
  // Small files go to the workers in batches: one hand-off per batch, not per file.
  struct FileJob {
    std::shared_ptr<OpenFile> file;
    const pb::ChunkRef* ref;
    std::vector<Piece> pieces;
  };
  Status AddToBatch(FileJob job, uint64_t bytes);
  Status FlushBatch();
  Status FinishFile(OpenFile& f);
  Status Drain(size_t keep);
  void Warn(std::string w) {
    std::lock_guard<std::mutex> lock(warnings_mu_);
    report_.warnings.push_back(std::move(w));
  }
  void Refuse(const std::string& display, const std::string& why) {
    report_.refused.push_back(display + ": " + why);
    if (options_.on_warning) options_.on_warning("refused " + display + ": " + why);
  }

  ChunkReader reader_;
  const RestoreOptions& options_;
  WorkerPool pool_;
  const size_t window_;
  std::deque<std::future<Status>> in_flight_;
  std::vector<FileJob> batch_;
  uint64_t batch_bytes_ = 0;
  std::atomic<uint64_t> bytes_written_{0};
  std::mutex warnings_mu_;  // report_.warnings is written by workers too
  std::mutex create_mu_;    // serializes file creation (see CreateFile)
  int root_fd_ = -1;
  const uid_t euid_ = ::geteuid();
  const gid_t egid_ = ::getegid();
  const mode_t umask_ = CurrentUmask();
  bool root_setgid_ = false;                   // new entries in the target inherit its group
  std::map<uint64_t, std::string> hardlinks_;  // hardlink id -> path relative to root_fd_
  RestoreReport report_;
};

Status Restorer::CreateFile(int dir_fd, OpenFile& file) {
  // Created with its final permission bits (less the umask; setuid, setgid
  // and sticky bits are applied last): the descriptor is writable whatever
  // the mode, and a matching mode saves a chmod.
  const uint32_t create_mode = file.node.mode() & 0777;
  {
    // One creation at a time: creating in a directory takes its inode lock,
    // and two workers creating side by side spin on it in the kernel (a third
    // of the CPU of a small-file restore on ext4, measured). Waiting here
    // sleeps instead, and everything else stays parallel.
    std::lock_guard<std::mutex> lock(create_mu_);
    file.fd = ::openat(dir_fd, file.node.name().c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, create_mode);
  }
  if (file.fd < 0) return ErrnoToStatus(errno, "create " + file.display);
  file.created_mode = options_.force ? kUnknownMode : create_mode & ~umask_;
  return OkStatus();
}

Status Restorer::RunFileJob(const std::shared_ptr<OpenFile>& file, const pb::ChunkRef* ref,
                            const std::vector<Piece>& pieces) {
  OpenFile& f = *file;
  if (f.create_in_dir_fd >= 0) RETURN_IF_ERROR(CreateFile(f.create_in_dir_fd, f));
  if (ref != nullptr) {
    thread_local Bytes data;  // reused: no allocation or zero-fill per chunk
    RETURN_IF_ERROR(reader_.Read(*ref, data));
    for (const Piece& piece : pieces) {
      if (piece.chunk_offset + piece.length > data.size()) {
        return DataLossError(f.display + ": content runs past its chunk");
      }
      size_t written = 0;
      while (written < piece.length) {
        ssize_t w =
            ::pwrite(f.fd, data.data() + piece.chunk_offset + written, piece.length - written,
                     static_cast<off_t>(piece.file_offset + written));
        if (w < 0) {
          if (errno == EINTR) continue;
          return ErrnoToStatus(errno, "write " + f.display);
        }
        written += static_cast<size_t>(w);
      }
      bytes_written_.fetch_add(piece.length, std::memory_order_relaxed);
      if (options_.on_progress) options_.on_progress(piece.length);
    }
  }
  if (f.remaining.fetch_sub(1) == 1) return FinishFile(f);
  return OkStatus();
}

Status Restorer::AddToBatch(FileJob job, uint64_t bytes) {
  batch_.push_back(std::move(job));
  batch_bytes_ += bytes;
  if (batch_.size() >= 32 || batch_bytes_ >= (512u << 10)) return FlushBatch();
  return OkStatus();
}

Status Restorer::FlushBatch() {
  if (batch_.empty()) return OkStatus();
  RETURN_IF_ERROR(Drain(window_));
  in_flight_.push_back(pool_.Submit([this, jobs = std::move(batch_)]() -> Status {
    Status first;
    for (const FileJob& j : jobs) {
      Status s = RunFileJob(j.file, j.ref, j.pieces);
      if (!s.ok() && first.ok()) first = s;
    }
    return first;
  }));
  batch_.clear();
  batch_bytes_ = 0;
  return OkStatus();
}

Status Restorer::Drain(size_t keep) {
  if (keep == 0) RETURN_IF_ERROR(FlushBatch());
  while (in_flight_.size() > keep) {
    Status s = in_flight_.front().get();
    in_flight_.pop_front();
    if (!s.ok()) {
      // Wait for the rest so that no worker touches a closed directory.
      for (auto& rest : in_flight_) rest.wait();
      in_flight_.clear();
      return s;
    }
  }
  return OkStatus();
}

Status Restorer::ApplyMetadata(int fd, const pb::Node& node, const std::string& display,
                               uint32_t created_mode) {
  // A new file already has our euid and egid (the directories it is created
  // in are ours, without setgid, until their own metadata is applied last);
  // skip the syscalls that would change nothing.
  const bool owner_differs = options_.force || root_setgid_ || node.uid() != euid_ ||
                             node.gid() != egid_ || created_mode == kUnknownMode;
  if (options_.restore_ownership && owner_differs && ::fchown(fd, node.uid(), node.gid()) != 0) {
    Warn(display + ": cannot set owner: " + std::strerror(errno));
  }
  for (const pb::Xattr& x : node.xattrs()) {
    // Capture records user.* only; other namespaces (trusted.*, security.*)
    // would grant privileges when restoring as root, so they are not applied.
    if (x.name().rfind("user.", 0) != 0) {
      Warn(display + ": xattr " + PrintableName(AsBytes(x.name())) +
           " is not in the user namespace; not restored");
      continue;
    }
    if (::fsetxattr(fd, x.name().c_str(), x.value().data(), x.value().size(), 0) != 0) {
      Warn(display + ": cannot set xattr " + x.name() + ": " + std::strerror(errno));
    }
  }
  if (node.mode() != created_mode && ::fchmod(fd, node.mode()) != 0) {
    return ErrnoToStatus(errno, "chmod " + display);
  }
  const struct timespec times[2] = {FromNs(node.mtime_ns()), FromNs(node.mtime_ns())};
  if (::futimens(fd, times) != 0) return ErrnoToStatus(errno, "set times of " + display);
  return OkStatus();
}

Status Restorer::FinishFile(OpenFile& f) {
  Status s;
  // Sets the size (holes, a trailing one too). Also done when there is none:
  // measured on ext4 without a journal, skipping this made creating 100,000
  // small files ten times slower (the inode allocator then scans inode table
  // blocks that delayed allocation keeps dirty).
  if (::ftruncate(f.fd, static_cast<off_t>(f.node.size())) != 0) {
    s = ErrnoToStatus(errno, "truncate " + f.display);
  }
  if (s.ok()) s = ApplyMetadata(f.fd, f.node, f.display, f.created_mode);
  if (::close(f.fd) != 0 && s.ok()) s = ErrnoToStatus(errno, "close " + f.display);
  f.fd = -1;
  return s;
}

Result<bool> Restorer::ClearWay(int dir_fd, const std::string& name, bool want_dir,
                                const std::string& display) {
  // Without --force the target started empty and names in a tree are unique:
  // nothing can be in the way, and O_EXCL / mkdirat would catch a surprise.
  if (!options_.force) return true;
  struct stat st;
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return true;
    return ErrnoToStatus(errno, "stat " + display);
  }
  if (!options_.force) {
    // Names in a tree are unique, and the target started empty.
    return DataLossError(display + " already exists in the target (duplicate name?)");
  }
  if (S_ISDIR(st.st_mode)) {
    if (want_dir) return true;
    Refuse(display, "a directory is in the way (not removed)");
    return false;
  }
  if (::unlinkat(dir_fd, name.c_str(), 0) != 0) return ErrnoToStatus(errno, "remove " + display);
  return true;
}

Status Restorer::RestoreFile(int dir_fd, const pb::Node& node, const std::string& rel,
                             const std::string& display) {
  ASSIGN_OR_RETURN(bool clear, ClearWay(dir_fd, node.name(), false, display));
  if (!clear) return OkStatus();
  ++report_.files;
  if (node.hardlink_id() != 0) {
    auto it = hardlinks_.find(node.hardlink_id());
    if (it != hardlinks_.end()) {
      if (::linkat(root_fd_, it->second.c_str(), dir_fd, node.name().c_str(), 0) == 0) {
        ++report_.hardlinks;
        return OkStatus();
      }
      // Cannot link (e.g. the first name was refused): restore a copy instead.
      Warn(display + ": cannot hard-link (" + std::strerror(errno) + "); restored as a copy");
    } else {
      hardlinks_[node.hardlink_id()] = rel;
    }
  }
  auto file = std::make_shared<OpenFile>();
  file->node = node;
  file->display = display;
  const int chunks = node.content_size();
  file->remaining = static_cast<size_t>(std::max(chunks, 1));
  if (chunks <= 1 && node.hardlink_id() == 0) {
    file->create_in_dir_fd = dir_fd;  // the worker creates it
  } else {
    RETURN_IF_ERROR(CreateFile(dir_fd, *file));  // linkat needs it now; chunks share it
  }
  if (chunks == 0) return AddToBatch(FileJob{file, nullptr, {}}, 0);
  // Map each chunk's bytes onto the file: contiguous without extents,
  // through the extents (a cursor, linear even for millions of them) with.
  uint64_t position = 0;  // content bytes before this chunk
  int extent = 0;
  uint64_t extent_start = 0;  // content position where `extent` starts
  for (int i = 0; i < chunks; ++i) {
    const pb::ChunkRef& ref = file->node.content(i);  // lives as long as the job
    std::vector<Piece> pieces;
    if (node.extents_size() == 0) {
      pieces.push_back(Piece{0, position, ref.size()});
    } else {
      uint64_t done = 0;
      while (done < ref.size()) {
        while (extent < node.extents_size() &&
               position + done >= extent_start + node.extents(extent).length()) {
          extent_start += node.extents(extent).length();
          ++extent;
        }
        if (extent == node.extents_size()) {
          return DataLossError(display + ": content runs past its extents");
        }
        const pb::Extent& e = node.extents(extent);
        const uint64_t in_extent = position + done - extent_start;
        const uint64_t n = std::min<uint64_t>(e.length() - in_extent, ref.size() - done);
        pieces.push_back(Piece{done, e.offset() + in_extent, n});
        done += n;
      }
    }
    position += ref.size();
    if (chunks == 1 && ref.size() <= (256u << 10)) {
      RETURN_IF_ERROR(AddToBatch(FileJob{file, &ref, std::move(pieces)}, ref.size()));
      continue;
    }
    RETURN_IF_ERROR(Drain(window_));
    in_flight_.push_back(pool_.Submit([this, file, ref_ptr = &ref, p = std::move(pieces)] {
      return RunFileJob(file, ref_ptr, p);
    }));
  }
  return OkStatus();
}

Status Restorer::RestoreSymlink(int dir_fd, const pb::Node& node, const std::string& rel,
                                const std::string& display) {
  const size_t depth = static_cast<size_t>(std::count(rel.begin(), rel.end(), '/'));
  if (!options_.allow_external_symlinks && !SymlinkStaysInside(node.symlink_target(), depth)) {
    Refuse(display, "symlink target '" + PrintableName(AsBytes(node.symlink_target())) +
                        "' points outside the restore target (allow with "
                        "--allow-external-symlinks)");
    return OkStatus();
  }
  ASSIGN_OR_RETURN(bool clear, ClearWay(dir_fd, node.name(), false, display));
  if (!clear) return OkStatus();
  if (::symlinkat(node.symlink_target().c_str(), dir_fd, node.name().c_str()) != 0) {
    return ErrnoToStatus(errno, "symlink " + display);
  }
  ++report_.symlinks;
  if (options_.restore_ownership &&
      ::fchownat(dir_fd, node.name().c_str(), node.uid(), node.gid(), AT_SYMLINK_NOFOLLOW) != 0) {
    Warn(display + ": cannot set owner: " + std::strerror(errno));
  }
  const struct timespec times[2] = {FromNs(node.mtime_ns()), FromNs(node.mtime_ns())};
  ::utimensat(dir_fd, node.name().c_str(), times, AT_SYMLINK_NOFOLLOW);
  return OkStatus();
}

Status Restorer::RestoreDirectory(int dir_fd, const pb::Node& node, const std::string& rel,
                                  const std::string& display) {
  if (static_cast<size_t>(std::count(rel.begin(), rel.end(), '/')) >= kMaxDepth) {
    return DataLossError(display + ": directories nested more than " + std::to_string(kMaxDepth) +
                         " levels deep");
  }
  ASSIGN_OR_RETURN(bool clear, ClearWay(dir_fd, node.name(), true, display));
  if (!clear) return OkStatus();
  if (::mkdirat(dir_fd, node.name().c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoToStatus(errno, "mkdir " + display);
  }
  int fd = ::openat(dir_fd, node.name().c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, "open " + display);
  FdCloser closer(fd);
  ++report_.directories;
  ASSIGN_OR_RETURN(pb::Tree tree, LoadTree(reader_, node.content(), display));
  RETURN_IF_ERROR(RestoreChildren(fd, tree, rel, display));
  // Children first (they change the directory's mtime), then the metadata.
  RETURN_IF_ERROR(Drain(0));
  return ApplyMetadata(fd, node, display);
}

Status Restorer::RestoreNode(int dir_fd, const pb::Node& node, const std::string& rel,
                             const std::string& display) {
  switch (node.type()) {
    case pb::NODE_TYPE_FILE:
      return RestoreFile(dir_fd, node, rel, display);
    case pb::NODE_TYPE_SYMLINK:
      return RestoreSymlink(dir_fd, node, rel, display);
    case pb::NODE_TYPE_DIRECTORY:
      return RestoreDirectory(dir_fd, node, rel, display);
    default:
      return DataLossError(display + ": unknown node type");
  }
}

Status Restorer::RestoreChildren(int dir_fd, const pb::Tree& tree, const std::string& rel,
                                 const std::string& display) {
  for (const pb::Node& child : tree.nodes()) {
    const std::string name_display = PrintableName(AsBytes(child.name()));
    RETURN_IF_ERROR(RestoreNode(dir_fd, child, Join(rel, child.name()),
                                display.empty() ? name_display : display + "/" + name_display));
  }
  return OkStatus();
}

Result<RestoreReport> Restorer::Run(const ParsedManifest& m, const std::string& target) {
  const int64_t start = Clock::Real()->MonotonicNanos();
  ASSIGN_OR_RETURN(pb::Node root, LoadRoot(reader_, m));

  // Find the entry to restore.
  pb::Node selected = root;
  bool whole = true;
  if (!options_.sub_path.empty()) {
    whole = false;
    std::string path = options_.sub_path;
    size_t pos = 0;
    std::string walked;
    while (pos <= path.size()) {
      size_t next = path.find('/', pos);
      if (next == std::string::npos) next = path.size();
      const std::string comp = path.substr(pos, next - pos);
      pos = next + 1;
      if (comp.empty() || comp == ".") continue;
      if (Status s = ValidateName(AsBytes(comp)); !s.ok()) {
        return InvalidArgumentError("--path: " + s.message());
      }
      if (selected.type() != pb::NODE_TYPE_DIRECTORY) {
        return NotFoundError("--path: '" + walked + "' is not a directory in the snapshot");
      }
      ASSIGN_OR_RETURN(pb::Tree tree, LoadTree(reader_, selected.content(), walked));
      auto it =
          std::lower_bound(tree.nodes().begin(), tree.nodes().end(), comp,
                           [](const pb::Node& n, const std::string& c) { return n.name() < c; });
      walked = Join(walked, comp);
      if (it == tree.nodes().end() || it->name() != comp) {
        return NotFoundError("--path: '" + walked + "' is not in the snapshot");
      }
      selected = *it;
    }
    if (selected.name().empty()) whole = true;  // the path named the root itself
  }

  // Prepare the target.
  Env& env = *Env::Default();
  ASSIGN_OR_RETURN(bool exists, env.FileExists(target));
  if (exists) {
    struct stat st;
    if (::lstat(target.c_str(), &st) != 0) return ErrnoToStatus(errno, "stat " + target);
    if (!S_ISDIR(st.st_mode)) return FailedPreconditionError(target + " is not a directory");
    ASSIGN_OR_RETURN(std::vector<std::string> names, env.ListDir(target));
    if (!names.empty() && !options_.force) {
      return FailedPreconditionError("target " + target +
                                     " is not empty; restore into an empty or new folder, or "
                                     "pass --force to overwrite");
    }
  } else {
    RETURN_IF_ERROR(env.CreateDirs(target, 0700));
  }
  root_fd_ = ::open(target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd_ < 0) return ErrnoToStatus(errno, "open " + target);
  if (struct stat root_st; ::fstat(root_fd_, &root_st) == 0) {
    root_setgid_ = (root_st.st_mode & S_ISGID) != 0;
  }
  FdCloser closer(root_fd_);

  Status s;
  if (whole) {
    ASSIGN_OR_RETURN(pb::Tree tree, LoadTree(reader_, selected.content(), "/"));
    s = RestoreChildren(root_fd_, tree, "", "");
    if (s.ok()) s = Drain(0);
    if (s.ok()) {
      ++report_.directories;
      s = ApplyMetadata(root_fd_, selected, target);
    }
  } else {
    const std::string name = selected.name();
    s = RestoreNode(root_fd_, selected, name, PrintableName(AsBytes(name)));
    if (s.ok()) s = Drain(0);
  }
  if (!s.ok()) {
    batch_.clear();  // not started: nothing of them exists yet
    Drain(0).IgnoreError();
    return s;
  }
  report_.bytes = bytes_written_.load();
  report_.seconds = static_cast<double>(Clock::Real()->MonotonicNanos() - start) / 1e9;
  return std::move(report_);
}

// Forwards to a source, noting the id and sealed size of every chunk read
// through it: what a remote verify matches the reference set against.
class FetchRecorder final : public ChunkSource {
 public:
  explicit FetchRecorder(ChunkSource& source) : source_(source) {}

  Status ReadSealedChunk(const ChunkId& id, Bytes& out) override {
    RETURN_IF_ERROR(source_.ReadSealedChunk(id, out));
    if (out.size() > UINT32_MAX) {
      return DataLossError("chunk " + HexEncode(id) + " is " + std::to_string(out.size()) +
                           " bytes sealed");
    }
    std::lock_guard<std::mutex> lock(mu_);
    fetched_.push_back(RefEntry{id, static_cast<uint32_t>(out.size())});
    // Chunks shared by many files are read once per use: compacting keeps
    // the list proportional to the distinct chunks, amortized O(log n) each.
    if (fetched_.size() >= compact_at_) {
      SortUnique(fetched_);
      compact_at_ = std::max(compact_at_, 2 * fetched_.size());
    }
    return OkStatus();
  }
  Result<Bytes> WrappedKey(const KeyId& id) override { return source_.WrappedKey(id); }
  Result<ParsedManifest> LoadManifest(const SnapshotId& id) override {
    return source_.LoadManifest(id);
  }
  Result<Bytes> ReadRefs(const SnapshotId& id, uint64_t max_bytes) override {
    return source_.ReadRefs(id, max_bytes);
  }

  // Every (id, sealed size) read, sorted by id then size, without repeats.
  // Call once no read is in flight.
  std::vector<RefEntry> TakeSorted() {
    std::lock_guard<std::mutex> lock(mu_);
    SortUnique(fetched_);
    return std::move(fetched_);
  }

 private:
  static void SortUnique(std::vector<RefEntry>& v) {
    auto key = [](const RefEntry& e) { return std::tie(e.id, e.sealed_size); };
    std::sort(v.begin(), v.end(),
              [&](const RefEntry& a, const RefEntry& b) { return key(a) < key(b); });
    v.erase(std::unique(v.begin(), v.end(),
                        [&](const RefEntry& a, const RefEntry& b) { return key(a) == key(b); }),
            v.end());
  }

  ChunkSource& source_;
  std::mutex mu_;
  std::vector<RefEntry> fetched_;  // guarded by mu_
  size_t compact_at_ = 1 << 16;    // guarded by mu_
};

// Verify: the same walk, reading every chunk, writing nothing; then the
// reference set, checked against the local store's index and packs when
// there is one (`local`), else against the chunks the walk read.
class Verifier {
 public:
  // `local` is `source` itself when it is a LocalStore, or null (remote).
  Verifier(ChunkSource& source, LocalStore* local, const Keyset& keyset, size_t workers,
           std::function<void(uint64_t)> on_progress)
      : on_progress_(std::move(on_progress)),
        source_(source),
        local_(local),
        recorder_(local == nullptr ? std::make_unique<FetchRecorder>(source) : nullptr),
        reader_(recorder_ ? static_cast<ChunkSource&>(*recorder_) : source, keyset),
        pool_(Workers(workers), 2 * Workers(workers) + 2),
        window_(4 * Workers(workers) + 4) {}

  Result<VerifyReport> Run(const ParsedManifest& m) {
    const int64_t start = Clock::Real()->MonotonicNanos();
    // A stream cut holds no chunks: its manifest (checked when loaded) and
    // its empty reference set are all there is to verify.
    if (m.body.datasets(0).kind() != pb::DATASET_KIND_STREAM) {
      ASSIGN_OR_RETURN(pb::Node root, LoadRoot(reader_, m));
      report_.chunks_read += static_cast<uint64_t>(m.body.datasets(0).root_size());
      RETURN_IF_ERROR(VerifyDirectory(root, "/", 0));
      RETURN_IF_ERROR(Drain(0));
    }
    if (local_ != nullptr) {
      RETURN_IF_ERROR(CheckLocalRefsAndPacks(m));
    } else {
      report_.remote = true;
      RETURN_IF_ERROR(CheckRefsAgainstWalk(m));
    }
    report_.seconds = static_cast<double>(Clock::Real()->MonotonicNanos() - start) / 1e9;
    return report_;
  }

 private:
  // The reference set, streamed from its file: signed through the manifest,
  // every entry indexed; then the packs that hold them.
  Status CheckLocalRefsAndPacks(const ParsedManifest& m) {
    ASSIGN_OR_RETURN(std::unique_ptr<RefSetReader> refs,
                     RefSetReader::Open(*Env::Default(), local_->RefsPath(m.id)));
    RefEntry e;
    std::set<std::string> packs;
    while (refs->Next(e)) {
      ASSIGN_OR_RETURN(std::optional<uint32_t> size, local_->ChunkSealedSize(e.id));
      if (!size || *size != e.sealed_size) {
        return DataLossError("chunk " + HexEncode(e.id) + " of the reference set is " +
                             (size ? "stored with another size" : "missing from the store"));
      }
      ASSIGN_OR_RETURN(std::string pack, local_->PackOf(e.id));
      packs.insert(std::move(pack));
      ++report_.refs_checked;
    }
    RETURN_IF_ERROR(refs->status());
    RETURN_IF_ERROR(CheckRefsSummary(m, *refs));
    // The chunks decrypted above; the packs' own trailers must be intact too,
    // since they are what rebuilds an index.
    for (const std::string& pack : packs) {
      RETURN_IF_ERROR(local_->VerifyPack(pack, /*entries=*/false));
      ++report_.packs_checked;
    }
    return OkStatus();
  }

  // The reference set, read whole through the source, is merged with the
  // sorted (id, sealed size) pairs the walk read: both must hold the same
  // ids with the same sizes. A mismatch is reported only once the object's
  // checksum and the manifest's digest agree, so that a damaged object is
  // reported as such rather than as a chunk it seems to lack.
  Status CheckRefsAgainstWalk(const ParsedManifest& m) {
    const std::vector<RefEntry> fetched = recorder_->TakeSorted();
    ASSIGN_OR_RETURN(Bytes bytes, source_.ReadRefs(m.id, kMaxRemoteRefsBytes));
    ASSIGN_OR_RETURN(std::unique_ptr<RefSetReader> refs,
                     RefSetReader::FromBytes(std::move(bytes), HexEncode(m.id).substr(0, 12)));
    Status mismatch;
    auto note = [&](std::string message) {
      if (mismatch.ok()) mismatch = DataLossError(std::move(message));
    };
    size_t i = 0;  // into `fetched`
    RefEntry e;
    while (refs->Next(e)) {
      ++report_.refs_checked;
      for (; i < fetched.size() && fetched[i].id < e.id; ++i) note(NotInRefs(fetched[i].id));
      if (i == fetched.size() || fetched[i].id != e.id) {
        note("chunk " + HexEncode(e.id) + " of the reference set is not used by the snapshot");
        continue;
      }
      // The same id may have been returned with several sizes: each must match.
      for (; i < fetched.size() && fetched[i].id == e.id; ++i) {
        if (fetched[i].sealed_size != e.sealed_size) {
          note("chunk " + HexEncode(e.id) + " was read with " +
               std::to_string(fetched[i].sealed_size) +
               " sealed bytes where the reference set says " + std::to_string(e.sealed_size));
        }
      }
    }
    RETURN_IF_ERROR(refs->status());
    RETURN_IF_ERROR(CheckRefsSummary(m, *refs));
    RETURN_IF_ERROR(mismatch);
    if (i < fetched.size()) return DataLossError(NotInRefs(fetched[i].id));
    return OkStatus();
  }

  static std::string NotInRefs(const ChunkId& id) {
    return "chunk " + HexEncode(id) + " is used by the snapshot but not in its reference set";
  }

  Status CheckRefsSummary(const ParsedManifest& m, const RefSetReader& refs) {
    if (AsStringView(refs.digest()) != m.body.refs().digest() ||
        report_.refs_checked != m.body.refs().count()) {
      return DataLossError("the reference set does not match the manifest");
    }
    return OkStatus();
  }

  Status VerifyDirectory(const pb::Node& dir, const std::string& display, size_t depth) {
    if (depth > kMaxDepth) {
      return DataLossError(display + ": directories nested more than " + std::to_string(kMaxDepth) +
                           " levels deep");
    }
    ++report_.directories;
    report_.chunks_read += static_cast<uint64_t>(dir.content_size());
    ASSIGN_OR_RETURN(pb::Tree tree, LoadTree(reader_, dir.content(), display));
    for (const pb::Node& child : tree.nodes()) {
      const std::string child_display =
          (display == "/" ? "" : display) + "/" + PrintableName(AsBytes(child.name()));
      if (child.type() == pb::NODE_TYPE_DIRECTORY) {
        RETURN_IF_ERROR(VerifyDirectory(child, child_display, depth + 1));
      } else if (child.type() == pb::NODE_TYPE_FILE) {
        ++report_.files;
        for (const pb::ChunkRef& ref : child.content()) {
          RETURN_IF_ERROR(Drain(window_));
          in_flight_.push_back(pool_.Submit([this, ref, child_display]() -> Result<uint64_t> {
            Result<Bytes> data = reader_.Read(ref);
            if (!data.ok()) return data.status().WithContext(child_display);
            return static_cast<uint64_t>(data->size());
          }));
        }
      }
    }
    return OkStatus();
  }

  Status Drain(size_t keep) {
    while (in_flight_.size() > keep) {
      Result<uint64_t> r = in_flight_.front().get();
      in_flight_.pop_front();
      if (!r.ok()) {
        for (auto& f : in_flight_) f.wait();
        in_flight_.clear();
        return r.status();
      }
      ++report_.chunks_read;
      report_.bytes_read += *r;
      if (on_progress_) on_progress_(*r);
    }
    return OkStatus();
  }

  const std::function<void(uint64_t)> on_progress_;
  ChunkSource& source_;
  LocalStore* const local_;                  // null for a remote source
  std::unique_ptr<FetchRecorder> recorder_;  // remote only: wraps source_ for reader_
  ChunkReader reader_;
  WorkerPool pool_;
  const size_t window_;
  std::deque<std::future<Result<uint64_t>>> in_flight_;
  VerifyReport report_;
};

// The manifest of snapshot `id`, checked to be that snapshot's and to be
// readable with `keyset`.
Result<ParsedManifest> LoadManifestFor(ChunkSource& source, const Keyset& keyset,
                                       const SnapshotId& id) {
  ASSIGN_OR_RETURN(ParsedManifest m, source.LoadManifest(id));
  // A source promises this; a remote one is not trusted to keep it.
  if (m.id != id || SnapshotIdOf(m.envelope) != id) {
    return DataLossError("the store returned another manifest for snapshot " + HexEncode(id));
  }
  RETURN_IF_ERROR(CheckKeyset(m, keyset));
  return m;
}

}  // namespace

Result<RestoreReport> RestoreSnapshot(ChunkSource& source, const Keyset& keyset,
                                      const SnapshotId& id, const std::string& target,
                                      const RestoreOptions& options) {
  ASSIGN_OR_RETURN(ParsedManifest m, LoadManifestFor(source, keyset, id));
  Restorer restorer(source, keyset, options);
  return restorer.Run(m, target);
}

Result<VerifyReport> VerifySnapshot(LocalStore& store, const Keyset& keyset, const SnapshotId& id,
                                    size_t workers,
                                    const std::function<void(uint64_t)>& on_progress) {
  ASSIGN_OR_RETURN(ParsedManifest m, LoadManifestFor(store, keyset, id));
  Verifier verifier(store, &store, keyset, workers, on_progress);
  return verifier.Run(m);
}

Result<VerifyReport> VerifySnapshot(ChunkSource& source, const Keyset& keyset, const SnapshotId& id,
                                    size_t workers,
                                    const std::function<void(uint64_t)>& on_progress) {
  ASSIGN_OR_RETURN(ParsedManifest m, LoadManifestFor(source, keyset, id));
  Verifier verifier(source, /*local=*/nullptr, keyset, workers, on_progress);
  return verifier.Run(m);
}

}  // namespace ferry::snapshot
