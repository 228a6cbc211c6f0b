// LocalStore: a directory holding packs of sealed chunks, a SQLite index
// (chunk id -> pack, offset, length; data keys; snapshots) and snapshot
// manifests with their reference sets. Layout and crash rules:
// docs/format/store.md.
//
// One writer (an exclusive lock on DIR/lock) and any number of readers.
// Full packs are finished (index, fsync, rename, index commit) by a
// background thread while the next pack fills; at most two packs wait for it.
// Write ordering makes every crash safe: a pack is fsync'd and renamed into
// place before its chunks are indexed; a snapshot is committed (listed) only
// after every chunk it references is indexed and its refs and manifest files
// are durable. Leftovers of a crash (unindexed packs, temp files) are
// reclaimed or re-indexed when the store is next opened for writing.
//
// Errors: kNotFound (no store, unknown snapshot), kFailedPrecondition (not a
// store, wrong mode, incomplete snapshot), kUnavailable (another writer holds
// the lock), kDataLoss (damaged files), kInvalidArgument (ambiguous prefix).
// Thread-safety: thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/env.h"
#include "core/sqlite.h"
#include "snapshot/chunk_sink.h"
#include "snapshot/chunk_store.h"
#include "snapshot/manifest.h"
#include "snapshot/pack.h"
#include "snapshot/types.h"

namespace ferry::snapshot {

struct LocalStoreOptions {
  Env* env = Env::Default();
  // A pack is finished once it reaches this size (bytes).
  uint64_t target_pack_size = 16u << 20;
  // Read-only opens: keep one read transaction for the store's whole life,
  // so lookups skip SQLite's per-query file locking (restore and verify do
  // one per chunk). The store is then seen as it was when opened.
  bool pin_reads = false;
};

struct SnapshotSummary {
  SnapshotId id{};
  int64_t created_unix_ns = 0;
  pb::Manifest body;
};

struct StoreStats {
  uint64_t packs = 0;
  uint64_t pack_bytes = 0;
  uint64_t chunks = 0;
  uint64_t snapshots = 0;
};

class LocalStore final : public ChunkStore {
 public:
  enum class Mode { kReadOnly, kReadWrite };

  // Creates a store in `dir` (absent or empty) and opens it for writing.
  static Result<std::unique_ptr<LocalStore>> Create(const std::string& dir,
                                                    const LocalStoreOptions& options = {});
  static Result<std::unique_ptr<LocalStore>> Open(const std::string& dir, Mode mode,
                                                  const LocalStoreOptions& options = {});
  // Open for writing, creating the store first if `dir` is absent or empty.
  static Result<std::unique_ptr<LocalStore>> OpenOrCreate(const std::string& dir,
                                                          const LocalStoreOptions& options = {});
  ~LocalStore() override;

  const std::string& dir() const { return dir_; }
  std::string tmp_dir() const { return dir_ + "/tmp"; }
  std::string cache_dir() const { return dir_ + "/cache"; }

  // --- chunks ---
  // The sealed size of a chunk if the store has it (indexed or in the open pack).
  Result<std::optional<uint32_t>> ChunkSealedSize(const ChunkId& id) override;
  // Reads the sealed bytes of an indexed chunk. kNotFound if absent.
  Result<Bytes> ReadSealedChunk(const ChunkId& id);
  // The same into `out` (resized): a reused buffer saves an allocation and
  // its zero-fill per chunk on the restore path.
  Status ReadSealedChunk(const ChunkId& id, Bytes& out) override;
  // The wrapped data key with this id. kNotFound if absent.
  Result<Bytes> WrappedKey(const KeyId& id) override;

  // Adds a sealed chunk unless present. Not durable until Flush().
  Result<PutResult> PutChunk(const ChunkId& id, ByteView sealed, const KeyId& key_id,
                             ByteView wrapped_key) override;
  // Finishes the open pack and waits until every pack is durable and
  // indexed. Returns the first error of any background flush.
  Status Flush() override;

  // --- snapshots ---
  // Makes a snapshot durable and listed: flushes, checks that every chunk in
  // `refs_path` is present with its sealed size, moves the refs next to the
  // manifest and records the snapshot. kFailedPrecondition if chunks are missing.
  Status CommitSnapshot(const ParsedManifest& manifest, const std::string& refs_path) override;
  Result<std::vector<SnapshotSummary>> ListSnapshots();
  Result<ParsedManifest> LoadManifest(const SnapshotId& id) override;
  std::string RefsPath(const SnapshotId& id) const;
  Result<Bytes> ReadRefs(const SnapshotId& id, uint64_t max_bytes) override;
  std::string staging_dir() const override { return tmp_dir(); }
  // "latest" or a unique prefix of the hex id (at least 4 characters).
  Result<SnapshotId> ResolveSnapshot(std::string_view spec);

  // The name of the pack holding an indexed chunk. kNotFound if absent.
  Result<std::string> PackOf(const ChunkId& id);
  // Checks one pack: footer, index checksum and that its name is its
  // checksum; with `entries`, also every entry's SHA-256.
  Status VerifyPack(const std::string& name, bool entries);

  Result<StoreStats> Stats();
  // Checks every pack's checksum and index against the SQLite index; returns
  // the number of packs checked.
  Result<uint64_t> VerifyPacks();

 private:
  LocalStore(std::string dir, Mode mode, const LocalStoreOptions& options);
  Status Init(bool create);
  Status Recover();
  // The writer's connection is kept inside a transaction between commits.
  Status OpenTxn();                                                         // needs db_mu_
  Status CommitTxn();                                                       // needs db_mu_
  Status IndexPack(const std::string& name, const PackContents& contents);  // needs db_mu_
  Status InsertPackRows(const std::string& name, const PackContents& contents);
  // Moves the open pack to the flush queue. Needs mu_.
  void QueueOpenPack();
  Status WaitForFlushes(std::unique_lock<std::mutex>& lock);
  void FlusherLoop();
  Status FinishPack(std::unique_ptr<PackWriter> writer);
  Result<std::optional<uint32_t>> IndexedSize(const ChunkId& id);       // needs db_mu_
  Result<std::shared_ptr<RandomAccessFile>> PackFile(int64_t pack_id);  // needs db_mu_
  std::string PackPath(const std::string& name) const;

  const std::string dir_;
  const Mode mode_;
  const LocalStoreOptions options_;
  Env& env_;
  int lock_fd_ = -1;

  // Lock order: mu_ before db_mu_. The flusher never holds both.
  std::mutex mu_;
  std::condition_variable flush_cv_;
  std::unique_ptr<PackWriter> writer_;                   // guarded by mu_
  std::deque<std::unique_ptr<PackWriter>> flush_queue_;  // guarded by mu_
  bool flushing_ = false;                                // guarded by mu_
  bool stopping_ = false;                                // guarded by mu_
  Status flush_error_;                                   // guarded by mu_ (sticky)
  // Chunks in the open pack and in packs not yet indexed.
  std::unordered_map<ChunkId, uint32_t, ArrayHash> pending_;  // guarded by mu_
  std::thread flusher_;

  std::mutex db_mu_;
  std::unique_ptr<sqlite::Database> db_;                             // guarded by db_mu_
  bool txn_open_ = false;                                            // guarded by db_mu_
  std::map<int64_t, std::shared_ptr<RandomAccessFile>> open_packs_;  // guarded by db_mu_
};

}  // namespace ferry::snapshot
