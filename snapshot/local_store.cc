#include "snapshot/local_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/crash_site.h"
#include "core/log.h"
#include "core/sodium.h"
#include "snapshot/ref_set.h"

namespace ferry::snapshot {
namespace {

constexpr char kMarkerName[] = "FERRY-STORE";
constexpr char kMarkerContent[] = "ferry local store\nformat 1\n";
// Index schema versions (PRAGMA user_version): 1 = the original tables;
// 2 adds reclaimed_packs and reclaimed_chunks (ReclaimPacks).
constexpr int64_t kSchemaVersion = 2;
constexpr int64_t kOldestSchemaVersion = 1;
constexpr size_t kMaxOpenPacks = 64;

// Schema version 1. Never edited: version 2 adds tables with kSchemaV2.
constexpr char kSchemaV1[] = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS packs(
  pack_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  entries INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
  id BLOB PRIMARY KEY,
  pack_id INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS data_keys(
  key_id BLOB PRIMARY KEY,
  wrapped BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots(
  id BLOB PRIMARY KEY,
  created_ns INTEGER NOT NULL,
  manifest BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS snapshots_by_time ON snapshots(created_ns);
)sql";

// What version 2 adds: the migration from version 1, and part of a new
// store's schema. Reclaimed packs leave `packs` and their chunks leave
// `chunks`, so every other query sees live data only.
constexpr char kSchemaV2[] = R"sql(
CREATE TABLE IF NOT EXISTS reclaimed_packs(
  name TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  entries INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reclaimed_chunks(
  id BLOB PRIMARY KEY,
  length INTEGER NOT NULL) WITHOUT ROWID;
)sql";

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

namespace {
LocalStoreOptions Clamped(LocalStoreOptions o) {
  // Packs must stay well below the 1 GiB a reader accepts.
  o.target_pack_size = std::min<uint64_t>(o.target_pack_size, 512u << 20);
  return o;
}
}  // namespace

LocalStore::LocalStore(std::string dir, Mode mode, const LocalStoreOptions& options)
    : dir_(std::move(dir)), mode_(mode), options_(Clamped(options)), env_(*options.env) {}

LocalStore::~LocalStore() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    // The open pack was never acknowledged: nothing refers to it. Packs
    // already queued are finished: that is harmless and saves re-sending.
    if (writer_) writer_->Abandon();
    writer_.reset();
    stopping_ = true;
  }
  flush_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Result<std::unique_ptr<LocalStore>> LocalStore::Create(const std::string& dir,
                                                       const LocalStoreOptions& options) {
  Env& env = *options.env;
  ASSIGN_OR_RETURN(bool exists, env.FileExists(dir));
  if (exists) {
    ASSIGN_OR_RETURN(std::vector<std::string> names, env.ListDir(dir));
    if (!names.empty()) {
      return FailedPreconditionError("cannot create a store in " + dir +
                                     ": the directory is not empty");
    }
  }
  return CreateIn(dir, options);
}

Result<std::unique_ptr<LocalStore>> LocalStore::CreateIn(const std::string& dir,
                                                         const LocalStoreOptions& options) {
  Env& env = *options.env;
  RETURN_IF_ERROR(env.CreateDirs(dir, 0700));
  for (const char* sub : {"packs", "snapshots", "tmp", "cache"}) {
    RETURN_IF_ERROR(env.CreateDirs(JoinPath(dir, sub), 0700));
  }
  std::unique_ptr<LocalStore> store(new LocalStore(dir, Mode::kReadWrite, options));
  RETURN_IF_ERROR(store->Init(/*create=*/true));
  // The marker is written last: a directory without it is not a store.
  RETURN_IF_ERROR(WriteFileAtomic(env, JoinPath(dir, kMarkerName), AsBytes(kMarkerContent)));
  return store;
}

Result<std::unique_ptr<LocalStore>> LocalStore::Open(const std::string& dir, Mode mode,
                                                     const LocalStoreOptions& options) {
  Env& env = *options.env;
  ASSIGN_OR_RETURN(bool exists, env.FileExists(dir));
  if (!exists) return NotFoundError("store " + dir + " does not exist");
  Result<Bytes> marker = env.ReadFile(JoinPath(dir, kMarkerName), 4096);
  if (!marker.ok()) {
    if (marker.status().code() == StatusCode::kNotFound) {
      return FailedPreconditionError(dir + " is not a Ferry store (no " + kMarkerName + " file)");
    }
    return marker.status();
  }
  if (AsStringView(*marker) != kMarkerContent) {
    return FailedPreconditionError(dir + ": unsupported store format (" + kMarkerName +
                                   " says: " + ToString(*marker) + ")");
  }
  std::unique_ptr<LocalStore> store(new LocalStore(dir, mode, options));
  RETURN_IF_ERROR(store->Init(/*create=*/false));
  return store;
}

Result<std::unique_ptr<LocalStore>> LocalStore::OpenOrCreate(const std::string& dir,
                                                             const LocalStoreOptions& options) {
  Env& env = *options.env;
  ASSIGN_OR_RETURN(bool exists, env.FileExists(dir));
  if (exists) {
    ASSIGN_OR_RETURN(std::vector<std::string> names, env.ListDir(dir));
    if (!names.empty()) {
      ASSIGN_OR_RETURN(bool marked, env.FileExists(JoinPath(dir, kMarkerName)));
      if (marked) return Open(dir, Mode::kReadWrite, options);
      ASSIGN_OR_RETURN(bool unfinished, IsUnfinishedCreation(env, dir, names));
      if (!unfinished) return Open(dir, Mode::kReadWrite, options);  // says what is wrong
      // A creation that failed before its marker (a full disk, an I/O
      // error): it holds nothing but the empty skeleton. Start it again.
      log::Warn("store {}: creating it again (an earlier creation did not finish)", dir);
      for (const std::string& name : names) {
        if (name.rfind("index.db", 0) == 0 || name.rfind(kMarkerName, 0) == 0) {
          RETURN_IF_ERROR(env.RemoveFile(JoinPath(dir, name)));
        }
      }
      return CreateIn(dir, options);
    }
  }
  return Create(dir, options);
}

Result<bool> LocalStore::IsUnfinishedCreation(Env& env, const std::string& dir,
                                              const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    const bool skeleton_dir =
        name == "packs" || name == "snapshots" || name == "tmp" || name == "cache";
    const bool own_file = name == "lock" || name == "index.db" || name == "index.db-wal" ||
                          name == "index.db-shm" || name == "index.db-journal" ||
                          name.rfind(std::string(kMarkerName) + ".tmp-", 0) == 0;
    if (!skeleton_dir && !own_file) return false;
    if (skeleton_dir) {
      ASSIGN_OR_RETURN(std::vector<std::string> inside, env.ListDir(JoinPath(dir, name)));
      if (!inside.empty()) return false;  // it was used: not ours to redo
    }
  }
  return true;
}

Status LocalStore::Init(bool create) {
  if (mode_ == Mode::kReadWrite) {
    const std::string lock_path = JoinPath(dir_, "lock");
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) return ErrnoToStatus(errno, "open " + lock_path);
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) {
        return UnavailableError("store " + dir_ +
                                " is being written by another process; try again when it is done");
      }
      return ErrnoToStatus(errno, "lock " + lock_path);
    }
  }
  sqlite::OpenOptions db_options;
  db_options.read_only = false;  // readers need write access to the WAL index (shm)
  db_options.create = create;
  db_options.cache_kib = 1024;  // the index is read by key; a small cache keeps RSS flat
  ASSIGN_OR_RETURN(db_, sqlite::Database::Open(JoinPath(dir_, "index.db"), db_options));
  ASSIGN_OR_RETURN(int64_t version, db_->UserVersion());
  if (version == 0) {
    if (mode_ != Mode::kReadWrite) {
      return FailedPreconditionError("store " + dir_ + " has an uninitialised index");
    }
    RETURN_IF_ERROR(db_->Exec(kSchemaV1));
    RETURN_IF_ERROR(db_->Exec(kSchemaV2));
    ASSIGN_OR_RETURN(
        sqlite::Statement st,
        db_->Prepare("INSERT OR REPLACE INTO meta(key, value) VALUES ('store_id', ?)"));
    RETURN_IF_ERROR(st.Bind(1, HexEncode(sodium::RandomArray<16>())).Run());
    RETURN_IF_ERROR(db_->SetUserVersion(kSchemaVersion));
  } else if (version < kOldestSchemaVersion || version > kSchemaVersion) {
    return FailedPreconditionError("store " + dir_ + " has index schema version " +
                                   std::to_string(version) + "; this Ferry reads versions " +
                                   std::to_string(kOldestSchemaVersion) + " to " +
                                   std::to_string(kSchemaVersion));
  } else if (version < kSchemaVersion) {
    if (mode_ == Mode::kReadWrite) {
      RETURN_IF_ERROR(MigrateSchema(version));
    } else {
      // Readers never write the index: an old store reads as it is (it
      // cannot have reclaimed anything) until a writer migrates it.
      has_reclaim_tables_ = false;
    }
  }
  if (mode_ == Mode::kReadWrite) {
    if (!create) RETURN_IF_ERROR(Recover());
    flusher_ = std::thread([this] { FlusherLoop(); });
  } else if (options_.pin_reads) {
    // One read transaction for the reader's whole life, instead of taking and
    // dropping SQLite's file locks (fcntl) on every lookup. Writers are not
    // blocked (WAL).
    RETURN_IF_ERROR(db_->Exec("BEGIN"));
    ASSIGN_OR_RETURN(auto st, db_->Cached("SELECT count(*) FROM snapshots"));
    RETURN_IF_ERROR(st->Step());  // the snapshot is taken at the first read
  }
  return OkStatus();
}

