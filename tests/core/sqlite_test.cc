#include "core/sqlite.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "core/env.h"
#include "tests/testing/test_util.h"

namespace ferry::sqlite {
namespace {

using testing::TempDir;

std::unique_ptr<Database> OpenOrDie(const std::string& path, const OpenOptions& options = {}) {
  Result<std::unique_ptr<Database>> db = Database::Open(path, options);
  EXPECT_TRUE(db.ok()) << db.status().ToString();
  return db.ok() ? std::move(*db) : nullptr;
}

std::string QueryText(Database& db, std::string_view sql) {
  Result<Statement> st = db.Prepare(sql);
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  if (!st.ok()) return "";
  Result<bool> row = st->Step();
  EXPECT_TRUE(row.ok()) << row.status().ToString();
  EXPECT_TRUE(row.ok() && *row) << "no row from " << sql;
  return row.ok() && *row ? st->ColumnText(0) : "";
}

int64_t CountRows(Database& db, std::string_view table) {
  Result<Statement> st = db.Prepare("SELECT count(*) FROM " + std::string(table));
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  if (!st.ok()) return -1;
  Result<bool> row = st->Step();
  EXPECT_TRUE(row.ok() && *row);
  return row.ok() && *row ? st->ColumnInt(0) : -1;
}

TEST(DatabaseTest, OpenCreatesAWalModeDatabase) {
  TempDir dir;
  const std::string path = dir.Sub("catalog.db");
  std::unique_ptr<Database> db = OpenOrDie(path);
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->path(), path);
  EXPECT_EQ(QueryText(*db, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(QueryText(*db, "PRAGMA synchronous"), "2");  // FULL
  EXPECT_EQ(QueryText(*db, "PRAGMA foreign_keys"), "1");
  EXPECT_TRUE(*Env::Default()->FileExists(path));
}

TEST(DatabaseTest, OpenWithoutCreateOnMissingFileIsNotFound) {
  TempDir dir;
  OpenOptions options;
  options.create = false;
  Result<std::unique_ptr<Database>> db = Database::Open(dir.Sub("missing.db"), options);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), StatusCode::kNotFound);
  EXPECT_NE(db.status().message().find("missing.db"), std::string::npos);
}

TEST(DatabaseTest, ReadOnlyConnectionCannotWrite) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  {
    std::unique_ptr<Database> db = OpenOrDie(path);
    ASSERT_TRUE(db->Exec("CREATE TABLE t(x)").ok());
  }
  OpenOptions options;
  options.read_only = true;
  std::unique_ptr<Database> ro = OpenOrDie(path, options);
  ASSERT_NE(ro, nullptr);
  EXPECT_EQ(CountRows(*ro, "t"), 0);
  Status s = ro->Exec("INSERT INTO t VALUES (1)");
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
}

