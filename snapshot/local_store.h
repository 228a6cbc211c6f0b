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
// Space is given back with ReclaimPacks: a pack none of whose chunks is
// still needed is removed, but the ids and sealed sizes of its chunks stay
// in the index ("reclaimed"), so later captures deduplicate against them.
// Snapshots are never removed. The agent's outbox uses this once every
// target hub has a snapshot's chunks.
//
// Index schema: version 2; a version-1 store is migrated when it is opened
// for writing and can still be opened read-only as it is.
//
// Errors: kNotFound (no store, unknown snapshot, absent or reclaimed chunk),
// kFailedPrecondition (not a store, wrong mode, incomplete snapshot, newer
// index schema), kUnavailable (another writer holds the lock), kDataLoss
// (damaged files), kInvalidArgument (ambiguous prefix).
// Thread-safety: thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
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
  // Live (indexed, readable) packs, their total size in bytes, and their chunks.
  uint64_t packs = 0;
  uint64_t pack_bytes = 0;
  uint64_t chunks = 0;
  uint64_t snapshots = 0;
  // Packs removed by ReclaimPacks, the bytes they held, and the chunks whose
  // ids and sizes the index still keeps for them (not counted in `chunks`).
  uint64_t reclaimed_packs = 0;
  uint64_t reclaimed_bytes = 0;
  uint64_t reclaimed_chunks = 0;
};

// What one ReclaimPacks call removed.
struct ReclaimReport {
  uint64_t packs_removed = 0;
  uint64_t bytes_freed = 0;       // sizes of the pack files deleted
  uint64_t chunks_forgotten = 0;  // chunks that became reclaimed (no longer readable)
};

class LocalStore final : public ChunkStore {
 public:
  enum class Mode { kReadOnly, kReadWrite };

  // Creates a store in `dir` (absent or empty) and opens it for writing.
  static Result<std::unique_ptr<LocalStore>> Create(const std::string& dir,
                                                    const LocalStoreOptions& options = {});
  static Result<std::unique_ptr<LocalStore>> Open(const std::string& dir, Mode mode,
                                                  const LocalStoreOptions& options = {});
  // Open for writing, creating the store first if `dir` is absent or empty,
  // or holds only the empty skeleton of a creation that failed before its
  // marker was written (which is created again).
  static Result<std::unique_ptr<LocalStore>> OpenOrCreate(const std::string& dir,
                                                          const LocalStoreOptions& options = {});
  ~LocalStore() override;

  const std::string& dir() const { return dir_; }
  std::string tmp_dir() const { return dir_ + "/tmp"; }
  std::string cache_dir() const { return dir_ + "/cache"; }

  // --- chunks ---
  // The sealed size of a chunk if the store has it (indexed or in the open
  // pack) or had it and reclaimed it: a capture never stores a reclaimed
  // chunk again.
  Result<std::optional<uint32_t>> ChunkSealedSize(const ChunkId& id) override;
  // Reads the sealed bytes of an indexed chunk. kNotFound if absent, or
  // "chunk <hex> was reclaimed from this store ..." if its pack was reclaimed.
  Result<Bytes> ReadSealedChunk(const ChunkId& id);
  // The same into `out` (resized): a reused buffer saves an allocation and
  // its zero-fill per chunk on the restore path.
  Status ReadSealedChunk(const ChunkId& id, Bytes& out) override;
  // The wrapped data key with this id. kNotFound if absent.
  Result<Bytes> WrappedKey(const KeyId& id) override;

  // Adds a sealed chunk unless present. Not durable until Flush(). A
  // reclaimed chunk is stored again (added = true) and is live once flushed.
  Result<PutResult> PutChunk(const ChunkId& id, ByteView sealed, const KeyId& key_id,
                             ByteView wrapped_key) override;
  // Finishes the open pack and waits until every pack is durable and
  // indexed. Returns the first error of any background flush.
  Status Flush() override;
  // Packs are numbered as they are opened; a pack's chunks are durable once
  // the background flusher has finished it (or Flush returned).
  uint64_t WriteMark() override;
  uint64_t DurableMark() override;
  uint64_t FailureCount() override;
  Status LastFailure() override;

  // --- snapshots ---
  // Makes a snapshot durable and listed: flushes, checks that every chunk in
  // `refs_path` is present (live or reclaimed) with its sealed size, moves the
  // refs next to the manifest and records the snapshot. kFailedPrecondition
  // if chunks are missing.
  Status CommitSnapshot(const ParsedManifest& manifest, const std::string& refs_path) override;
  Result<bool> IsCommitted(const SnapshotId& id) override;
  Result<std::vector<SnapshotSummary>> ListSnapshots();
  Result<ParsedManifest> LoadManifest(const SnapshotId& id) override;
  std::string RefsPath(const SnapshotId& id) const;
  Result<Bytes> ReadRefs(const SnapshotId& id, uint64_t max_bytes) override;
  // Streams the reference set of a committed snapshot, in id order, without
  // loading it whole: calls `fn` for each chunk id with its sealed size and
  // stops at the first error `fn` returns (returned as is). kNotFound if the
  // store has no reference set for `id`; kDataLoss if the object is damaged —
  // its checksum is checked at the end, so `fn` may have seen entries of a
  // damaged object by then. Reads only the refs file: works on read-only
  // stores and for snapshots whose chunks were reclaimed.
  Status ForEachRef(const SnapshotId& id,
                    const std::function<Status(const ChunkId&, uint32_t sealed_size)>& fn);
  std::string staging_dir() const override { return tmp_dir(); }
  // "latest" or a unique prefix of the hex id (at least 4 characters).
  Result<SnapshotId> ResolveSnapshot(std::string_view spec);