Status LocalStore::MigrateSchema(int64_t from_version) {
  // One transaction: a crash leaves either the old version or the new one.
  ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  Status s;
  if (from_version < 2) s = db_->Exec(kSchemaV2);
  if (s.ok()) s = db_->SetUserVersion(kSchemaVersion);
  if (s.ok()) s = txn.Commit();
  if (!s.ok()) {
    return s.WithContext("store " + dir_ + ": migrating the index from schema version " +
                         std::to_string(from_version) + " to " + std::to_string(kSchemaVersion));
  }
  log::Info("store {}: migrated the index from schema version {} to {}", dir_, from_version,
            kSchemaVersion);
  return OkStatus();
}

std::string LocalStore::PackPath(const std::string& name) const {
  return dir_ + "/packs/" + name.substr(0, 2) + "/" + name + ".pack";
}

std::string LocalStore::RefsPath(const SnapshotId& id) const {
  return dir_ + "/snapshots/" + HexEncode(id) + ".refs";
}

Result<Bytes> LocalStore::ReadRefs(const SnapshotId& id, uint64_t max_bytes) {
  ASSIGN_OR_RETURN(uint64_t size, env_.FileSize(RefsPath(id)));
  if (size > max_bytes) {
    return ResourceExhaustedError("reference set of " + std::to_string(size) +
                                  " bytes exceeds the limit of " + std::to_string(max_bytes));
  }
  return env_.ReadFile(RefsPath(id), max_bytes);
}

