#include "core/sqlite.h"

#include <sqlite3.h>

#include <climits>

#include "core/crash_site.h"

namespace ferry::sqlite {
namespace {

StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return StatusCode::kUnavailable;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return StatusCode::kDataLoss;
    case SQLITE_FULL:
      return StatusCode::kResourceExhausted;
    case SQLITE_IOERR:
      return StatusCode::kDataLoss;
    case SQLITE_CANTOPEN:
      return StatusCode::kNotFound;
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return StatusCode::kPermissionDenied;
    case SQLITE_CONSTRAINT:
      return StatusCode::kAlreadyExists;
    case SQLITE_TOOBIG:
      return StatusCode::kInvalidArgument;
    default:
      return StatusCode::kInternal;
  }
}

}  // namespace

Result<std::unique_ptr<Database>> Database::Open(const std::string& path,
                                                 const OpenOptions& options) {
  int flags = SQLITE_OPEN_NOMUTEX;
  if (options.read_only) {
    flags |= SQLITE_OPEN_READONLY;
  } else {
    flags |= SQLITE_OPEN_READWRITE;
    if (options.create) flags |= SQLITE_OPEN_CREATE;
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    sqlite3_close_v2(raw);
    return Status(CodeFor(rc), "sqlite open " + path + ": " + msg);
  }
  std::unique_ptr<Database> db(new Database(path, raw));
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  std::string pragmas =
      "PRAGMA foreign_keys=ON; PRAGMA cache_size=-" + std::to_string(options.cache_kib) + ";";
  if (!options.read_only) {
    if (options.wal) pragmas += "PRAGMA journal_mode=WAL;";
    pragmas += options.synchronous_full ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;";
  }
  RETURN_IF_ERROR(db->Exec(pragmas));
  return db;
}

Database::~Database() {
  cache_.clear();  // finalize statements before closing
  sqlite3_close_v2(db_);
}

Status Database::ErrorStatus(int rc, std::string_view what) const {
  std::string msg = "sqlite " + path_ + ": " + std::string(what) + ": " + sqlite3_errmsg(db_);
  return Status(CodeFor(rc), std::move(msg));
}

Status Database::Exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = "sqlite " + path_ + ": " + (err ? err : sqlite3_errstr(rc)) + " in: " + s;
    sqlite3_free(err);
    return Status(CodeFor(rc), std::move(msg));
  }
  return OkStatus();
}

Result<Statement> Database::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return ErrorStatus(rc, "prepare '" + std::string(sql) + "'");
  // Empty or comment-only SQL compiles to no statement (SQLITE_OK, NULL):
  // a Statement over NULL would crash in Step().
  if (stmt == nullptr) {
    return InvalidArgumentError("sqlite " + path_ + ": prepare '" + std::string(sql) +
                                "': no SQL statement");
  }
  return Statement(this, stmt);
}

Result<CachedStatement> Database::Cached(const char* sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    ASSIGN_OR_RETURN(Statement st, Prepare(sql));
    it = cache_.emplace(sql, std::make_unique<Statement>(std::move(st))).first;
  }
  it->second->Reset();
  return CachedStatement(it->second.get());
}

Result<int64_t> Database::UserVersion() {
  ASSIGN_OR_RETURN(Statement st, Prepare("PRAGMA user_version"));
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return InternalError("PRAGMA user_version returned no row");
  return st.ColumnInt(0);
}

Status Database::SetUserVersion(int64_t v) {
  return Exec("PRAGMA user_version=" + std::to_string(v));
}

Status Database::IntegrityCheck() {
  ASSIGN_OR_RETURN(Statement st, Prepare("PRAGMA integrity_check"));
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return InternalError("integrity_check returned no row");
  std::string result = st.ColumnText(0);
  if (result != "ok") return DataLossError("sqlite " + path_ + ": integrity_check: " + result);
  return OkStatus();
}

int64_t Database::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }
int Database::Changes() const { return sqlite3_changes(db_); }

Statement::Statement(Statement&& o) noexcept
    : db_(o.db_), stmt_(o.stmt_), bind_error_(std::move(o.bind_error_)) {
  o.stmt_ = nullptr;
}

Statement& Statement::operator=(Statement&& o) noexcept {
  if (this != &o) {
    sqlite3_finalize(stmt_);
    db_ = o.db_;
    stmt_ = o.stmt_;
    bind_error_ = std::move(o.bind_error_);
    o.stmt_ = nullptr;
  }
  return *this;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::Bind(int index, int64_t value) {
  int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK && bind_error_.ok()) bind_error_ = db_->ErrorStatus(rc, "bind");
  return *this;
}

Statement& Statement::Bind(int index, std::string_view text) {
  int rc =
      sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK && bind_error_.ok()) bind_error_ = db_->ErrorStatus(rc, "bind");
  return *this;
}

Statement& Statement::BindBlob(int index, ByteView blob) {
  // A zero-length blob must not bind as NULL: pass a valid pointer.
  static const uint8_t kEmpty = 0;
  int rc = sqlite3_bind_blob64(stmt_, index, blob.empty() ? &kEmpty : blob.data(), blob.size(),
                               SQLITE_TRANSIENT);
  if (rc != SQLITE_OK && bind_error_.ok()) bind_error_ = db_->ErrorStatus(rc, "bind");
  return *this;
}

Statement& Statement::BindNull(int index) {
  int rc = sqlite3_bind_null(stmt_, index);
  if (rc != SQLITE_OK && bind_error_.ok()) bind_error_ = db_->ErrorStatus(rc, "bind");
  return *this;
}

Result<bool> Statement::Step() {
  if (!bind_error_.ok()) return bind_error_;
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return db_->ErrorStatus(rc, std::string("step '") + sqlite3_sql(stmt_) + "'");
}

Status Statement::Run() {
  while (true) {
    ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return OkStatus();
  }
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_error_ = OkStatus();
}

int64_t Statement::ColumnInt(int col) const { return sqlite3_column_int64(stmt_, col); }

std::string Statement::ColumnText(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  int n = sqlite3_column_bytes(stmt_, col);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

Bytes Statement::ColumnBlob(int col) const {
  ByteView v = ColumnBlobView(col);
  return Bytes(v.begin(), v.end());
}

ByteView Statement::ColumnBlobView(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  int n = sqlite3_column_bytes(stmt_, col);
  if (p == nullptr || n <= 0) return {};
  return ByteView(static_cast<const uint8_t*>(p), static_cast<size_t>(n));
}

bool Statement::ColumnIsNull(int col) const {
  return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

Result<Transaction> Transaction::Begin(Database& db) {
  RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
  return Transaction(&db);
}

Transaction::~Transaction() {
  if (db_ != nullptr) db_->Exec("ROLLBACK").IgnoreError();
}

Status Transaction::Commit() {
  if (db_ == nullptr) return InternalError("transaction already finished");
  FERRY_CRASH_SITE("sqlite.before_commit");
  Status s = db_->Exec("COMMIT");
  if (s.ok()) db_ = nullptr;
  return s;
}

}  // namespace ferry::sqlite