TEST(StatementTest, BindsStepsAndReadsColumns) {
  TempDir dir;
  std::unique_ptr<Database> db = OpenOrDie(dir.Sub("db"));
  ASSERT_TRUE(db->Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, s TEXT, b BLOB)").ok());
  Result<Statement> ins = db->Prepare("INSERT INTO t(n, s, b) VALUES (?1, ?2, ?3)");
  ASSERT_TRUE(ins.ok()) << ins.status().ToString();
  const Bytes blob = {0x00, 0x01, 0xff};
  const std::string text_with_nul("a\0b", 3);
  ins->Bind(1, int64_t{-5'000'000'000}).Bind(2, text_with_nul).BindBlob(3, blob);
  ASSERT_TRUE(ins->Run().ok());
  EXPECT_EQ(db->LastInsertRowId(), 1);
  EXPECT_EQ(db->Changes(), 1);
  ins->Reset();
  ins->Bind(1, int64_t{7}).Bind(2, std::string_view("xyz").substr(0, 2)).BindNull(3);
  ASSERT_TRUE(ins->Run().ok());
  EXPECT_EQ(db->LastInsertRowId(), 2);

  Result<Statement> sel = db->Prepare("SELECT n, s, b FROM t ORDER BY id");
  ASSERT_TRUE(sel.ok());
  Result<bool> row = sel->Step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(sel->ColumnInt(0), -5'000'000'000);
  EXPECT_EQ(sel->ColumnText(1), text_with_nul);
  EXPECT_EQ(sel->ColumnBlob(2), blob);
  EXPECT_FALSE(sel->ColumnIsNull(2));
  row = sel->Step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(sel->ColumnInt(0), 7);
  EXPECT_EQ(sel->ColumnText(1), "xy");  // the view's length, not up to a NUL
  EXPECT_TRUE(sel->ColumnIsNull(2));
  EXPECT_TRUE(sel->ColumnBlob(2).empty());
  row = sel->Step();
  ASSERT_TRUE(row.ok());
  EXPECT_FALSE(*row);
}

TEST(StatementTest, EmptyBlobIsNotNull) {
  TempDir dir;
  std::unique_ptr<Database> db = OpenOrDie(dir.Sub("db"));
  ASSERT_TRUE(db->Exec("CREATE TABLE t(b BLOB)").ok());
  Result<Statement> ins = db->Prepare("INSERT INTO t VALUES (?)");
  ASSERT_TRUE(ins.ok());
  ins->BindBlob(1, ByteView{});
  ASSERT_TRUE(ins->Run().ok());
  ins->Reset();
  ins->BindNull(1);
  ASSERT_TRUE(ins->Run().ok());

  Result<Statement> sel = db->Prepare("SELECT b, typeof(b), length(b) FROM t ORDER BY rowid");
  ASSERT_TRUE(sel.ok());
  ASSERT_TRUE(*sel->Step());
  EXPECT_FALSE(sel->ColumnIsNull(0));
  EXPECT_EQ(sel->ColumnText(1), "blob");
  EXPECT_EQ(sel->ColumnInt(2), 0);
  EXPECT_TRUE(sel->ColumnBlob(0).empty());
  EXPECT_TRUE(sel->ColumnBlobView(0).empty());
  ASSERT_TRUE(*sel->Step());
  EXPECT_TRUE(sel->ColumnIsNull(0));
  EXPECT_EQ(sel->ColumnText(1), "null");
}

TEST(StatementTest, ResetClearsBindings) {
  TempDir dir;
  std::unique_ptr<Database> db = OpenOrDie(dir.Sub("db"));
  Result<Statement> st = db->Prepare("SELECT ?1 IS NULL, ?1");
  ASSERT_TRUE(st.ok());
  st->Bind(1, int64_t{3});
  ASSERT_TRUE(*st->Step());
  EXPECT_EQ(st->ColumnInt(0), 0);
  EXPECT_EQ(st->ColumnInt(1), 3);
  st->Reset();
  ASSERT_TRUE(*st->Step());
  EXPECT_EQ(st->ColumnInt(0), 1);
}

TEST(StatementTest, BindErrorIsReportedByStep) {
  TempDir dir;
  std::unique_ptr<Database> db = OpenOrDie(dir.Sub("db"));
  Result<Statement> st = db->Prepare("SELECT ?1");
  ASSERT_TRUE(st.ok());
  st->Bind(2, int64_t{1});  // out of range
  Result<bool> row = st->Step();
  ASSERT_FALSE(row.ok());
  EXPECT_NE(row.status().message().find("bind"), std::string::npos) << row.status().ToString();
  st->Reset();  // clears the sticky error
  st->Bind(1, int64_t{1});
  row = st->Step();
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  EXPECT_TRUE(*row);
}

TEST(StatementTest, MovedStatementStillWorks) {
  TempDir dir;
  std::unique_ptr<Database> db = OpenOrDie(dir.Sub("db"));
  Result<Statement> a = db->Prepare("SELECT 41 + 1");
  Result<Statement> b = db->Prepare("SELECT 0");
  ASSERT_TRUE(a.ok() && b.ok());
  Statement moved(std::move(*a));
  *b = std::move(moved);
  ASSERT_TRUE(*b->Step());
  EXPECT_EQ(b->ColumnInt(0), 42);
}

TEST(DatabaseTest, PrepareOfBadSqlNamesTheSql) {
  TempDir dir;
  std::unique_ptr<Database> db = OpenOrDie(dir.Sub("db"));
  Result<Statement> st = db->Prepare("SELEKT * FROM nowhere");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("SELEKT * FROM nowhere"), std::string::npos)
      << st.status().ToString();
  EXPECT_NE(st.status().message().find(db->path()), std::string::npos);
  Status s = db->Exec("CREATE TABLE (");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("CREATE TABLE ("), std::string::npos) << s.ToString();
}

// SQLite prepares "" and comment-only SQL into no statement at all; that must
// be an error, not a Statement that crashes when stepped.
TEST(DatabaseTest, PrepareOfEmptySqlIsAnError) {
  TempDir dir;
  std::unique_ptr<Database> db = OpenOrDie(dir.Sub("db"));
  for (std::string_view sql : {"", "   ", "-- just a comment"}) {
    SCOPED_TRACE(sql);
    Result<Statement> st = db->Prepare(sql);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(DatabaseTest, UniqueViolationIsAlreadyExists) {
  TempDir dir;
  std::unique_ptr<Database> db = OpenOrDie(dir.Sub("db"));
  ASSERT_TRUE(db->Exec("CREATE TABLE t(k TEXT PRIMARY KEY); INSERT INTO t VALUES ('a')").ok());
  Status s = db->Exec("INSERT INTO t VALUES ('a')");
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
}

TEST(TransactionTest, RollsBackWhenNotCommitted) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  std::unique_ptr<Database> db = OpenOrDie(path);
  ASSERT_TRUE(db->Exec("CREATE TABLE t(x)").ok());
  {
    Result<Transaction> tx = Transaction::Begin(*db);
    ASSERT_TRUE(tx.ok()) << tx.status().ToString();
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (1), (2)").ok());
    EXPECT_EQ(CountRows(*db, "t"), 2);
  }
  EXPECT_EQ(CountRows(*db, "t"), 0);
  db.reset();
  db = OpenOrDie(path);
  EXPECT_EQ(CountRows(*db, "t"), 0);
}

TEST(TransactionTest, CommittedDataPersistsAcrossReopen) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  std::unique_ptr<Database> db = OpenOrDie(path);
  ASSERT_TRUE(db->Exec("CREATE TABLE t(x)").ok());
  {
    Result<Transaction> tx = Transaction::Begin(*db);
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (1), (2), (3)").ok());
    ASSERT_TRUE(tx->Commit().ok());
    EXPECT_EQ(tx->Commit().code(), StatusCode::kInternal);  // already finished
  }
  EXPECT_EQ(CountRows(*db, "t"), 3);
  db.reset();
  db = OpenOrDie(path);
  EXPECT_EQ(CountRows(*db, "t"), 3);
}

TEST(TransactionTest, MovedTransactionRollsBackOnce) {
  TempDir dir;
  std::unique_ptr<Database> db = OpenOrDie(dir.Sub("db"));
  ASSERT_TRUE(db->Exec("CREATE TABLE t(x)").ok());
  {
    Result<Transaction> tx = Transaction::Begin(*db);
    ASSERT_TRUE(tx.ok());
    Transaction owner(std::move(*tx));
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (1)").ok());
  }
  EXPECT_EQ(CountRows(*db, "t"), 0);
  // The connection is usable for a new transaction afterwards.
  Result<Transaction> again = Transaction::Begin(*db);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ASSERT_TRUE(again->Commit().ok());
}

TEST(DatabaseTest, SecondConnectionSeesCommittedData) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  std::unique_ptr<Database> writer = OpenOrDie(path);
  std::unique_ptr<Database> reader = OpenOrDie(path);
  ASSERT_TRUE(writer->Exec("CREATE TABLE t(x)").ok());
  {
    Result<Transaction> tx = Transaction::Begin(*writer);
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(writer->Exec("INSERT INTO t VALUES (1)").ok());
    // Not yet visible: WAL readers see the last committed state.
    EXPECT_EQ(CountRows(*reader, "t"), 0);
    ASSERT_TRUE(tx->Commit().ok());
  }
  EXPECT_EQ(CountRows(*reader, "t"), 1);
}