Status LocalStore::ForEachRef(
    const SnapshotId& id, const std::function<Status(const ChunkId&, uint32_t sealed_size)>& fn) {
  const std::string path = RefsPath(id);
  ASSIGN_OR_RETURN(bool exists, env_.FileExists(path));
  if (!exists) {
    return NotFoundError("snapshot " + HexEncode(id) + " has no reference set in store " + dir_);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<RefSetReader> refs, RefSetReader::Open(env_, path));
  RefEntry e;
  while (refs->Next(e)) RETURN_IF_ERROR(fn(e.id, e.sealed_size));
  return refs->status();
}

Status LocalStore::Recover() {
  // 1. Temporary files of interrupted writes: nothing refers to them.
  ASSIGN_OR_RETURN(std::vector<std::string> tmp, env_.ListDir(tmp_dir()));
  for (const auto& name : tmp) env_.RemoveFile(JoinPath(tmp_dir(), name)).IgnoreError();
  for (const std::string sub : {"/snapshots", "/cache"}) {
    ASSIGN_OR_RETURN(std::vector<std::string> names, env_.ListDir(dir_ + sub));
    for (const auto& name : names) {
      if (name.find(".tmp-") != std::string::npos) {
        env_.RemoveFile(dir_ + sub + "/" + name).IgnoreError();
      }
    }
  }

  // 2. Packs that were renamed into place but not indexed (crash between the
  //    rename and the index commit): verify and index them, so their chunks
  //    are reused instead of uploaded again.
  ASSIGN_OR_RETURN(std::vector<std::string> shards, env_.ListDir(dir_ + "/packs"));
  for (const auto& shard : shards) {
    const std::string shard_dir = dir_ + "/packs/" + shard;
    Result<std::vector<std::string>> names = env_.ListDir(shard_dir);
    if (!names.ok()) continue;
    for (const auto& file : *names) {
      if (!EndsWith(file, ".pack")) continue;
      const std::string name = file.substr(0, file.size() - 5);
      ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare("SELECT 1 FROM packs WHERE name = ?"));
      st.Bind(1, name);
      ASSIGN_OR_RETURN(bool known, st.Step());
      if (known) continue;
      // A reclaimed pack whose file outlived its index commit (crash before
      // the unlink): finish the reclaim. Never index it again — its chunks
      // are recorded as reclaimed, and the space was meant to be freed.
      ASSIGN_OR_RETURN(sqlite::Statement rst,
                       db_->Prepare("SELECT 1 FROM reclaimed_packs WHERE name = ?"));
      rst.Bind(1, name);
      ASSIGN_OR_RETURN(bool reclaimed, rst.Step());
      if (reclaimed) {
        Status removed = env_.RemoveFile(JoinPath(shard_dir, file));
        if (removed.ok()) {
          log::Info("store {}: deleted pack {}, reclaimed before an interruption", dir_, name);
        } else {
          log::Warn("store {}: cannot delete reclaimed pack {}: {}", dir_, name,
                    removed.ToString());
        }
        continue;
      }
      Result<PackContents> contents = ReadPackIndex(env_, JoinPath(shard_dir, file), true);
      if (!contents.ok() || HexEncode(contents->checksum) != name) {
        log::Warn("store {}: unindexed pack {} is damaged ({}); moving it aside", dir_, file,
                  contents.ok() ? "name does not match checksum" : contents.status().ToString());
        env_.RenameFile(JoinPath(shard_dir, file), JoinPath(shard_dir, file + ".damaged"))
            .IgnoreError();
        continue;
      }
      {
        std::lock_guard<std::mutex> db_lock(db_mu_);
        RETURN_IF_ERROR(IndexPack(name, *contents));
      }
      log::Info("store {}: re-indexed pack {} left by an interrupted write", dir_, name);
    }
  }

  // 3. Manifests written but not recorded (crash before the snapshot row
  //    committed): record them if they are complete.
  ASSIGN_OR_RETURN(std::vector<std::string> snaps, env_.ListDir(dir_ + "/snapshots"));
  for (const auto& file : snaps) {
    if (!EndsWith(file, ".manifest")) continue;
    Result<Bytes> hex_id = HexDecode(file.substr(0, file.size() - 9));
    if (!hex_id.ok() || hex_id->size() != 32) continue;
    SnapshotId id;
    std::copy(hex_id->begin(), hex_id->end(), id.begin());
    ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare("SELECT 1 FROM snapshots WHERE id = ?"));
    st.BindBlob(1, id);
    ASSIGN_OR_RETURN(bool known, st.Step());
    if (known) continue;
    Result<ParsedManifest> m = LoadManifest(id);
    if (!m.ok()) {
      log::Warn("store {}: unrecorded manifest {} is unreadable: {}", dir_, file,
                m.status().ToString());
      continue;
    }
    Status s = CommitSnapshot(*m, RefsPath(id));
    if (!s.ok()) {
      log::Warn("store {}: unrecorded snapshot {} is incomplete: {}", dir_, HexEncode(id),
                s.ToString());
    } else {
      log::Info("store {}: recorded snapshot {} left by an interrupted commit", dir_,
                HexEncode(id));
    }
  }
  return OkStatus();
}

Status LocalStore::OpenTxn() {
  if (txn_open_) return OkStatus();
  RETURN_IF_ERROR(db_->Exec("BEGIN"));
  txn_open_ = true;
  return OkStatus();
}

Status LocalStore::CommitTxn() {
  if (!txn_open_) return OkStatus();
  txn_open_ = false;
  FERRY_CRASH_SITE("sqlite.before_commit");
  Status s = db_->Exec("COMMIT");
  if (!s.ok()) db_->Exec("ROLLBACK").IgnoreError();
  return s;
}

