// A small RAII wrapper over SQLite: a connection, prepared statements,
// transactions. Connections open in WAL mode with synchronous=FULL (a commit
// is on disk when Commit() returns) and a busy timeout, so one writer and many
// readers in other processes coexist.
//
// Errors: kUnavailable for SQLITE_BUSY/LOCKED after the busy timeout (retry),
// kDataLoss for SQLITE_CORRUPT/NOTADB, kResourceExhausted for SQLITE_FULL,
// kInternal for misuse; every message names the database file and the SQL.
// Thread-safety: a Database and its Statements are thread-compatible: use one
// connection per thread (SQLite is built serialized, but statements are not).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/bytes.h"
#include "core/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace ferry::sqlite {

struct OpenOptions {
  bool read_only = false;
  bool create = true;
  int busy_timeout_ms = 10'000;
  // Page cache in KiB (SQLite's cache_size, negative = KiB). Bounds memory.
  int cache_kib = 2048;
  // FULL: every commit is durable. NORMAL would lose the last commits on power loss.
  bool synchronous_full = true;
  bool wal = true;
};

class Database;
class CachedStatement;

class Statement {
 public:
  Statement(Statement&&) noexcept;
  Statement& operator=(Statement&&) noexcept;
  ~Statement();

  // Parameters are 1-based, as in SQLite.
  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, std::string_view text);
  Statement& BindBlob(int index, ByteView blob);
  Statement& BindNull(int index);

  // Advances: true when a row is available, false when done. Errors are
  // sticky and returned by status().
  Result<bool> Step();
  // Runs a statement that returns no rows (or ignores them).
  Status Run();
  // Resets for re-execution and clears bindings.
  void Reset();

  int64_t ColumnInt(int col) const;
  std::string ColumnText(int col) const;
  Bytes ColumnBlob(int col) const;
  ByteView ColumnBlobView(int col) const;  // valid until the next Step/Reset
  bool ColumnIsNull(int col) const;

 private:
  friend class Database;
  Statement(Database* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Database* db_;
  sqlite3_stmt* stmt_;
  Status bind_error_;
};

class Database {
 public:
  static Result<std::unique_ptr<Database>> Open(const std::string& path,
                                                const OpenOptions& options = {});
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Executes one or more statements without results (schema, pragmas).
  Status Exec(std::string_view sql);
  // Compiles the first statement in `sql`; kInvalidArgument if there is none
  // (empty or comment-only SQL).
  Result<Statement> Prepare(std::string_view sql);

  // A statement compiled once per connection and reused: the returned lease
  // resets it (and clears its bindings) when it goes out of scope, so no read
  // transaction is left open. `sql` must be a string literal or otherwise
  // outlive the database (it keys the cache). One lease per statement at a
  // time.
  Result<CachedStatement> Cached(const char* sql);

  // user_version pragma: the schema version for migrations.
  Result<int64_t> UserVersion();
  Status SetUserVersion(int64_t v);

  // PRAGMA integrity_check == "ok".
  Status IntegrityCheck();

  int64_t LastInsertRowId() const;
  int Changes() const;
  const std::string& path() const { return path_; }

  // Maps the last SQLite error to a Status with context.
  Status ErrorStatus(int rc, std::string_view what) const;

 private:
  Database(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  std::string path_;
  sqlite3* db_;
  std::map<const char*, std::unique_ptr<Statement>> cache_;
};

// A borrowed cached statement; resets it on destruction.
class CachedStatement {
 public:
  explicit CachedStatement(Statement* st) : st_(st) {}
  CachedStatement(CachedStatement&& o) noexcept : st_(o.st_) { o.st_ = nullptr; }
  CachedStatement& operator=(CachedStatement&&) = delete;
  ~CachedStatement() {
    if (st_ != nullptr) st_->Reset();
  }
  Statement& operator*() { return *st_; }
  Statement* operator->() { return st_; }

 private:
  Statement* st_;
};

// RAII transaction: BEGIN IMMEDIATE (takes the write lock up front so that a
// busy database fails at Begin, not at the first write); rolls back unless
// Commit() succeeded.
class Transaction {
 public:
  static Result<Transaction> Begin(Database& db);
  Transaction(Transaction&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();
  Status Commit();

 private:
  explicit Transaction(Database* db) : db_(db) {}
  Database* db_;
};

}  // namespace ferry::sqlite
