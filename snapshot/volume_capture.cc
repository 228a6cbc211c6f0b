#include "snapshot/volume_capture.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "core/log.h"
#include "core/version.h"
#include "core/worker_pool.h"
#include "snapshot/chunk_stream.h"
#include "snapshot/chunk_writer.h"
#include "snapshot/delta.h"
#include "snapshot/file_cache.h"
#include "snapshot/manifest_commit.h"
#include "snapshot/ref_set.h"
#include "snapshot/tree.h"

namespace ferry::snapshot {
namespace {

// A file whose ctime is this close to the moment we started reading it may
// have been changed within one timestamp tick of our read without moving its
// times: read it again once the clock has moved past.
constexpr int64_t kRacyWindowNs = 50'000'000;
constexpr size_t kReadSize = 1 << 20;

int64_t ToNs(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

bool SameFileState(const struct stat& a, const struct stat& b) {
  return a.st_ino == b.st_ino && a.st_dev == b.st_dev && a.st_size == b.st_size &&
         ToNs(a.st_mtim) == ToNs(b.st_mtim) && ToNs(a.st_ctim) == ToNs(b.st_ctim);
}

std::string JoinDisplay(const std::string& dir, ByteView name) {
  const std::string n = PrintableName(name);
  return dir.empty() ? n : dir + "/" + n;
}

class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// One parsed CaptureOptions::excludes pattern.
struct ExcludePattern {
  std::string glob;        // without the anchoring '/' and the trailing '/'
  bool by_path = false;    // had a '/': matched against the path from the root
  bool dirs_only = false;  // had a trailing '/'
};

Result<std::vector<ExcludePattern>> ParseExcludes(const std::vector<std::string>& patterns) {
  std::vector<ExcludePattern> out;
  for (const std::string& p : patterns) {
    auto invalid = [&](const std::string& why) {
      return InvalidArgumentError("exclude pattern '" + PrintableName(AsBytes(p)) + "' " + why);
    };
    if (p.empty()) return InvalidArgumentError("exclude pattern '' is empty");
    if (p.find('\0') != std::string::npos) return invalid("contains a NUL byte");
    if (p.size() > 4096) return invalid("is longer than 4096 bytes");
    ExcludePattern e;
    std::string g = p;
    if (g.back() == '/') {
      e.dirs_only = true;
      g.pop_back();
    }
    if (!g.empty() && g.front() == '/') {
      e.by_path = true;
      g.erase(0, 1);
    }
    if (g.find('/') != std::string::npos) e.by_path = true;
    if (g.empty()) return invalid("names no entry (only '/')");
    e.glob = std::move(g);
    out.push_back(std::move(e));
  }
  return out;
}

// Chunks go to the workers in batches (up to 32 chunks or 512 KiB): one
// hand-off per batch, not per chunk, which matters for small files.
constexpr size_t kBatchChunks = 32;
constexpr size_t kBatchBytes = 512 << 10;
// Delta encoding is tried for files up to this size: the index of a file's
// old blocks takes ~90 bytes per 2 KiB block (~11 MiB at this size), and
// about two files' indexes are alive at once. Larger files are stored in
// whole chunks when they change (and keep no signatures).
constexpr uint64_t kMaxDeltaFileSize = 256ull << 20;

// What one changed file's chunks may be delta-encoded against: the chunks of
// its previous version (from the file cache), with their signatures.
struct FileDelta {
  Bytes old;  // the previous record's delta block (signatures are views into it)
  delta::BaseIndex index;
  std::unordered_map<ChunkId, uint32_t, ArrayHash> base_sealed_sizes;  // of the index's bases
  std::unordered_map<ChunkId, KnownDelta, ArrayHash> known_deltas;     // by content id
  std::unordered_map<ChunkId, ByteView, ArrayHash> signatures;         // by content id
  DeltaContext context;
};

// Chunks on their way to the workers, their bytes back to back in one buffer.
// Buffers come from the Capturer's free list and all have one capacity
// (kBatchBytes + the largest chunk): chunk data costs no allocation per
// chunk, and the few buffers in flight are reused whatever the dataset's
// size, so the process's peak memory does not creep up with it.
struct ChunkBatch {
  Bytes data;
  std::vector<size_t> ends;                              // chunk i is data[ends[i - 1], ends[i])
  std::vector<std::shared_ptr<const FileDelta>> deltas;  // parallel to ends; may be null
  bool submitted = false;
  std::shared_future<std::vector<Result<ChunkResult>>> results;
};

// One chunk's place in a batch; Capturer::Await gives its result.
struct ChunkHandle {
  std::shared_ptr<ChunkBatch> batch;
  size_t index = 0;
};

// A node whose content is still being hashed and sealed by the workers.
struct PendingNode {
  pb::Node node;
  std::vector<ChunkHandle> chunks;
  // Content already known (cache hit): refs with sealed sizes.
  std::vector<CachedChunk> known;
  // Cache record to write once the content is known (empty key: do not cache).
  CachedFile cache;
  // Delta encoding of this file's chunks (CaptureOptions::delta), else null.
  // Held while the file is read; then only its chunks in the workers' queue
  // hold it, so that at most a few files' indexes are in memory at once.
  std::shared_ptr<const FileDelta> delta;
  bool delta_on = false;  // a delta context was used: record signatures
};

// A directory being captured: its children's nodes fill `children` by slot
// (name order) as they are resolved, possibly after the walk has moved on.
// When the walk has listed it and every child is resolved, its tree is
// chunked and the directory's own node queues for its tree's chunks.
struct DirState {
  pb::Node node;                     // the directory itself; its content is its tree
  std::vector<pb::Node> children;    // by slot
  size_t unresolved = 0;             // children whose node is not final yet
  bool listed = false;               // the walk has visited all its entries
  std::shared_ptr<DirState> parent;  // null: the root
  size_t slot = 0;                   // this directory's slot in parent->children
};

// A node waiting for its chunks, and where it goes once they are known.
struct QueuedNode {
  PendingNode p;
  std::shared_ptr<DirState> dir;  // the directory it belongs to; null: it is the root
  size_t slot = 0;
};

// Nodes may wait for their chunks in the queue up to this many: the walk
// then stops to resolve the oldest. It keeps reading while the workers seal,
// across directory boundaries, with memory bounded by this and the pool's
// queue whatever the dataset's shape.
constexpr size_t kMaxQueuedNodes = 1024;

class Capturer {
 public:
  Capturer(const Keyset& keyset, LocalStore& store, const CaptureOptions& options)
      : keyset_(keyset),
        store_(store),
        options_(options),
        chunker_(options.chunker, keyset.gear_table()),
        stream_(chunker_,
                [this](ByteView chunk) {
                  stream_target_->chunks.push_back(Submit(chunk, stream_target_->delta));
                }),
        writer_(keyset, store, options.seal),
        block_hasher_(options.delta ? std::make_unique<delta::BlockHasher>(keyset.chunk_id_hasher())
                                    : nullptr),
        pool_(options.workers == 0 ? WorkerPool::DefaultThreads() : options.workers,
              /*queue_capacity=*/(options.workers == 0 ? WorkerPool::DefaultThreads()
                                                       : options.workers) +
                  1),
        refs_(*Env::Default(), store.tmp_dir()) {}

  Result<CaptureReport> Run(const std::string& source);
  void SetExcludes(std::vector<ExcludePattern> excludes) { excludes_ = std::move(excludes); }

 private:
  ChunkHandle Submit(ByteView chunk, std::shared_ptr<const FileDelta> delta) {
    if (!open_batch_) {
      open_batch_ = std::make_shared<ChunkBatch>();
      open_batch_->data = TakeBatchBuffer();
    }
    ChunkBatch& b = *open_batch_;
    ChunkHandle h{open_batch_, b.ends.size()};
    b.data.insert(b.data.end(), chunk.begin(), chunk.end());  // within its capacity
    b.ends.push_back(b.data.size());
    b.deltas.push_back(std::move(delta));
    if (b.ends.size() >= kBatchChunks || b.data.size() >= kBatchBytes) SubmitOpenBatch();
    return h;
  }
  Bytes TakeBatchBuffer() {
    {
      std::lock_guard<std::mutex> lock(buffers_mu_);
      if (!free_buffers_.empty()) {
        Bytes b = std::move(free_buffers_.back());
        free_buffers_.pop_back();
        return b;
      }
    }
    Bytes b;
    b.reserve(kBatchBytes + options_.chunker.max_size);
    return b;
  }
  void ReturnBatchBuffer(Bytes&& b) {
    b.clear();
    std::lock_guard<std::mutex> lock(buffers_mu_);
    free_buffers_.push_back(std::move(b));
  }
  void SubmitOpenBatch() {
    if (!open_batch_) return;
    std::shared_ptr<ChunkBatch> batch = std::move(open_batch_);
    batch->submitted = true;
    // The lambda lives in the future's shared state until the last handle is
    // gone: the task hands the buffer back as soon as its chunks are stored.
    batch->results =
        pool_
            .Submit([this, data = std::move(batch->data), ends = std::move(batch->ends),
                     deltas = std::move(batch->deltas)]() mutable {
              std::vector<Result<ChunkResult>> out;
              out.reserve(ends.size());
              size_t begin = 0;
              for (size_t i = 0; i < ends.size(); ++i) {
                const ByteView chunk(data.data() + begin, ends[i] - begin);
                begin = ends[i];
                out.push_back(writer_.Write(chunk, deltas[i] ? &deltas[i]->context : nullptr));
                deltas[i].reset();
              }
              ReturnBatchBuffer(std::move(data));
              return out;
            })
            .share();
  }
  // The chunk stream, emptied, with its chunks going to `p` (and p's delta
  // context). One stream serves every file and tree: its buffer (max chunk
  // size + one read) is allocated once per capture, not once per file.
  ChunkStream& StreamInto(PendingNode& p) {
    stream_.Reset();
    stream_target_ = &p;
    return stream_;
  }
  Result<ChunkResult> Await(const ChunkHandle& h) {
    if (!h.batch->submitted) SubmitOpenBatch();  // an unsubmitted batch is the open one
    return h.batch->results.get()[h.index];
  }
  void DiscardChunks(PendingNode& p) {
    for (const ChunkHandle& h : p.chunks) Await(h).status().IgnoreError();
    p.chunks.clear();
  }
  // Resolves a pending node: fills its content, records refs and the cache entry.
  Status Resolve(PendingNode& p);
  // Whether a pending node's chunks are all sealed (it can resolve without waiting).
  static bool Ready(const PendingNode& p) {
    if (p.chunks.empty()) return true;
    const ChunkBatch& last = *p.chunks.back().batch;  // batches finish in about queue order
    return last.submitted &&
           last.results.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }
  // Takes a slot in `dir` for a child whose node comes later.
  static size_t ReserveSlot(DirState& dir) {
    dir.children.emplace_back();
    ++dir.unresolved;
    return dir.children.size() - 1;
  }
  // Queues a child node of `dir` until its chunks are sealed.
  Status Enqueue(const std::shared_ptr<DirState>& dir, PendingNode&& p) {
    const size_t slot = ReserveSlot(*dir);
    queue_.push_back(QueuedNode{std::move(p), dir, slot});
    return Pump(/*drain=*/false);
  }
  // Resolves queued nodes in order: those already sealed, and the oldest
  // while the queue is over its bound; with `drain`, all of them.
  Status Pump(bool drain);
  Status ResolveQueued(QueuedNode& q);
  // Chunks the tree of a listed directory whose children are all resolved.
  void FinishDirectory(const std::shared_ptr<DirState>& dir);
  // Walks a directory; its node reaches parent->children[slot] (the root:
  // root_node_) once the queue has resolved it.
  Status CaptureDirectory(int fd, const struct stat& st, ByteView name, const std::string& key,
                          const std::string& display, std::shared_ptr<DirState> parent,
                          size_t slot);
  // Fills a file node; returns false when the file must be skipped.
  Result<bool> CaptureFile(int dir_fd, ByteView name, const struct stat& listed,
                           const std::string& key, const std::string& display, PendingNode& p);
  // Reads the file's data extents into chunks. *logical_size is the size the
  // content describes: st_size, or less when the file shrank while read.
  Status ReadFileContent(int fd, const struct stat& st, PendingNode& p, bool* changed,
                         uint64_t* logical_size);
  // The delta context of a file whose previous record is `previous` (null: none).
  std::shared_ptr<const FileDelta> MakeFileDelta(const CachedFile* previous);
  // Queues a serialized tree's chunks as p's content (an empty tree: one empty chunk).
  void SubmitTree(const Bytes& tree, PendingNode& p) {
    ChunkStream& stream = StreamInto(p);
    stream.Write(tree);
    stream.Finish();
    if (tree.empty()) p.chunks.push_back(Submit(ByteView(), nullptr));  // an empty directory
  }
  // Chunks a serialized tree; returns the refs of its chunks (resolved).
  Result<std::vector<pb::ChunkRef>> StoreTree(const Bytes& tree_bytes);
  void ReadXattrs(int fd, pb::Node& node, const std::string& display);
  // Whether the entry `name` at `rel_path` (from the source root, '/'
  // separated) is excluded. `is_dir` is only consulted by directory-only patterns.
  bool Excluded(const std::string& name, const std::string& rel_path, bool is_dir) const {
    for (const ExcludePattern& e : excludes_) {
      if (e.dirs_only && !is_dir) continue;
      const bool match = e.by_path ? ::fnmatch(e.glob.c_str(), rel_path.c_str(), FNM_PATHNAME) == 0
                                   : ::fnmatch(e.glob.c_str(), name.c_str(), 0) == 0;
      if (match) return true;
    }
    return false;
  }
  bool HasDirOnlyExcludes() const {
    return std::any_of(excludes_.begin(), excludes_.end(),
                       [](const ExcludePattern& e) { return e.dirs_only; });
  }
  void Warn(const std::string& msg) {
    if (options_.on_warning) options_.on_warning(msg);
  }
  void Skip(const std::string& display, const std::string& why) {
    report_.skipped.push_back(display + ": " + why);
    Warn("skipped " + display + ": " + why);
  }

  const Keyset& keyset_;
  LocalStore& store_;
  const CaptureOptions& options_;
  Chunker chunker_;
  ChunkStream stream_;
  PendingNode* stream_target_ = nullptr;  // StreamInto
  ChunkWriter writer_;
  std::unique_ptr<delta::BlockHasher> block_hasher_;  // CaptureOptions::delta
  std::mutex buffers_mu_;
  std::vector<Bytes> free_buffers_;  // guarded by buffers_mu_; ChunkBatch::data
  WorkerPool pool_;                  // after what its tasks use: destroyed (joined) first
  RefSetBuilder refs_;
  std::shared_ptr<ChunkBatch> open_batch_;
  std::deque<QueuedNode> queue_;  // in walk order, so the file cache is written in key order
  std::optional<pb::Node> root_node_;
  std::unique_ptr<FileCacheReader> cache_in_;
  std::unique_ptr<FileCacheWriter> cache_out_;
  std::map<std::pair<dev_t, ino_t>, uint64_t> hardlinks_;
  uint64_t next_hardlink_id_ = 1;
  std::vector<ExcludePattern> excludes_;
  CaptureReport report_;
};

Status Capturer::Resolve(PendingNode& p) {
  Status first_error;
  // With delta encoding, the new cache record's delta block is rebuilt here.
  const bool record_delta = p.delta_on && !p.chunks.empty();
  if (record_delta) p.cache.delta.clear();
  for (const ChunkHandle& h : p.chunks) {
    Result<ChunkResult> r = Await(h);
    if (!r.ok()) {
      if (first_error.ok()) first_error = r.status();
      continue;
    }
    CachedChunk c{r->id, r->plain_size, r->sealed_size};
    p.known.push_back(c);
    // A delta chunk's bases go into the refs with it.
    for (const auto& [base, sealed_size] : r->bases) RETURN_IF_ERROR(refs_.Add(base, sealed_size));
    if (record_delta) AppendDeltaEntry(p.cache.delta, r->content_id, r->bases, r->signature);
  }
  p.chunks.clear();
  RETURN_IF_ERROR(first_error);
  if (!record_delta && !p.cache.delta.empty()) {
    // A cache hit: its delta chunks' bases are in the record.
    thread_local std::vector<DeltaEntry> entries;
    if (ParseDeltaBlock(p.cache.delta, p.known, entries)) {
      for (const DeltaEntry& e : entries) {
        for (const auto& [base, sealed_size] : e.bases) {
          RETURN_IF_ERROR(refs_.Add(base, sealed_size));
        }
      }
    } else {
      p.cache.delta.clear();
    }
  }
  for (const CachedChunk& c : p.known) {
    if (p.node.type() == pb::NODE_TYPE_FILE) report_.bytes_data += c.plain_size;
    pb::ChunkRef* ref = p.node.add_content();
    ref->set_id(c.id.data(), c.id.size());
    ref->set_size(c.plain_size);
    RETURN_IF_ERROR(refs_.Add(c.id, c.sealed_size));
    ++report_.chunks;
  }
  if (cache_out_ && !p.cache.key.empty()) {
    p.cache.chunks = std::move(p.known);
    RETURN_IF_ERROR(cache_out_->Add(p.cache));
  }
  return OkStatus();
}

std::shared_ptr<const FileDelta> Capturer::MakeFileDelta(const CachedFile* previous) {
  auto d = std::make_shared<FileDelta>();
  d->context.hasher = block_hasher_.get();
  d->context.want_signature = true;
  std::vector<DeltaEntry> entries;
  if (previous != nullptr && !previous->delta.empty()) {
    d->old = previous->delta;  // entries' signatures point into d->old
    if (!ParseDeltaBlock(d->old, previous->chunks, entries)) entries.clear();
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    const CachedChunk& c = previous->chunks[i];
    DeltaEntry& e = entries[i];
    if (e.flags & kCachedChunkDelta) {
      d->signatures.emplace(e.content_id, e.signature);
      d->known_deltas.emplace(e.content_id, KnownDelta{c.id, c.sealed_size, std::move(e.bases)});
    } else {
      d->signatures.emplace(c.id, e.signature);
      // Only whole chunks become bases: what one writer makes is at most
      // one delta deep, so a restore reads at most one level of bases.
      if (d->index.Add(c.id, e.signature).ok()) d->base_sealed_sizes.emplace(c.id, c.sealed_size);
    }
  }
  d->context.index = &d->index;
  d->context.base_sealed_sizes = &d->base_sealed_sizes;
  d->context.known_deltas = &d->known_deltas;
  d->context.known_signatures = &d->signatures;
  return d;
}

Status Capturer::Pump(bool drain) {
  while (!queue_.empty()) {
    if (!drain && queue_.size() <= kMaxQueuedNodes && !Ready(queue_.front().p)) break;
    QueuedNode q = std::move(queue_.front());
    queue_.pop_front();
    RETURN_IF_ERROR(ResolveQueued(q));
  }
  return OkStatus();
}

Status Capturer::ResolveQueued(QueuedNode& q) {
  RETURN_IF_ERROR(Resolve(q.p));
  if (q.dir == nullptr) {
    root_node_ = std::move(q.p.node);
    return OkStatus();
  }
  // Fatal invariant: capture never writes a node that restore would refuse.
  if (Status s = ValidateNode(q.p.node); !s.ok()) {
    return InternalError("capture produced an invalid node: " + s.message());
  }
  DirState& dir = *q.dir;
  dir.children[q.slot] = std::move(q.p.node);
  if (--dir.unresolved == 0 && dir.listed) FinishDirectory(q.dir);
  return OkStatus();
}

void Capturer::FinishDirectory(const std::shared_ptr<DirState>& dir) {
  Bytes tree;
  for (const pb::Node& node : dir->children) TreeWriter::AppendNode(node, tree);
  std::vector<pb::Node>().swap(dir->children);
  PendingNode p;
  p.node = std::move(dir->node);
  SubmitTree(tree, p);
  queue_.push_back(QueuedNode{std::move(p), dir->parent, dir->slot});
}

void Capturer::ReadXattrs(int fd, pb::Node& node, const std::string& display) {
  std::vector<char> names(4096);
  ssize_t n;
  while ((n = ::flistxattr(fd, names.data(), names.size())) < 0 && errno == ERANGE) {
    names.resize(names.size() * 4);
    if (names.size() > (1 << 20)) return;
  }
  if (n <= 0) return;  // none, or the filesystem has no xattrs
  std::vector<std::string> list;
  for (ssize_t i = 0; i < n;) {
    std::string name(names.data() + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    if (name.rfind("user.", 0) == 0) list.push_back(std::move(name));
  }
  std::sort(list.begin(), list.end());
  for (const std::string& name : list) {
    std::vector<char> value(256);
    ssize_t v;
    while ((v = ::fgetxattr(fd, name.c_str(), value.data(), value.size())) < 0 && errno == ERANGE &&
           value.size() <= kMaxXattrValueSize) {
      value.resize(value.size() * 4);
    }
    if (v < 0) {
      Warn("could not read xattr " + name + " of " + display + ": " + std::strerror(errno));
      continue;
    }
    pb::Xattr* x = node.add_xattrs();
    x->set_name(name);
    x->set_value(value.data(), static_cast<size_t>(v));
  }
}

Status Capturer::ReadFileContent(int fd, const struct stat& st, PendingNode& p, bool* changed,
                                 uint64_t* logical_size) {
  *changed = false;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  std::vector<std::pair<uint64_t, uint64_t>> extents;
  // Sparse files: ask the filesystem where the data is.
  if (size > 0 && static_cast<uint64_t>(st.st_blocks) * 512 < size) {
    off_t pos = 0;
    while (static_cast<uint64_t>(pos) < size) {
      off_t data = ::lseek(fd, pos, SEEK_DATA);
      if (data < 0) {
        if (errno == ENXIO) break;  // only a hole remains
        extents.clear();
        extents.emplace_back(0, size);  // no SEEK_DATA support: read it all
        break;
      }
      off_t hole = ::lseek(fd, data, SEEK_HOLE);
      if (hole < 0) hole = static_cast<off_t>(size);
      if (static_cast<uint64_t>(hole) > size) hole = static_cast<off_t>(size);
      if (hole > data) extents.emplace_back(data, hole - data);
      pos = hole;
    }
  } else if (size > 0) {
    extents.emplace_back(0, size);
  }
  if (size > 0 && extents.empty()) {
    // All hole: "no extents" would mean one extent [0, size), so record the
    // last byte (a zero) as data; restore then allocates one block.
    extents.emplace_back(size - 1, 1);
  }
  ChunkStream& stream = StreamInto(p);
  uint64_t total = 0;
  size_t extents_read = 0;
  for (auto& [offset, length] : extents) {
    uint64_t done = 0;
    while (done < length) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(length - done, kReadSize));
      MutableByteView dst = stream.Prepare(want);
      ssize_t r = ::pread(fd, dst.data(), want, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoToStatus(errno, "read");
      }
      if (r == 0) {  // shorter than it said: it is being truncated
        *changed = true;
        break;
      }
      stream.Commit(static_cast<size_t>(r));
      done += static_cast<uint64_t>(r);
    }
    total += done;
    if (*changed) {
      length = done;  // keep exactly what was read
      if (done > 0) ++extents_read;
      break;
    }
    ++extents_read;
  }
  stream.Finish();
  report_.bytes_read += total;
  extents.resize(extents_read);
  *logical_size =
      *changed ? (extents.empty() ? 0 : extents.back().first + extents.back().second) : size;
  if (extents.size() == 1 && extents[0].first == 0 && extents[0].second == *logical_size) {
    extents.clear();
  }
  p.cache.extents = extents;
  p.node.clear_extents();
  for (const auto& [offset, length] : extents) {
    pb::Extent* e = p.node.add_extents();
    e->set_offset(offset);
    e->set_length(length);
  }
  return OkStatus();
}

Result<bool> Capturer::CaptureFile(int dir_fd, ByteView name, const struct stat& listed,
                                   const std::string& key, const std::string& display,
                                   PendingNode& p) {
  const std::string cname = ToString(name);
  pb::Node& node = p.node;
  // Unchanged since the last capture: one stat, no read.
  if (cache_in_) {
    if (const CachedFile* c = cache_in_->Find(key);
        c != nullptr && c->ino == listed.st_ino &&
        c->size == static_cast<uint64_t>(listed.st_size) && c->mtime_ns == ToNs(listed.st_mtim) &&
        c->ctime_ns == ToNs(listed.st_ctim)) {
      node.set_name(cname);
      node.set_type(pb::NODE_TYPE_FILE);
      node.set_mode(listed.st_mode & 07777);
      node.set_uid(listed.st_uid);
      node.set_gid(listed.st_gid);
      node.set_mtime_ns(ToNs(listed.st_mtim));
      node.set_size(static_cast<uint64_t>(listed.st_size));
      for (const auto& [offset, length] : c->extents) {
        pb::Extent* e = node.add_extents();
        e->set_offset(offset);
        e->set_length(length);
      }
      for (const auto& [xattr_name, xattr_value] : c->xattrs) {
        pb::Xattr* x = node.add_xattrs();
        x->set_name(xattr_name);
        x->set_value(xattr_value);
      }
      p.known = c->chunks;
      p.cache = *c;
      p.cache.chunks.clear();
      ++report_.cache_hits;
      return true;
    } else if (block_hasher_ && static_cast<uint64_t>(listed.st_size) <= kMaxDeltaFileSize) {
      p.delta = MakeFileDelta(c);
    }
  } else if (block_hasher_ && static_cast<uint64_t>(listed.st_size) <= kMaxDeltaFileSize) {
    p.delta = MakeFileDelta(nullptr);
  }

  for (int attempt = 0;; ++attempt) {
    int fd = ::openat(dir_fd, cname.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM) {
      fd = ::openat(dir_fd, cname.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
      Skip(display, std::string("cannot open: ") + std::strerror(errno));
      return false;
    }
    FdCloser closer(fd);
    struct stat st1;
    if (::fstat(fd, &st1) != 0 || !S_ISREG(st1.st_mode)) {
      Skip(display, "changed type while being captured");
      return false;
    }
    const int64_t read_start = options_.clock->NowUnixNanos();
    p.chunks.clear();
    node.Clear();
    node.set_name(cname);
    node.set_type(pb::NODE_TYPE_FILE);
    bool changed = false;
    uint64_t logical_size = 0;
    Status s = ReadFileContent(fd, st1, p, &changed, &logical_size);
    if (!s.ok()) {
      // Drain what was submitted, then skip the file.
      DiscardChunks(p);
      Skip(display, s.message());
      return false;
    }
    struct stat st2;
    if (::fstat(fd, &st2) != 0) changed = true;
    if (!changed && !SameFileState(st1, st2)) changed = true;
    const bool racy = !changed && ToNs(st2.st_ctim) >= read_start - kRacyWindowNs;

    node.set_mode(st2.st_mode & 07777);
    node.set_uid(st2.st_uid);
    node.set_gid(st2.st_gid);
    node.set_mtime_ns(ToNs(st2.st_mtim));
    node.set_size(logical_size);
    if (!changed && !racy) {
      ReadXattrs(fd, node, display);
      p.cache.xattrs.clear();
      for (const pb::Xattr& x : node.xattrs()) p.cache.xattrs.emplace_back(x.name(), x.value());
      p.cache.key = key;
      p.cache.ino = st2.st_ino;
      p.cache.size = static_cast<uint64_t>(st2.st_size);
      p.cache.mtime_ns = ToNs(st2.st_mtim);
      p.cache.ctime_ns = ToNs(st2.st_ctim);
      return true;
    }
    if (attempt >= options_.max_retries) {
      ReadXattrs(fd, node, display);
      node.set_inconsistent(true);
      p.cache.key.clear();  // never cache what we could not read consistently
      report_.inconsistent.push_back(display);
      Warn("inconsistent: " + display + " kept changing while it was read (" +
           std::to_string(attempt + 1) + " attempts)");
      return true;
    }
    // Discard this attempt's chunks (they are stored but will not be
    // referenced), then wait out the timestamp tick if that was the doubt.
    DiscardChunks(p);
    p.cache.extents.clear();
    if (racy) {
      const int64_t wait_until = ToNs(st2.st_ctim) + kRacyWindowNs;
      while (options_.clock->NowUnixNanos() <= wait_until) {
        const int64_t left = wait_until - options_.clock->NowUnixNanos() + 1'000'000;
        std::this_thread::sleep_for(std::chrono::nanoseconds(std::max<int64_t>(left, 1'000'000)));
      }
    }
  }
}

Result<std::vector<pb::ChunkRef>> Capturer::StoreTree(const Bytes& tree_bytes) {
  PendingNode p;
  SubmitTree(tree_bytes, p);
  RETURN_IF_ERROR(Resolve(p));
  return std::vector<pb::ChunkRef>(p.node.content().begin(), p.node.content().end());
}

Status Capturer::CaptureDirectory(int fd, const struct stat& st, ByteView name,
                                  const std::string& key, const std::string& display,
                                  std::shared_ptr<DirState> parent, size_t slot) {
  auto state = std::make_shared<DirState>();
  state->parent = std::move(parent);
  state->slot = slot;
  pb::Node& dir = state->node;
  dir.set_name(ToString(name));
  dir.set_type(pb::NODE_TYPE_DIRECTORY);
  dir.set_mode(st.st_mode & 07777);
  dir.set_uid(st.st_uid);
  dir.set_gid(st.st_gid);
  dir.set_mtime_ns(ToNs(st.st_mtim));
  ReadXattrs(fd, dir, display.empty() ? "." : display);
  ++report_.directories;

  std::vector<std::string> names;
  {
    int list_fd = ::dup(fd);
    DIR* d = list_fd >= 0 ? ::fdopendir(list_fd) : nullptr;
    if (d == nullptr) {
      if (list_fd >= 0) ::close(list_fd);
      return ErrnoToStatus(errno, "list " + (display.empty() ? "." : display));
    }
    ::rewinddir(d);
    errno = 0;
    while (struct dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      names.emplace_back(e->d_name);
    }
    const int err = errno;
    ::closedir(d);
    if (err != 0) return ErrnoToStatus(err, "list " + (display.empty() ? "." : display));
  }
  std::sort(names.begin(), names.end());

  for (const std::string& n : names) {
    const ByteView nb = AsBytes(n);
    const std::string child_display = JoinDisplay(display, nb);
    const std::string child_key = key.empty() ? n : key + std::string(1, '\0') + n;
    if (!excludes_.empty()) {
      // Names hold no '/' or NUL: the key with '/' for NUL is the path.
      std::string rel_path = child_key;
      std::replace(rel_path.begin(), rel_path.end(), '\0', '/');
      bool is_dir = false;
      if (HasDirOnlyExcludes()) {
        struct stat xst;
        is_dir = ::fstatat(fd, n.c_str(), &xst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(xst.st_mode);
      }
      if (Excluded(n, rel_path, is_dir)) {
        ++report_.excluded;
        continue;
      }
    }
    if (n.size() > kMaxNameSize) {
      Skip(child_display, "name longer than 255 bytes");
      continue;
    }
    struct stat cst;
    if (::fstatat(fd, n.c_str(), &cst, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) Skip(child_display, std::string("cannot stat: ") + std::strerror(errno));
      continue;  // vanished since the listing: not part of this snapshot
    }
    if (S_ISREG(cst.st_mode)) {
      PendingNode p;
      ASSIGN_OR_RETURN(bool keep, CaptureFile(fd, nb, cst, child_key, child_display, p));
      if (!keep) continue;
      p.delta_on = p.delta != nullptr;
      p.delta.reset();  // read: the queued chunks keep what they need
      ++report_.files;
      report_.bytes_logical += p.node.size();
      if (cst.st_nlink > 1) {
        auto [it, inserted] =
            hardlinks_.emplace(std::make_pair(cst.st_dev, cst.st_ino), next_hardlink_id_);
        if (inserted) {
          ++next_hardlink_id_;
        } else {
          ++report_.hardlinks;
        }
        p.node.set_hardlink_id(it->second);
      }
      RETURN_IF_ERROR(Enqueue(state, std::move(p)));
    } else if (S_ISDIR(cst.st_mode)) {
      if (static_cast<size_t>(std::count(child_key.begin(), child_key.end(), '\0')) >=
          kMaxTreeDepth) {
        Skip(child_display, "nested deeper than " + std::to_string(kMaxTreeDepth) + " directories");
        continue;
      }
      int child = ::openat(fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0) {
        Skip(child_display, std::string("cannot open directory: ") + std::strerror(errno));
        continue;
      }
      FdCloser closer(child);
      struct stat dst;
      if (::fstat(child, &dst) != 0) {
        Skip(child_display, std::string("cannot stat: ") + std::strerror(errno));
        continue;
      }
      const size_t child_slot = ReserveSlot(*state);
      RETURN_IF_ERROR(
          CaptureDirectory(child, dst, nb, child_key, child_display, state, child_slot));
    } else if (S_ISLNK(cst.st_mode)) {
      std::vector<char> buf(static_cast<size_t>(std::max<off_t>(cst.st_size, 64)) + 1);
      ssize_t len;
      while ((len = ::readlinkat(fd, n.c_str(), buf.data(), buf.size())) ==
             static_cast<ssize_t>(buf.size())) {
        if (buf.size() > kMaxSymlinkTargetSize) break;
        buf.resize(buf.size() * 2);
      }
      if (len <= 0 || static_cast<size_t>(len) > kMaxSymlinkTargetSize) {
        Skip(child_display, len < 0 ? std::string("cannot read link: ") + std::strerror(errno)
                                    : std::string("symlink target too long"));
        continue;
      }
      pb::Node link;
      link.set_name(n);
      link.set_type(pb::NODE_TYPE_SYMLINK);
      link.set_mode(cst.st_mode & 07777);
      link.set_uid(cst.st_uid);
      link.set_gid(cst.st_gid);
      link.set_mtime_ns(ToNs(cst.st_mtim));
      link.set_symlink_target(buf.data(), static_cast<size_t>(len));
      ++report_.symlinks;
      PendingNode p;
      p.node = std::move(link);
      RETURN_IF_ERROR(Enqueue(state, std::move(p)));
    } else {
      const char* kind = S_ISSOCK(cst.st_mode)   ? "socket"
                         : S_ISFIFO(cst.st_mode) ? "FIFO"
                         : S_ISCHR(cst.st_mode)  ? "character device"
                         : S_ISBLK(cst.st_mode)  ? "block device"
                                                 : "unsupported file type";
      Skip(child_display, std::string(kind) + " (not captured)");
    }
  }
  state->listed = true;
  if (state->unresolved == 0) FinishDirectory(state);
  return OkStatus();
}

Result<CaptureReport> Capturer::Run(const std::string& source) {
  const int64_t start_mono = options_.clock->MonotonicNanos();
  const int64_t created = options_.clock->NowUnixNanos();
  int root = ::open(source.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) {
    if (errno == ENOTDIR) return InvalidArgumentError(source + " is not a directory");
    return ErrnoToStatus(errno, "open " + source);
  }
  FdCloser closer(root);
  struct stat st;
  if (::fstat(root, &st) != 0) return ErrnoToStatus(errno, "stat " + source);

  std::string name = options_.dataset_name;
  if (name.empty()) {
    std::string trimmed = source;
    while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
    const size_t slash = trimmed.find_last_of('/');
    name = slash == std::string::npos ? trimmed : trimmed.substr(slash + 1);
    if (name.empty() || name == "." || name == "/") name = "root";
  }
  report_.dataset_name = name;

  const FileCacheIdentity identity{keyset_.id(), options_.chunker};
  const std::string cache_path = store_.cache_dir() + "/files-" +
                                 HexEncode(ByteView(sodium::Blake2b256(AsBytes(name)).data(), 16)) +
                                 ".cache";
  if (options_.use_file_cache) {
    cache_in_ = FileCacheReader::Open(*Env::Default(), cache_path, identity, &report_.cache_note);
    ASSIGN_OR_RETURN(cache_out_, FileCacheWriter::Create(*Env::Default(), cache_path, identity));
  } else {
    report_.cache_note = "file cache disabled";
  }

  RETURN_IF_ERROR(CaptureDirectory(root, st, {}, "", "", nullptr, 0));
  RETURN_IF_ERROR(Pump(/*drain=*/true));
  if (!root_node_) return InternalError("capture finished without the root directory's node");
  pb::Node root_node = std::move(*root_node_);
  root_node.clear_name();
  Bytes root_tree;
  TreeWriter::AppendNode(root_node, root_tree);
  ASSIGN_OR_RETURN(std::vector<pb::ChunkRef> root_refs, StoreTree(root_tree));

  // The parent: the latest snapshot of the same dataset in this store.
  pb::Manifest m;
  m.set_format_version(kManifestFormatVersion);
  m.set_created_unix_ns(created);
  ASSIGN_OR_RETURN(std::vector<SnapshotSummary> existing, store_.ListSnapshots());
  for (auto it = existing.rbegin(); it != existing.rend(); ++it) {
    if (it->body.datasets_size() > 0 && it->body.datasets(0).name() == name) {
      m.set_parent(it->id.data(), it->id.size());
      break;
    }
  }
  for (const auto& [k, v] : options_.labels) (*m.mutable_labels())[k] = v;
  pb::Dataset* ds = m.add_datasets();
  ds->set_name(name);
  ds->set_kind(pb::DATASET_KIND_VOLUME);
  for (const pb::ChunkRef& r : root_refs) *ds->add_root() = r;
  pb::DatasetStats* stats = ds->mutable_stats();
  stats->set_files(report_.files);
  stats->set_directories(report_.directories);
  stats->set_symlinks(report_.symlinks);
  stats->set_bytes(report_.bytes_logical);
  stats->set_inconsistent(report_.inconsistent.size());
  stats->set_skipped(report_.skipped.size());
  const std::string refs_path = NewRefsPath(store_);
  ASSIGN_OR_RETURN(RefSetSummaryInfo refs, refs_.Finish(refs_path));
  SetManifestOrigin(m, keyset_, refs);
  Result<ParsedManifest> parsed = SignAndCommit(store_, keyset_, m, refs_path);
  if (!parsed.ok()) {
    const Status& committed = parsed.status();
    if (committed.code() == StatusCode::kFailedPrecondition) {
      // Most likely a file cache that no longer matches the store: drop it so
      // that the next capture reads everything.
      Env::Default()->RemoveFile(cache_path).IgnoreError();
      return FailedPreconditionError(committed.message() +
                                     "; the file cache was discarded, run the capture again");
    }
    return committed;
  }
  if (cache_out_) {
    if (Status s = cache_out_->Commit(); !s.ok()) {
      Warn("could not save the file cache (next capture reads every file): " + s.ToString());
    }
  }
  report_.id = parsed->id;
  const ChunkWriterStats& ws = writer_.stats();
  report_.bytes_new = ws.new_plain_bytes.load();
  report_.bytes_stored = ws.stored_bytes.load();
  report_.chunks_new = ws.new_chunks.load();
  report_.chunks_delta = ws.delta_chunks.load();
  report_.bytes_delta = ws.delta_plain_bytes.load();
  report_.chunks = refs.count;
  report_.seconds = static_cast<double>(options_.clock->MonotonicNanos() - start_mono) / 1e9;
  return std::move(report_);
}

}  // namespace

Result<CaptureReport> CaptureVolume(const std::string& source, const Keyset& keyset,
                                    LocalStore& store, const CaptureOptions& options) {
  RETURN_IF_ERROR(options.chunker.Validate());
  ASSIGN_OR_RETURN(std::vector<ExcludePattern> excludes, ParseExcludes(options.excludes));
  Capturer capturer(keyset, store, options);
  capturer.SetExcludes(std::move(excludes));
  return capturer.Run(source);
}

}  // namespace ferry::snapshot