Status LocalStore::IndexPack(const std::string& name, const PackContents& contents) {
  RETURN_IF_ERROR(OpenTxn());
  Status s = InsertPackRows(name, contents);
  if (!s.ok()) {
    txn_open_ = false;
    db_->Exec("ROLLBACK").IgnoreError();
    return s;
  }
  return CommitTxn();  // durable (synchronous=FULL) before the chunks count as stored
}

Status LocalStore::InsertPackRows(const std::string& name, const PackContents& contents) {
  {
    ASSIGN_OR_RETURN(auto st,
                     db_->Cached("INSERT INTO packs(name, size, entries) VALUES (?, ?, ?)"));
    RETURN_IF_ERROR(st->Bind(1, name)
                        .Bind(2, static_cast<int64_t>(contents.size))
                        .Bind(3, static_cast<int64_t>(contents.entries.size()))
                        .Run());
  }
  const int64_t pack_id = db_->LastInsertRowId();
  {
    // The same pack written again (identical content) is live again.
    ASSIGN_OR_RETURN(auto st, db_->Cached("DELETE FROM reclaimed_packs WHERE name = ?"));
    RETURN_IF_ERROR(st->Bind(1, name).Run());
  }
  {
    ASSIGN_OR_RETURN(auto st,
                     db_->Cached("INSERT OR IGNORE INTO data_keys(key_id, wrapped) VALUES (?, ?)"));
    for (const PackKey& k : contents.keys) {
      RETURN_IF_ERROR(st->BindBlob(1, k.id).BindBlob(2, k.wrapped).Run());
      st->Reset();
    }
  }
  {
    // A chunk already indexed in another pack keeps its first location.
    ASSIGN_OR_RETURN(auto st,
                     db_->Cached("INSERT OR IGNORE INTO chunks(id, pack_id, offset, length) "
                                 "VALUES (?, ?, ?, ?)"));
    // A reclaimed chunk stored again is live again: it leaves
    // reclaimed_chunks, which holds only ids that `chunks` does not.
    ASSIGN_OR_RETURN(auto forget, db_->Cached("DELETE FROM reclaimed_chunks WHERE id = ?"));
    for (const PackEntry& e : contents.entries) {
      RETURN_IF_ERROR(st->BindBlob(1, e.id)
                          .Bind(2, pack_id)
                          .Bind(3, static_cast<int64_t>(e.offset))
                          .Bind(4, static_cast<int64_t>(e.length))
                          .Run());
      st->Reset();
      RETURN_IF_ERROR(forget->BindBlob(1, e.id).Run());
      forget->Reset();
    }
  }
  return OkStatus();
}

Result<std::optional<uint32_t>> LocalStore::IndexedSize(const ChunkId& id) {
  // The writer's connection stays inside a transaction between commits, so a
  // lookup does not take and drop SQLite's file locks (fcntl) every time.
  if (mode_ == Mode::kReadWrite) RETURN_IF_ERROR(OpenTxn());
  ASSIGN_OR_RETURN(auto st, db_->Cached("SELECT length FROM chunks WHERE id = ?"));
  st->BindBlob(1, id);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return std::optional<uint32_t>();
  return std::optional<uint32_t>(static_cast<uint32_t>(st->ColumnInt(0)));
}

Result<std::optional<uint32_t>> LocalStore::KnownSize(const ChunkId& id) {
  ASSIGN_OR_RETURN(std::optional<uint32_t> live, IndexedSize(id));
  if (live || !has_reclaim_tables_) return live;
  ASSIGN_OR_RETURN(auto st, db_->Cached("SELECT length FROM reclaimed_chunks WHERE id = ?"));
  st->BindBlob(1, id);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return std::optional<uint32_t>();
  return std::optional<uint32_t>(static_cast<uint32_t>(st->ColumnInt(0)));
}

Result<bool> LocalStore::IsReclaimed(const ChunkId& id) {
  if (!has_reclaim_tables_) return false;
  ASSIGN_OR_RETURN(auto st, db_->Cached("SELECT 1 FROM reclaimed_chunks WHERE id = ?"));
  st->BindBlob(1, id);
  return st->Step();
}

Status LocalStore::ReclaimedError(const ChunkId& id) const {
  return NotFoundError("chunk " + HexEncode(id) + " was reclaimed from this store (" + dir_ +
                       "): its pack was removed once no kept snapshot needed it");
}

Status LocalStore::ChunkNotFound(const ChunkId& id) {
  ASSIGN_OR_RETURN(bool reclaimed, IsReclaimed(id));
  if (reclaimed) return ReclaimedError(id);
  return NotFoundError("chunk " + HexEncode(id) + " is not in store " + dir_);
}

Result<std::optional<uint32_t>> LocalStore::ChunkSealedSize(const ChunkId& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = pending_.find(id); it != pending_.end()) return std::optional<uint32_t>(it->second);
  std::lock_guard<std::mutex> db_lock(db_mu_);
  return KnownSize(id);
}

Result<std::shared_ptr<RandomAccessFile>> LocalStore::PackFile(int64_t pack_id) {
  if (auto it = open_packs_.find(pack_id); it != open_packs_.end()) return it->second;
  ASSIGN_OR_RETURN(auto st, db_->Cached("SELECT name FROM packs WHERE pack_id = ?"));
  st->Bind(1, pack_id);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row)
    return DataLossError("index names pack #" + std::to_string(pack_id) + " which is not listed");
  const std::string name = st->ColumnText(0);
  Result<std::unique_ptr<RandomAccessFile>> f = env_.NewRandomAccessFile(PackPath(name));
  if (!f.ok()) {
    if (f.status().code() == StatusCode::kNotFound) {
      return DataLossError("pack " + name + " is missing from " + dir_);
    }
    return f.status();
  }
  if (open_packs_.size() >= kMaxOpenPacks) open_packs_.erase(open_packs_.begin());
  std::shared_ptr<RandomAccessFile> file = std::move(*f);
  open_packs_[pack_id] = file;
  return file;
}