  // The name of the pack holding an indexed chunk. kNotFound if absent.
  Result<std::string> PackOf(const ChunkId& id);
  // Checks one pack: footer, index checksum and that its name is its
  // checksum; with `entries`, also every entry's SHA-256.
  Status VerifyPack(const std::string& name, bool entries);

  Result<StoreStats> Stats();
  // Checks every live pack's checksum and index against the SQLite index
  // (reclaimed packs are skipped); returns the number of packs checked.
  Result<uint64_t> VerifyPacks();

  // Removes every finished pack none of whose chunks `needed` returns true
  // for. The ids of the removed chunks stay known ("reclaimed"):
  // ChunkSealedSize still answers their sealed size, so later captures keep
  // deduplicating against them and never store them again; ReadSealedChunk
  // returns kNotFound "chunk <hex> was reclaimed from this store ...".
  // Snapshots stay listed, with their manifests and refs.
  //
  // Only indexed packs are considered: waits for packs being finished, but
  // never touches the open pack (call Flush() first to include it). A
  // pack's chunks are the ones the index locates in it.
  //
  // Crash safety: the packs and their chunks are marked reclaimed in one
  // index transaction, then the pack files are deleted; a file left behind
  // by a crash (or an unlink that failed, which is logged) is deleted by the
  // next writable open, never re-indexed.
  //
  // `needed` is called once per indexed chunk, on the calling thread, while
  // the store is locked: it must not call into this store. Writes and reads
  // wait meanwhile. Readers (other processes) see the result when the
  // transaction commits; a reader pinned (pin_reads) before it still sees
  // the chunks as live and may get kDataLoss "missing" for them.
  // kFailedPrecondition on a read-only store; the sticky error of a failed
  // background flush.
  Result<ReclaimReport> ReclaimPacks(const std::function<bool(const ChunkId&)>& needed);

 private:
  LocalStore(std::string dir, Mode mode, const LocalStoreOptions& options);
  // Create without the emptiness check.
  static Result<std::unique_ptr<LocalStore>> CreateIn(const std::string& dir,
                                                      const LocalStoreOptions& options);
  // `names` (the entries of `dir`, which has no marker) are only what a
  // creation that stopped before writing the marker leaves: the lock, the
  // index, marker temporaries and the four empty directories.
  static Result<bool> IsUnfinishedCreation(Env& env, const std::string& dir,
                                           const std::vector<std::string>& names);
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
  Status FinishPack(PackWriter& writer);
  // A pack that could not be written: its chunks are no longer pending
  // (they will be reported missing and sent again), its file is removed,
  // the failure is counted. Needs mu_.
  void DiscardPack(PackWriter& writer, const std::vector<ChunkId>& ids, const Status& why);
  // Live chunks only (what PutChunk deduplicates against).
  Result<std::optional<uint32_t>> IndexedSize(const ChunkId& id);  // needs db_mu_
  // Live or reclaimed chunks (what captures and commits count as present).
  Result<std::optional<uint32_t>> KnownSize(const ChunkId& id);  // needs db_mu_
  Result<bool> IsReclaimed(const ChunkId& id);                   // needs db_mu_
  Status ReclaimedError(const ChunkId& id) const;
  // kNotFound for an id that is not live: says "reclaimed" when it was.
  Status ChunkNotFound(const ChunkId& id);  // needs db_mu_
  // Brings a writer's index from `from_version` to kSchemaVersion in one transaction.
  Status MigrateSchema(int64_t from_version);
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
  // Pack sequence numbers (durability marks): the open pack's, those of the
  // flush queue (parallel to it), the last one opened, the last finished.
  uint64_t writer_seq_ = 0;          // guarded by mu_
  std::deque<uint64_t> flush_seqs_;  // guarded by mu_
  uint64_t last_seq_ = 0;            // guarded by mu_
  uint64_t durable_seq_ = 0;         // guarded by mu_
  bool flushing_ = false;            // guarded by mu_
  bool stopping_ = false;            // guarded by mu_
  uint64_t failures_ = 0;            // guarded by mu_: packs that could not be written
  Status last_failure_;              // guarded by mu_
  // Chunks in the open pack and in packs not yet indexed.
  std::unordered_map<ChunkId, uint32_t, ArrayHash> pending_;  // guarded by mu_
  std::thread flusher_;

  std::mutex db_mu_;
  std::unique_ptr<sqlite::Database> db_;                             // guarded by db_mu_
  bool txn_open_ = false;                                            // guarded by db_mu_
  std::map<int64_t, std::shared_ptr<RandomAccessFile>> open_packs_;  // guarded by db_mu_
  // False only on a read-only open of a version-1 index, which has no
  // reclaimed_* tables (and nothing reclaimed). Set by Init.
  bool has_reclaim_tables_ = true;
};

}  // namespace ferry::snapshot