TEST(DatabaseTest, BusyDatabaseIsUnavailable) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  std::unique_ptr<Database> first = OpenOrDie(path);
  ASSERT_TRUE(first->Exec("CREATE TABLE t(x)").ok());
  OpenOptions impatient;
  impatient.busy_timeout_ms = 1;
  std::unique_ptr<Database> second = OpenOrDie(path, impatient);
  ASSERT_NE(second, nullptr);

  Result<Transaction> held = Transaction::Begin(*first);
  ASSERT_TRUE(held.ok());
  Result<Transaction> blocked = Transaction::Begin(*second);
  ASSERT_FALSE(blocked.ok());
  EXPECT_EQ(blocked.status().code(), StatusCode::kUnavailable) << blocked.status().ToString();
  Status s = second->Exec("INSERT INTO t VALUES (1)");
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  // Readers are not blocked by the writer in WAL mode.
  EXPECT_EQ(CountRows(*second, "t"), 0);

  ASSERT_TRUE(held->Commit().ok());
  Result<Transaction> now = Transaction::Begin(*second);
  ASSERT_TRUE(now.ok()) << now.status().ToString();
}

TEST(DatabaseTest, CorruptedHeaderIsDataLoss) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  {
    std::unique_ptr<Database> db = OpenOrDie(path);
    ASSERT_TRUE(db->Exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)").ok());
  }
  // The last connection checkpointed and removed the WAL: the main file holds
  // everything. Overwrite its 100-byte header with garbage.
  Bytes file = testing::ReadFileOrDie(path);
  ASSERT_GE(file.size(), 100u);
  Bytes garbage = testing::SeededBytes(99, 100);
  std::copy(garbage.begin(), garbage.end(), file.begin());
  testing::WriteFileOrDie(path, file);

  Result<std::unique_ptr<Database>> db = Database::Open(path);
  Status s = db.status();
  if (db.ok()) {
    Result<Statement> st = (*db)->Prepare("SELECT count(*) FROM t");
    s = st.ok() ? st->Step().status() : st.status();
  }
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
}

TEST(DatabaseTest, IntegrityCheckPassesOnAGoodDatabase) {
  TempDir dir;
  std::unique_ptr<Database> db = OpenOrDie(dir.Sub("db"));
  ASSERT_TRUE(db->Exec("CREATE TABLE t(k TEXT PRIMARY KEY, v BLOB); "
                       "INSERT INTO t VALUES ('a', x'00'), ('b', x'01')")
                  .ok());
  Status s = db->IntegrityCheck();
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST(DatabaseTest, UserVersionRoundTrips) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  std::unique_ptr<Database> db = OpenOrDie(path);
  Result<int64_t> v = db->UserVersion();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 0);
  ASSERT_TRUE(db->SetUserVersion(7).ok());
  EXPECT_EQ(*db->UserVersion(), 7);
  db.reset();
  db = OpenOrDie(path);
  EXPECT_EQ(*db->UserVersion(), 7);
}

}  // namespace
}  // namespace ferry::sqlite