Result<Bytes> LocalStore::ReadSealedChunk(const ChunkId& id) {
  Bytes out;
  RETURN_IF_ERROR(ReadSealedChunk(id, out));
  return out;
}

Status LocalStore::ReadSealedChunk(const ChunkId& id, Bytes& out) {
  std::shared_ptr<RandomAccessFile> file;
  uint64_t offset = 0;
  uint32_t length = 0;
  {
    std::lock_guard<std::mutex> lock(db_mu_);
    ASSIGN_OR_RETURN(auto st,
                     db_->Cached("SELECT pack_id, offset, length FROM chunks WHERE id = ?"));
    st->BindBlob(1, id);
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) {
      st->Reset();  // ChunkNotFound runs other statements
      return ChunkNotFound(id);
    }
    offset = static_cast<uint64_t>(st->ColumnInt(1));
    length = static_cast<uint32_t>(st->ColumnInt(2));
    Result<std::shared_ptr<RandomAccessFile>> pack = PackFile(st->ColumnInt(0));
    if (!pack.ok()) {
      // A writer in another process may have reclaimed the pack between the
      // two lookups (each its own read transaction): say so, not "missing".
      st->Reset();
      if (pack.status().code() == StatusCode::kDataLoss) {
        Result<bool> reclaimed = IsReclaimed(id);
        if (reclaimed.ok() && *reclaimed) return ReclaimedError(id);
      }
      return pack.status();
    }
    file = std::move(*pack);
  }
  // pread outside the lock; the shared_ptr keeps the file open even if the
  // cache evicts it meanwhile.
  return file->Read(offset, length, out);
}

Result<Bytes> LocalStore::WrappedKey(const KeyId& id) {
  std::lock_guard<std::mutex> lock(db_mu_);
  ASSIGN_OR_RETURN(auto st, db_->Cached("SELECT wrapped FROM data_keys WHERE key_id = ?"));
  st->BindBlob(1, id);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return NotFoundError("data key " + HexEncode(id) + " is not in store " + dir_);
  return st->ColumnBlob(0);
}

namespace {
std::vector<ChunkId> EntryIds(const PackWriter& writer) {
  std::vector<ChunkId> ids;
  ids.reserve(writer.entries().size());
  for (const PackEntry& e : writer.entries()) ids.push_back(e.id);
  return ids;
}
}  // namespace

Result<PutResult> LocalStore::PutChunk(const ChunkId& id, ByteView sealed, const KeyId& key_id,
                                       ByteView wrapped_key) {
  if (mode_ != Mode::kReadWrite) return FailedPreconditionError("store opened read-only");
  // Hash outside the lock: this runs on the capture's worker threads.
  const evp::Digest256 digest = evp::Sha256(sealed);
  std::unique_lock<std::mutex> lock(mu_);
  if (auto it = pending_.find(id); it != pending_.end()) return PutResult{it->second, false};
  {
    // Holding mu_ keeps the flusher from dropping a pending entry between the
    // check above and this lookup, so a chunk is never stored twice. A
    // reclaimed chunk is not live: it is stored again.
    std::lock_guard<std::mutex> db_lock(db_mu_);
    ASSIGN_OR_RETURN(std::optional<uint32_t> indexed, IndexedSize(id));
    if (indexed) return PutResult{*indexed, false};
  }
  if (!writer_) {
    const std::string tmp = tmp_dir() + "/pack-" + HexEncode(sodium::RandomArray<8>()) + ".tmp";
    ASSIGN_OR_RETURN(writer_, PackWriter::Create(env_, tmp));
    writer_seq_ = ++last_seq_;
  }
  if (Status added = writer_->Add(id, sealed, digest, key_id, wrapped_key); !added.ok()) {
    DiscardPack(*writer_, EntryIds(*writer_), added);
    writer_.reset();
    return added;
  }
  pending_[id] = static_cast<uint32_t>(sealed.size());
  if (writer_->size() >= options_.target_pack_size) {
    QueueOpenPack();
    // Back-pressure: do not run more than two packs ahead of the disk.
    flush_cv_.wait(lock, [this] { return flush_queue_.size() < 2; });
  }
  return PutResult{static_cast<uint32_t>(sealed.size()), true};
}

void LocalStore::QueueOpenPack() {
  if (!writer_) return;
  flush_queue_.push_back(std::move(writer_));
  flush_seqs_.push_back(writer_seq_);
  flush_cv_.notify_all();
}

uint64_t LocalStore::WriteMark() {
  std::lock_guard<std::mutex> lock(mu_);
  return last_seq_;  // the open pack, or the last one queued or finished
}

uint64_t LocalStore::DurableMark() {
  std::lock_guard<std::mutex> lock(mu_);
  // Nothing open or waiting: everything put so far is durable.
  if (!writer_ && flush_queue_.empty() && !flushing_) return last_seq_;
  return durable_seq_;
}

Status LocalStore::WaitForFlushes(std::unique_lock<std::mutex>& lock) {
  const uint64_t failures = failures_;
  QueueOpenPack();
  flush_cv_.wait(lock, [this] { return flush_queue_.empty() && !flushing_; });
  // A pack that failed meanwhile lost chunks put before this call.
  return failures_ != failures ? last_failure_ : OkStatus();
}

void LocalStore::DiscardPack(PackWriter& writer, const std::vector<ChunkId>& ids,
                             const Status& why) {
  for (const ChunkId& id : ids) pending_.erase(id);
  writer.Abandon();
  ++failures_;
  last_failure_ = why;
  log::Error(
      "store {}: a pack could not be written ({} chunks dropped: missing until put again): {}",
      dir_, ids.size(), why.ToString());
  flush_cv_.notify_all();
}

uint64_t LocalStore::FailureCount() {
  std::lock_guard<std::mutex> lock(mu_);
  return failures_;
}

Status LocalStore::LastFailure() {
  std::lock_guard<std::mutex> lock(mu_);
  return last_failure_;
}

Status LocalStore::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  return WaitForFlushes(lock);
}

void LocalStore::FlusherLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    flush_cv_.wait(lock, [this] { return stopping_ || !flush_queue_.empty(); });
    if (flush_queue_.empty()) return;  // stopping, and nothing left to finish
    std::unique_ptr<PackWriter> writer = std::move(flush_queue_.front());
    flush_queue_.pop_front();
    const uint64_t seq = flush_seqs_.front();
    flush_seqs_.pop_front();
    flushing_ = true;
    // Finish hands the entries over: keep their ids in case it fails.
    const std::vector<ChunkId> ids = EntryIds(*writer);
    lock.unlock();
    Status s = FinishPack(*writer);
    lock.lock();
    flushing_ = false;
    if (s.ok()) {
      durable_seq_ = seq;  // packs finish in order
    } else {
      DiscardPack(*writer, ids, s);
    }
    flush_cv_.notify_all();
  }
}

Status LocalStore::FinishPack(PackWriter& writer) {
  const std::string tmp = writer.path();
  Result<PackContents> contents = writer.Finish();
  auto forget = [&](const std::vector<PackEntry>& entries) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const PackEntry& e : entries) pending_.erase(e.id);
  };
  if (!contents.ok()) return contents.status();  // the flusher discards the pack
  const std::string name = HexEncode(contents->checksum);
  const std::string shard = dir_ + "/packs/" + name.substr(0, 2);
  RETURN_IF_ERROR(env_.CreateDirs(shard, 0700));
  FERRY_CRASH_SITE("store.pack.before_rename");
  RETURN_IF_ERROR(env_.RenameFile(tmp, PackPath(name)));
  RETURN_IF_ERROR(env_.SyncDir(shard));
  RETURN_IF_ERROR(env_.SyncDir(dir_ + "/packs"));
  FERRY_CRASH_SITE("store.pack.before_index");
  {
    std::lock_guard<std::mutex> db_lock(db_mu_);
    RETURN_IF_ERROR(IndexPack(name, *contents));
  }
  FERRY_CRASH_SITE("store.pack.after_index");
  forget(contents->entries);
  return OkStatus();
}

Status LocalStore::CommitSnapshot(const ParsedManifest& manifest, const std::string& refs_path) {
  if (mode_ != Mode::kReadWrite) return FailedPreconditionError("store opened read-only");
  std::unique_lock<std::mutex> lock(mu_);
  RETURN_IF_ERROR(WaitForFlushes(lock));
  std::lock_guard<std::mutex> db_lock(db_mu_);
  const std::string hex = HexEncode(manifest.id);
  // Completeness: every referenced chunk must be indexed, with the size the
  // refs claim, and the refs must be the ones the manifest signed.
  {
    ASSIGN_OR_RETURN(std::unique_ptr<RefSetReader> refs, RefSetReader::Open(env_, refs_path));
    RefEntry e;
    uint64_t missing = 0, count = 0, sealed = 0;
    std::string first_missing;
    while (refs->Next(e)) {
      ++count;
      sealed += e.sealed_size;
      // Reclaimed chunks count: the snapshot's consumers (the hubs) have them.
      ASSIGN_OR_RETURN(std::optional<uint32_t> size, KnownSize(e.id));
      if (!size || *size != e.sealed_size) {
        if (missing++ == 0) first_missing = HexEncode(e.id);
      }
    }
    RETURN_IF_ERROR(refs->status());
    const pb::RefSetSummary& summary = manifest.body.refs();
    if (AsStringView(refs->digest()) != summary.digest() || count != summary.count() ||
        sealed != summary.sealed_bytes()) {
      return DataLossError("snapshot " + hex + ": reference set does not match its manifest");
    }
    if (missing > 0) {
      Status why =
          FailedPreconditionError("snapshot " + hex + " references " + std::to_string(missing) +
                                  " chunks the store does not have (first: " + first_missing + ")");
      // Most likely lost with a pack that could not be written: say so, with
      // that error's code (a full disk is RESOURCE_EXHAUSTED).
      if (failures_ > 0) return last_failure_.WithContext(why.message() + "; a pack write failed");
      return why;
    }
  }
  const std::string final_refs = RefsPath(manifest.id);
  if (refs_path != final_refs) {
    FERRY_CRASH_SITE("store.commit.before_refs_rename");
    RETURN_IF_ERROR(env_.RenameFile(refs_path, final_refs));
    // The refs must be durable in snapshots/ before the manifest that needs them.
    RETURN_IF_ERROR(env_.SyncDir(dir_ + "/snapshots"));
  }
  FERRY_CRASH_SITE("store.commit.before_manifest");
  RETURN_IF_ERROR(
      WriteFileAtomic(env_, dir_ + "/snapshots/" + hex + ".manifest", manifest.envelope));
  FERRY_CRASH_SITE("store.commit.before_row");
  RETURN_IF_ERROR(OpenTxn());
  {
    ASSIGN_OR_RETURN(auto st,
                     db_->Cached("INSERT OR IGNORE INTO snapshots(id, created_ns, manifest) "
                                 "VALUES (?, ?, ?)"));
    Status s = st->BindBlob(1, manifest.id)
                   .Bind(2, manifest.body.created_unix_ns())
                   .BindBlob(3, manifest.envelope)
                   .Run();
    if (!s.ok()) {
      txn_open_ = false;
      db_->Exec("ROLLBACK").IgnoreError();
      return s;
    }
  }
  RETURN_IF_ERROR(CommitTxn());
  FERRY_CRASH_SITE("store.commit.after_row");
  return OkStatus();
}

Result<std::vector<SnapshotSummary>> LocalStore::ListSnapshots() {
  std::lock_guard<std::mutex> lock(db_mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st,
                   db_->Prepare("SELECT id, created_ns, manifest FROM snapshots "
                                "ORDER BY created_ns, id"));
  std::vector<SnapshotSummary> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    Bytes id_bytes = st.ColumnBlob(0);
    ASSIGN_OR_RETURN(SnapshotId id, ArrayFromBytes<32>(id_bytes, "snapshot id"));
    ASSIGN_OR_RETURN(ParsedManifest m, ParseManifest(st.ColumnBlob(2), HexEncode(id)));
    if (m.id != id)
      return DataLossError("snapshot " + HexEncode(id) + ": manifest does not hash to its id");
    out.push_back(SnapshotSummary{id, st.ColumnInt(1), std::move(m.body)});
  }
  return out;
}

Result<bool> LocalStore::IsCommitted(const SnapshotId& id) {
  std::lock_guard<std::mutex> lock(db_mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare("SELECT 1 FROM snapshots WHERE id = ?"));
  st.BindBlob(1, id);
  return st.Step();
}

Result<ParsedManifest> LocalStore::LoadManifest(const SnapshotId& id) {
  const std::string hex = HexEncode(id);
  ASSIGN_OR_RETURN(Bytes bytes, env_.ReadFile(dir_ + "/snapshots/" + hex + ".manifest",
                                              kMaxManifestBodySize + 4096));
  ASSIGN_OR_RETURN(ParsedManifest m, ParseManifest(std::move(bytes), hex));
  if (m.id != id) return DataLossError("manifest " + hex + " does not hash to its id");
  return m;
}

Result<SnapshotId> LocalStore::ResolveSnapshot(std::string_view spec) {
  ASSIGN_OR_RETURN(std::vector<SnapshotSummary> all, ListSnapshots());
  if (spec == "latest") {
    if (all.empty()) return NotFoundError("store " + dir_ + " has no snapshots");
    return all.back().id;
  }
  if (spec.size() < 4) {
    return InvalidArgumentError("snapshot id prefix '" + std::string(spec) +
                                "' is too short (at least 4 hex characters)");
  }
  std::string lower(spec);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::optional<SnapshotId> found;
  for (const auto& s : all) {
    if (HexEncode(s.id).rfind(lower, 0) == 0) {
      if (found) {
        return InvalidArgumentError("snapshot id prefix '" + std::string(spec) +
                                    "' is ambiguous; give more characters");
      }
      found = s.id;
    }
  }
  if (!found) return NotFoundError("no snapshot matches '" + std::string(spec) + "' in " + dir_);
  return *found;
}

Result<std::string> LocalStore::PackOf(const ChunkId& id) {
  std::lock_guard<std::mutex> lock(db_mu_);
  ASSIGN_OR_RETURN(auto st, db_->Cached("SELECT p.name FROM chunks c JOIN packs p "
                                        "ON p.pack_id = c.pack_id WHERE c.id = ?"));
  st->BindBlob(1, id);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) {
    st->Reset();
    return ChunkNotFound(id);
  }
  return st->ColumnText(0);
}

Status LocalStore::VerifyPack(const std::string& name, bool entries) {
  Result<PackContents> read = ReadPackIndex(env_, PackPath(name), entries);
  if (!read.ok() && read.status().code() == StatusCode::kNotFound) {
    return DataLossError("pack " + name + " is listed in the index but missing from " + dir_);
  }
  ASSIGN_OR_RETURN(PackContents c, std::move(read));
  if (HexEncode(c.checksum) != name) {
    return DataLossError("pack " + name + ": checksum does not match its name");
  }
  return OkStatus();
}

Result<StoreStats> LocalStore::Stats() {
  std::lock_guard<std::mutex> lock(db_mu_);
  StoreStats s;
  ASSIGN_OR_RETURN(sqlite::Statement st,
                   db_->Prepare("SELECT (SELECT count(*) FROM packs), "
                                "(SELECT coalesce(sum(size),0) FROM packs), "
                                "(SELECT count(*) FROM chunks), (SELECT count(*) FROM snapshots)"));
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (row) {
    s.packs = static_cast<uint64_t>(st.ColumnInt(0));
    s.pack_bytes = static_cast<uint64_t>(st.ColumnInt(1));
    s.chunks = static_cast<uint64_t>(st.ColumnInt(2));
    s.snapshots = static_cast<uint64_t>(st.ColumnInt(3));
  }
  if (has_reclaim_tables_) {
    ASSIGN_OR_RETURN(sqlite::Statement r,
                     db_->Prepare("SELECT (SELECT count(*) FROM reclaimed_packs), "
                                  "(SELECT coalesce(sum(size),0) FROM reclaimed_packs), "
                                  "(SELECT count(*) FROM reclaimed_chunks)"));
    ASSIGN_OR_RETURN(bool rrow, r.Step());
    if (rrow) {
      s.reclaimed_packs = static_cast<uint64_t>(r.ColumnInt(0));
      s.reclaimed_bytes = static_cast<uint64_t>(r.ColumnInt(1));
      s.reclaimed_chunks = static_cast<uint64_t>(r.ColumnInt(2));
    }
  }
  return s;
}

Result<uint64_t> LocalStore::VerifyPacks() {
  std::vector<std::pair<int64_t, std::string>> packs;
  {
    std::lock_guard<std::mutex> lock(db_mu_);
    ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare("SELECT pack_id, name FROM packs"));
    while (true) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      packs.emplace_back(st.ColumnInt(0), st.ColumnText(1));
    }
  }
  for (const auto& [pack_id, name] : packs) RETURN_IF_ERROR(VerifyPack(name, true));
  return static_cast<uint64_t>(packs.size());
}

Result<ReclaimReport> LocalStore::ReclaimPacks(const std::function<bool(const ChunkId&)>& needed) {
  if (mode_ != Mode::kReadWrite) return FailedPreconditionError("store opened read-only");
  // Holding mu_ with the flusher idle: no pack is being renamed into packs/
  // or indexed while packs are chosen and deleted (a pack written again with
  // identical content could otherwise be deleted under its new index row).
  std::unique_lock<std::mutex> lock(mu_);
  flush_cv_.wait(lock, [this] { return flush_queue_.empty() && !flushing_; });
  std::lock_guard<std::mutex> db_lock(db_mu_);
  RETURN_IF_ERROR(OpenTxn());

  struct Victim {
    int64_t pack_id;
    std::string name;
    uint64_t size;
  };
  std::vector<Victim> victims;
  ReclaimReport report;
  auto choose_and_mark = [&]() -> Status {
    // One pass over the chunks: the packs that hold a needed chunk stay.
    std::unordered_map<int64_t, bool> keep;  // pack_id -> has a needed chunk
    std::unordered_map<int64_t, uint64_t> chunk_count;
    {
      ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare("SELECT id, pack_id FROM chunks"));
      ChunkId id;
      while (true) {
        ASSIGN_OR_RETURN(bool row, st.Step());
        if (!row) break;
        const int64_t pack_id = st.ColumnInt(1);
        ++chunk_count[pack_id];
        bool& kept = keep[pack_id];
        if (kept) continue;
        const ByteView blob = st.ColumnBlobView(0);
        if (blob.size() != id.size()) {
          return DataLossError("store " + dir_ + ": the index holds a chunk id of " +
                               std::to_string(blob.size()) + " bytes");
        }
        std::copy(blob.begin(), blob.end(), id.begin());
        kept = needed(id);
      }
    }
    {
      ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare("SELECT pack_id, name, size FROM packs"));
      while (true) {
        ASSIGN_OR_RETURN(bool row, st.Step());
        if (!row) break;
        const int64_t pack_id = st.ColumnInt(0);
        if (auto it = keep.find(pack_id); it != keep.end() && it->second) continue;
        victims.push_back(
            Victim{pack_id, st.ColumnText(1), static_cast<uint64_t>(st.ColumnInt(2))});
        if (auto it = chunk_count.find(pack_id); it != chunk_count.end()) {
          report.chunks_forgotten += it->second;
        }
      }
    }
    if (victims.empty()) return OkStatus();
    // Mark them in this transaction: packs and chunks move to the reclaimed
    // tables (set-based, one scan of `chunks` whatever the number of packs).
    RETURN_IF_ERROR(
        db_->Exec("CREATE TEMP TABLE IF NOT EXISTS reclaim_batch(pack_id INTEGER PRIMARY KEY);"
                  "DELETE FROM temp.reclaim_batch;"));
    {
      ASSIGN_OR_RETURN(sqlite::Statement st,
                       db_->Prepare("INSERT INTO temp.reclaim_batch(pack_id) VALUES (?)"));
      for (const Victim& v : victims) {
        RETURN_IF_ERROR(st.Bind(1, v.pack_id).Run());
        st.Reset();
      }
    }
    RETURN_IF_ERROR(db_->Exec(
        "INSERT OR REPLACE INTO reclaimed_chunks(id, length) SELECT id, length FROM chunks "
        "  WHERE pack_id IN (SELECT pack_id FROM temp.reclaim_batch);"
        "DELETE FROM chunks WHERE pack_id IN (SELECT pack_id FROM temp.reclaim_batch);"
        "INSERT OR REPLACE INTO reclaimed_packs(name, size, entries) "
        "  SELECT name, size, entries FROM packs "
        "  WHERE pack_id IN (SELECT pack_id FROM temp.reclaim_batch);"
        "DELETE FROM packs WHERE pack_id IN (SELECT pack_id FROM temp.reclaim_batch);"
        "DELETE FROM temp.reclaim_batch;"));
    return OkStatus();
  };
  if (Status s = choose_and_mark(); !s.ok()) {
    txn_open_ = false;
    db_->Exec("ROLLBACK").IgnoreError();
    return s;
  }
  // Durable (synchronous=FULL) before any file goes: a crash from here on
  // leaves files that the next writable open deletes.
  if (!victims.empty()) FERRY_CRASH_SITE("store.reclaim.before_mark");
  RETURN_IF_ERROR(CommitTxn());
  for (const Victim& v : victims) {
    // pack_id values may be reused by later packs: drop the cached handle.
    open_packs_.erase(v.pack_id);
    FERRY_CRASH_SITE("store.reclaim.before_unlink");
    Status removed = env_.RemoveFile(PackPath(v.name));
    FERRY_CRASH_SITE("store.reclaim.after_unlink");
    if (removed.ok()) {
      report.bytes_freed += v.size;
    } else if (removed.code() != StatusCode::kNotFound) {
      log::Warn("store {}: cannot delete reclaimed pack {} ({}); the next writable open retries",
                dir_, v.name, removed.ToString());
    }
    ++report.packs_removed;
  }
  if (!victims.empty()) {
    log::Info("store {}: reclaimed {} packs ({} bytes, {} chunks)", dir_, report.packs_removed,
              report.bytes_freed, report.chunks_forgotten);
  }
  return report;
}

}  // namespace ferry::snapshot
