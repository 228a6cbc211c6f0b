#include "snapshot/stream_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/bytes.h"
#include "core/clock.h"
#include "core/env.h"
#include "snapshot/stream_log_format.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

namespace sf = stream_format;
using ::ferry::testing::MakeDirsOrDie;
using ::ferry::testing::ReadFileOrDie;
using ::ferry::testing::TempDir;
using ::ferry::testing::WriteFileOrDie;
using ::testing::HasSubstr;

using ::ferry::testing::HasCode;

// Deterministic payload of the record at `offset`.
Bytes Payload(uint64_t offset, size_t size) {
  Bytes b(size);
  uint64_t x = offset * 0x9E3779B97F4A7C15ull + 1;
  for (uint8_t& c : b) {
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    c = static_cast<uint8_t>(x >> 56);
  }
  return b;
}

std::vector<Bytes> Batch(uint64_t first, size_t n, size_t size) {
  std::vector<Bytes> out;
  for (size_t i = 0; i < n; ++i) out.push_back(Payload(first + i, size));
  return out;
}

Result<AppendResult> TryAppend(StreamLog& log, const std::vector<Bytes>& records) {
  const std::vector<ByteView> views(records.begin(), records.end());
  return log.Append(views);
}

AppendResult Append(StreamLog& log, const std::vector<Bytes>& records) {
  Result<AppendResult> r = TryAppend(log, records);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : AppendResult{};
}

// Every record from the log's start on.
std::vector<StreamRecord> ReadAll(const StreamLog& log, size_t batch = 1000) {
  std::vector<StreamRecord> out;
  uint64_t next = log.start_offset();
  for (;;) {
    Result<std::vector<StreamRecord>> r = log.Read(next, batch, size_t{64} << 20);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok() || r->empty()) break;
    next = r->back().offset + 1;
    for (StreamRecord& rec : *r) out.push_back(std::move(rec));
  }
  return out;
}

// Checks that `records` are offsets first.. in order, each with `model`'s bytes.
void ExpectRecords(const std::vector<StreamRecord>& records, uint64_t first,
                   const std::vector<Bytes>& model) {
  ASSERT_EQ(records.size(), model.size() - first);
  for (size_t i = 0; i < records.size(); ++i) {
    ASSERT_EQ(records[i].offset, first + i);
    ASSERT_TRUE(records[i].data == model[first + i]) << "record " << first + i;
  }
}

std::vector<std::string> SegmentFiles(const std::string& dir) {
  Result<std::vector<std::string>> names = Env::Default()->ListDir(dir);
  std::vector<std::string> out;
  if (!names.ok()) return out;
  for (const std::string& n : *names) {
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".seg") == 0) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void FlipByte(const std::string& path, size_t pos, uint8_t mask = 0x01) {
  Bytes b = ReadFileOrDie(path);
  ASSERT_LT(pos, b.size());
  b[pos] ^= mask;
  WriteFileOrDie(path, b);
}

// The test's own encoders, written from docs/format/stream-segment.md.
Bytes SpecHeader(uint64_t first, int64_t created) {
  Bytes h = ToBytes("FSEG");
  PutU8(h, 1);
  PutBytes(h, Bytes(3, 0));
  PutU64(h, first);
  PutU64(h, static_cast<uint64_t>(created));
  PutU32(h, 0);
  PutU32(h, sf::Crc32c(h));
  return h;
}

void SpecRecord(Bytes& out, uint64_t offset, ByteView payload) {
  Bytes covered;
  PutU64(covered, offset);
  PutU32(covered, static_cast<uint32_t>(payload.size()));
  PutBytes(covered, payload);
  PutU32(out, static_cast<uint32_t>(payload.size()));
  PutU32(out, sf::Crc32c(covered));
  PutBytes(out, payload);
}

Bytes SpecStartFile(uint64_t start) {
  Bytes b = ToBytes("FSTA");
  PutU8(b, 1);
  PutBytes(b, Bytes(3, 0));
  PutU64(b, start);
  PutU32(b, 0);
  PutU32(b, sf::Crc32c(b));
  return b;
}

// The POSIX Env with faults: failing writes or fsyncs, and a simulated
// machine crash that loses every byte written through it but not fsync'd.
class TestEnv final : public Env {
 public:
  enum class Crash { kTruncate, kZeroFill };

  std::atomic<bool> fail_syncs{false};
  std::atomic<bool> fail_appends{false};
  // Appends write the first half of their data, then fail (a torn write).
  std::atomic<bool> tear_appends{false};
  std::atomic<bool> fail_sync_dirs{false};
  std::atomic<int> syncs{0};
  // Syncs of a file whose earlier Sync failed: must stay 0 (a failed fsync
  // is never retried and then taken for success).
  std::atomic<int> syncs_after_failure{0};

  // Every file written through this Env loses its unsynced bytes (cut off,
  // or overwritten with zeros as a file whose size reached the disk before
  // its data would); writes and fsyncs fail from now on.
  void SimulateCrash(Crash how) {
    crashed_ = true;
    std::lock_guard<std::mutex> l(mu_);
    for (const std::shared_ptr<Tracked>& t : files_) {
      Result<bool> exists = base_.FileExists(t->path);
      if (!exists.ok() || !*exists) continue;
      if (how == Crash::kTruncate) {
        ASSERT_EQ(::truncate(t->path.c_str(), static_cast<off_t>(t->synced)), 0) << t->path;
      } else {
        Bytes b = ReadFileOrDie(t->path);
        std::fill(b.begin() + static_cast<std::ptrdiff_t>(std::min<uint64_t>(t->synced, b.size())),
                  b.end(), 0);
        WriteFileOrDie(t->path, b);
      }
    }
  }

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path,
                                                        mode_t mode) override {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, base_.NewWritableFile(path, mode));
    auto t = std::make_shared<Tracked>();
    t->path = path;
    std::lock_guard<std::mutex> l(mu_);
    files_.push_back(t);
    return std::unique_ptr<WritableFile>(new File(*this, std::move(f), std::move(t)));
  }
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    return base_.NewRandomAccessFile(path);
  }
  Result<Bytes> ReadFile(const std::string& path, uint64_t max_size) override {
    return base_.ReadFile(path, max_size);
  }
  Status RenameFile(const std::string& from, const std::string& to) override {
    if (crashed_) return UnavailableError("crashed");
    RETURN_IF_ERROR(base_.RenameFile(from, to));
    std::lock_guard<std::mutex> l(mu_);
    // The file that was at `to` is gone, whatever was unsynced in it.
    std::erase_if(files_, [&](const std::shared_ptr<Tracked>& t) { return t->path == to; });
    for (const std::shared_ptr<Tracked>& t : files_) {
      if (t->path == from) t->path = to;
    }
    return OkStatus();
  }
  Status SyncDir(const std::string& dir) override {
    if (crashed_) return UnavailableError("crashed");
    if (fail_sync_dirs)
      return DataLossError("injected: fsync of directory " + dir + " failed (EIO)");
    return base_.SyncDir(dir);
  }
  Status CreateDirs(const std::string& path, mode_t mode) override {
    return base_.CreateDirs(path, mode);
  }
  Status RemoveFile(const std::string& path) override { return base_.RemoveFile(path); }
  Result<bool> FileExists(const std::string& path) override { return base_.FileExists(path); }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    return base_.ListDir(path);
  }
  Result<uint64_t> FileSize(const std::string& path) override { return base_.FileSize(path); }

 private:
  struct Tracked {
    std::string path;
    uint64_t size = 0;
    uint64_t synced = 0;
  };

  class File final : public WritableFile {
   public:
    File(TestEnv& env, std::unique_ptr<WritableFile> base, std::shared_ptr<Tracked> t)
        : env_(env), base_(std::move(base)), t_(std::move(t)) {}
    Status Append(ByteView data) override {
      if (env_.crashed_) return UnavailableError("crashed");
      if (env_.fail_appends) return ResourceExhaustedError("injected: no space left on device");
      if (env_.tear_appends) {
        const ByteView half = data.first(data.size() / 2);
        RETURN_IF_ERROR(base_->Append(half));
        t_->size += half.size();
        return DataLossError("injected: write failed after " + std::to_string(half.size()) +
                             " bytes (EIO)");
      }
      RETURN_IF_ERROR(base_->Append(data));
      t_->size += data.size();
      return OkStatus();
    }
    Status Sync() override {
      if (env_.crashed_) return UnavailableError("crashed");
      if (sync_failed_) ++env_.syncs_after_failure;
      if (env_.fail_syncs) {
        sync_failed_ = true;
        return DataLossError("injected: fdatasync " + path() + " failed (EIO)");
      }
      RETURN_IF_ERROR(base_->Sync());
      ++env_.syncs;
      t_->synced = t_->size;
      return OkStatus();
    }
    Status Close() override { return base_->Close(); }
    uint64_t Size() const override { return base_->Size(); }
    const std::string& path() const override { return base_->path(); }

   private:
    TestEnv& env_;
    std::unique_ptr<WritableFile> base_;
    std::shared_ptr<Tracked> t_;
    bool sync_failed_ = false;
  };

  Env& base_ = *Env::Default();
  std::atomic<bool> crashed_{false};
  std::mutex mu_;
  std::vector<std::shared_ptr<Tracked>> files_;
};

class StreamLogTest : public ::testing::Test {
 protected:
  std::unique_ptr<StreamLog> Open(const StreamLogOptions& options = {}) {
    return OpenAt(dir_, options);
  }
  static std::unique_ptr<StreamLog> OpenAt(const std::string& dir,
                                           const StreamLogOptions& options = {}) {
    Result<std::unique_ptr<StreamLog>> log = StreamLog::Open(dir, options);
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return log.ok() ? std::move(*log) : nullptr;
  }
  Status OpenError(const StreamLogOptions& options = {}) {
    Result<std::unique_ptr<StreamLog>> log = StreamLog::Open(dir_, options);
    EXPECT_FALSE(log.ok()) << "Open succeeded";
    return log.ok() ? OkStatus() : log.status();
  }
  std::string SegPath(const std::string& name) const { return dir_ + "/" + name; }

  // Small segments: a few 100-byte records each.
  static StreamLogOptions Small() {
    StreamLogOptions o;
    o.segment_bytes = 600;
    o.index_interval_bytes = 200;
    return o;
  }

  TempDir tmp_;
  const std::string dir_ = tmp_.Sub("stream");
};

// ---------------------------------------------------------------------------
// Appending and reading

TEST(StreamCrc32c, MatchesTheStandardCheckValues) {
  EXPECT_EQ(sf::Crc32c(AsBytes("123456789")), 0xE3069283u);
  // RFC 3720, B.4.
  EXPECT_EQ(sf::Crc32c(Bytes(32, 0x00)), 0x8A9136AAu);
  EXPECT_EQ(sf::Crc32c(Bytes(32, 0xFF)), 0x62A8AB43u);
  Bytes inc(32);
  for (size_t i = 0; i < inc.size(); ++i) inc[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(sf::Crc32c(inc), 0x46DD794Eu);
  EXPECT_EQ(sf::Crc32cExtend(sf::Crc32c(AsBytes("1234")), AsBytes("56789")), 0xE3069283u);
  EXPECT_EQ(sf::Crc32c({}), 0u);
  // A zero-filled frame never checks out: the CRC covers the offset and length.
  EXPECT_NE(sf::RecordCrc(0, {}), 0u);
}

TEST_F(StreamLogTest, MissingDirectoryIsANewEmptyLog) {
  std::unique_ptr<StreamLog> log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->start_offset(), 0u);
  EXPECT_EQ(log->end_offset(), 0u);
  EXPECT_EQ(SegmentFiles(dir_), std::vector<std::string>{"00000000000000000000.seg"});
  Result<std::vector<StreamRecord>> r = log->Read(0, 10, 1000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->empty());
  EXPECT_FALSE(log->recovery().tail_truncated);
}

TEST_F(StreamLogTest, OffsetsAreDenseAcrossBatches) {
  std::unique_ptr<StreamLog> log = Open();
  ASSERT_NE(log, nullptr);
  std::vector<Bytes> model;
  for (size_t batch : {1, 3, 7, 1, 50}) {
    const std::vector<Bytes> records = Batch(model.size(), batch, 10 + batch);
    const AppendResult r = Append(*log, records);
    EXPECT_EQ(r.first, model.size());
    EXPECT_EQ(r.last, model.size() + batch - 1);
    model.insert(model.end(), records.begin(), records.end());
    EXPECT_EQ(log->end_offset(), model.size());
    EXPECT_EQ(log->durable_end_offset(), model.size()) << "every batch is fsync'd";
  }
  ExpectRecords(ReadAll(*log), 0, model);
}

TEST_F(StreamLogTest, EmptyRecordsAreRecords) {
  std::unique_ptr<StreamLog> log = Open();
  ASSERT_NE(log, nullptr);
  const std::vector<Bytes> model = {Bytes(), ToBytes("x"), Bytes()};
  EXPECT_EQ(Append(*log, model).last, 2u);
  ExpectRecords(ReadAll(*log), 0, model);
  log.reset();
  log = Open();
  ASSERT_NE(log, nullptr);
  ExpectRecords(ReadAll(*log), 0, model);
}

TEST_F(StreamLogTest, SegmentsRollBySizeAndReadsSpanThem) {
  std::unique_ptr<StreamLog> log = Open(Small());
  ASSERT_NE(log, nullptr);
  std::vector<Bytes> model;
  for (int i = 0; i < 10; ++i) {
    const std::vector<Bytes> records = Batch(model.size(), 4, 100);  // a batch may span segments
    Append(*log, records);
    model.insert(model.end(), records.begin(), records.end());
  }
  const std::vector<StreamSegmentInfo> segs = log->Segments();
  ASSERT_GT(segs.size(), 5u);
  uint64_t expected_first = 0;
  for (const StreamSegmentInfo& s : segs) {
    SCOPED_TRACE(s.file);
    EXPECT_EQ(s.first_offset, expected_first);
    EXPECT_EQ(s.file, sf::SegmentFileName(s.first_offset));
    EXPECT_LE(s.bytes, 600u);  // 32 + 5 x 108 = 572: five records fit, a sixth does not
    EXPECT_EQ(s.end_offset - s.first_offset, 5u);
    expected_first = s.end_offset;
  }
  EXPECT_EQ(expected_first, model.size());
  // Reads from every offset, crossing segment boundaries.
  for (uint64_t from = 0; from < model.size(); ++from) {
    Result<std::vector<StreamRecord>> r = log->Read(from, 12, 1 << 20);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->size(), std::min<size_t>(12, model.size() - from));
    for (size_t i = 0; i < r->size(); ++i) {
      ASSERT_EQ((*r)[i].offset, from + i);
      ASSERT_TRUE((*r)[i].data == model[from + i]);
    }
  }
}

TEST_F(StreamLogTest, RecordLargerThanASegmentGetsASegmentOfItsOwn) {
  StreamLogOptions o = Small();
  o.max_record_bytes = 5000;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  std::vector<Bytes> model = {Payload(0, 10), Payload(1, 4000), Payload(2, 10)};
  Append(*log, model);
  const std::vector<StreamSegmentInfo> segs = log->Segments();
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_EQ(segs[1].bytes, 32u + 8 + 4000);
  log.reset();
  log = Open(o);
  ASSERT_NE(log, nullptr);
  ExpectRecords(ReadAll(*log), 0, model);
}

TEST_F(StreamLogTest, ReadsFromAnyOffsetThroughTheSparseIndex) {
  StreamLogOptions o;
  o.index_interval_bytes = 64;
  o.segment_bytes = 4096;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  std::vector<Bytes> model;
  for (uint64_t i = 0; i < 300; ++i) model.push_back(Payload(i, (i * 37) % 150));
  for (size_t i = 0; i < model.size(); i += 25) {
    Append(*log, std::vector<Bytes>(model.begin() + static_cast<std::ptrdiff_t>(i),
                                    model.begin() + static_cast<std::ptrdiff_t>(i + 25)));
  }
  auto check = [&](const StreamLog& l) {
    for (uint64_t from = 0; from < model.size(); ++from) {
      Result<std::vector<StreamRecord>> r = l.Read(from, 2, 1 << 20);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      ASSERT_FALSE(r->empty());
      ASSERT_EQ((*r)[0].offset, from);
      ASSERT_TRUE((*r)[0].data == model[from]) << from;
    }
  };
  check(*log);
  log.reset();
  log = Open(o);  // the index rebuilt by Open
  ASSERT_NE(log, nullptr);
  check(*log);
}

TEST_F(StreamLogTest, ReadStopsAtRecordAndByteLimitsButAlwaysReturnsOneRecord) {
  std::unique_ptr<StreamLog> log = Open();
  ASSERT_NE(log, nullptr);
  Append(*log, Batch(0, 10, 100));
  struct Case {
    uint64_t from;
    size_t max_records, max_bytes, want;
  };
  for (const Case& c :
       {Case{0, 3, 1 << 20, 3}, Case{0, 100, 250, 2}, Case{0, 100, 300, 3}, Case{0, 10, 0, 1},
        Case{4, 100, 99, 1}, Case{8, 100, 1 << 20, 2}, Case{0, 0, 1 << 20, 0}}) {
    SCOPED_TRACE(::testing::Message() << "from " << c.from << " max_records " << c.max_records
                                      << " max_bytes " << c.max_bytes);
    Result<std::vector<StreamRecord>> r = log->Read(c.from, c.max_records, c.max_bytes);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->size(), c.want);
  }
}

TEST_F(StreamLogTest, ReadAtOrBeyondTheEndIsEmpty) {
  std::unique_ptr<StreamLog> log = Open();
  ASSERT_NE(log, nullptr);
  Append(*log, Batch(0, 3, 10));
  for (uint64_t from : {uint64_t{3}, uint64_t{4}, uint64_t{1000}, UINT64_MAX}) {
    Result<std::vector<StreamRecord>> r = log->Read(from, 10, 1000);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r->empty()) << from;
  }
}

TEST_F(StreamLogTest, ReopenKeepsEverythingAndRewritesTheSameBytes) {
  std::vector<Bytes> model;
  std::map<std::string, Bytes> files;
  {
    std::unique_ptr<StreamLog> log = Open(Small());
    ASSERT_NE(log, nullptr);
    for (int i = 0; i < 7; ++i) {
      const std::vector<Bytes> records = Batch(model.size(), 3, 90);
      Append(*log, records);
      model.insert(model.end(), records.begin(), records.end());
    }
    ASSERT_TRUE(log->Close().ok());
    for (const std::string& f : SegmentFiles(dir_)) files[f] = ReadFileOrDie(SegPath(f));
  }
  for (int round = 0; round < 2; ++round) {
    std::unique_ptr<StreamLog> log = Open(Small());
    ASSERT_NE(log, nullptr);
    EXPECT_FALSE(log->recovery().tail_truncated);
    EXPECT_EQ(log->end_offset(), model.size());
    ExpectRecords(ReadAll(*log), 0, model);
    ASSERT_TRUE(log->Close().ok());
    // Open copies the last segment into a fresh file: the same bytes.
    for (const auto& [name, bytes] : files) {
      EXPECT_TRUE(ReadFileOrDie(SegPath(name)) == bytes) << name;
    }
    EXPECT_EQ(SegmentFiles(dir_).size(), files.size()) << "no segment left over or added";
  }
  // Appends go on where the log ended, in the last segment.
  std::unique_ptr<StreamLog> log = Open(Small());
  ASSERT_NE(log, nullptr);
  const std::vector<Bytes> more = Batch(model.size(), 2, 90);
  EXPECT_EQ(Append(*log, more).first, model.size());
  model.insert(model.end(), more.begin(), more.end());
  log.reset();
  log = Open(Small());
  ASSERT_NE(log, nullptr);
  ExpectRecords(ReadAll(*log), 0, model);
}

TEST_F(StreamLogTest, SecondOpenOfTheSameDirectoryIsUnavailable) {
  std::unique_ptr<StreamLog> log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(HasCode(OpenError(), StatusCode::kUnavailable));
  ASSERT_TRUE(log->Close().ok());
  EXPECT_NE(Open(), nullptr) << "Close releases the directory";
}

TEST_F(StreamLogTest, InvalidOptionsAreRejected) {
  struct Case {
    const char* what;
    std::function<void(StreamLogOptions&)> set;
  };
  const std::vector<Case> cases = {
      {"segment too small", [](StreamLogOptions& o) { o.segment_bytes = 63; }},
      {"segment too large", [](StreamLogOptions& o) { o.segment_bytes = (1ull << 30) + 1; }},
      {"record over 16 MiB", [](StreamLogOptions& o) { o.max_record_bytes = (16u << 20) + 1; }},
      {"batch below a record",
       [](StreamLogOptions& o) { o.max_batch_bytes = o.max_record_bytes + 7; }},
      {"no index interval", [](StreamLogOptions& o) { o.index_interval_bytes = 0; }},
      {"zero interval",
       [](StreamLogOptions& o) {
         o.fsync = FsyncPolicy::kInterval;
         o.fsync_interval_ms = 0;
       }},
      {"no env", [](StreamLogOptions& o) { o.env = nullptr; }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    StreamLogOptions o;
    c.set(o);
    EXPECT_TRUE(HasCode(OpenError(o), StatusCode::kInvalidArgument));
  }
}

// ---------------------------------------------------------------------------
// Rejected batches store nothing

TEST_F(StreamLogTest, OversizedRecordIsRejectedAndNothingIsStored) {
  StreamLogOptions o;
  o.max_record_bytes = 100;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  Append(*log, Batch(0, 2, 100));
  const uint64_t bytes = log->Segments().back().bytes;
  const std::vector<Bytes> bad = {Payload(2, 10), Payload(3, 101), Payload(4, 10)};
  Result<AppendResult> r = TryAppend(*log, bad);
  EXPECT_TRUE(HasCode(r.status(), StatusCode::kInvalidArgument));
  EXPECT_THAT(r.status().message(), HasSubstr("record 1 of the batch is 101 bytes"));
  EXPECT_EQ(log->end_offset(), 2u);
  EXPECT_EQ(log->Segments().back().bytes, bytes);
  EXPECT_EQ(Append(*log, {Payload(2, 1)}).first, 2u) << "the rejected batch used no offset";
  log.reset();
  log = Open(o);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->end_offset(), 3u);
}

TEST_F(StreamLogTest, BadBatchesAreRejectedAndNothingIsStored) {
  StreamLogOptions o;
  o.max_record_bytes = 1000;
  o.max_batch_bytes = 2000;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  struct Case {
    const char* what;
    std::vector<Bytes> batch;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"empty batch", {}, "empty batch"},
      {"last record oversized", {Payload(0, 10), Payload(1, 10), Payload(2, 1001)}, "record 2"},
      {"batch over max_batch_bytes (frames count)", Batch(0, 2, 997), "over the limit of 2000"},
      {"many small records over the limit", Batch(0, 300, 0), "2400 bytes with frames"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Result<AppendResult> r = TryAppend(*log, c.batch);
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kInvalidArgument));
    EXPECT_THAT(r.status().message(), HasSubstr(c.message));
    EXPECT_EQ(log->end_offset(), 0u);
    EXPECT_EQ(log->Segments().back().bytes, 32u);
  }
  EXPECT_EQ(Append(*log, Batch(0, 2, 992)).first, 0u) << "2000 bytes with frames fit";
}

// ---------------------------------------------------------------------------
// Recovery

class StreamLogRecoveryTest : public StreamLogTest {
 protected:
  // A log of `n` records (sizes 20, 21, ...) in one segment, closed.
  std::vector<Bytes> WriteOneSegment(size_t n) {
    std::vector<Bytes> model;
    for (size_t i = 0; i < n; ++i) model.push_back(Payload(i, 20 + i));
    std::unique_ptr<StreamLog> log = Open();
    EXPECT_NE(log, nullptr);
    if (log == nullptr) return model;
    Append(*log, model);
    EXPECT_TRUE(log->Close().ok());
    return model;
  }
  // Byte position of record `i` in a segment written by WriteOneSegment.
  static size_t PositionOf(size_t i) {
    size_t pos = 32;
    for (size_t k = 0; k < i; ++k) pos += 8 + 20 + k;
    return pos;
  }
};

TEST_F(StreamLogRecoveryTest, TornTailAtEveryBytePositionOfTheLastRecordIsTruncated) {
  const std::vector<Bytes> model = WriteOneSegment(5);
  const Bytes full = ReadFileOrDie(SegPath("00000000000000000000.seg"));
  const size_t last = PositionOf(4);
  ASSERT_EQ(full.size(), last + 8 + 24);
  for (size_t cut = last; cut < full.size(); ++cut) {
    SCOPED_TRACE(::testing::Message() << "cut at byte " << cut);
    const std::string dir = tmp_.Sub("cut-" + std::to_string(cut));
    MakeDirsOrDie(dir);
    WriteFileOrDie(dir + "/00000000000000000000.seg", ByteView(full).first(cut));
    std::unique_ptr<StreamLog> log = OpenAt(dir);
    ASSERT_NE(log, nullptr);
    EXPECT_EQ(log->end_offset(), 4u);
    const StreamLogRecovery& rec = log->recovery();
    EXPECT_EQ(rec.tail_truncated, cut > last) << "a cut at a record boundary is a clean end";
    if (cut > last) {
      EXPECT_EQ(rec.offset, 4u);
      EXPECT_EQ(rec.byte_position, last);
      EXPECT_EQ(rec.bytes_dropped, cut - last);
      EXPECT_EQ(rec.segment, "00000000000000000000.seg");
      EXPECT_THAT(rec.reason,
                  HasSubstr(cut - last < 8 ? "partial frame header" : "partial record"));
    }
    EXPECT_EQ(ReadFileOrDie(dir + "/00000000000000000000.seg").size(), last) << "truncated on disk";
    ExpectRecords(ReadAll(*log), 0, std::vector<Bytes>(model.begin(), model.end() - 1));
    // The log goes on from the last full record, and all of it survives a reopen.
    EXPECT_EQ(Append(*log, {model[4]}).first, 4u);
    log.reset();
    log = OpenAt(dir);
    ASSERT_NE(log, nullptr);
    EXPECT_FALSE(log->recovery().tail_truncated);
    ExpectRecords(ReadAll(*log), 0, model);
  }
}

TEST_F(StreamLogRecoveryTest, FlippedByteInTheLastRecordIsTruncated) {
  const std::vector<Bytes> model = WriteOneSegment(5);
  const Bytes full = ReadFileOrDie(SegPath("00000000000000000000.seg"));
  const size_t last = PositionOf(4);
  struct Case {
    const char* what;
    size_t pos;
    uint8_t mask;
    const char* reason;
  };
  const std::vector<Case> cases = {
      {"payload, first byte", last + 8, 0x01, "CRC32C mismatch"},
      {"payload, middle byte", last + 20, 0x40, "CRC32C mismatch"},
      {"payload, last byte", full.size() - 1, 0x80, "CRC32C mismatch"},
      {"CRC", last + 5, 0x10, "CRC32C mismatch"},
      {"length made smaller", last, 0x08, "CRC32C mismatch"},
      {"length made larger", last, 0x20, "partial record"},
      {"length over the format limit", last + 3, 0x80, "bad length"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string dir = tmp_.Sub(std::string("flip-") + std::to_string(&c - cases.data()));
    MakeDirsOrDie(dir);
    Bytes damaged = full;
    damaged[c.pos] ^= c.mask;
    WriteFileOrDie(dir + "/00000000000000000000.seg", damaged);
    std::unique_ptr<StreamLog> log = OpenAt(dir);
    ASSERT_NE(log, nullptr);
    EXPECT_TRUE(log->recovery().tail_truncated);
    EXPECT_EQ(log->recovery().offset, 4u);
    EXPECT_THAT(log->recovery().reason, HasSubstr(c.reason));
    EXPECT_EQ(log->end_offset(), 4u);
    ExpectRecords(ReadAll(*log), 0, std::vector<Bytes>(model.begin(), model.end() - 1));
  }
}

TEST_F(StreamLogRecoveryTest, ZeroFilledTailIsTruncated) {
  const std::vector<Bytes> model = WriteOneSegment(3);
  Bytes b = ReadFileOrDie(SegPath("00000000000000000000.seg"));
  const size_t end = b.size();
  b.resize(end + 4096, 0);  // the size reached the disk, the data did not
  WriteFileOrDie(SegPath("00000000000000000000.seg"), b);
  std::unique_ptr<StreamLog> log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(log->recovery().tail_truncated);
  EXPECT_EQ(log->recovery().offset, 3u);
  EXPECT_EQ(log->recovery().byte_position, end);
  EXPECT_EQ(log->recovery().bytes_dropped, 4096u);
  ExpectRecords(ReadAll(*log), 0, model);
}

TEST_F(StreamLogRecoveryTest, DamageInsideTheLastSegmentFollowedByValidRecordsIsDataLoss) {
  const std::vector<Bytes> model = WriteOneSegment(5);
  FlipByte(SegPath("00000000000000000000.seg"), PositionOf(2) + 10);
  const Status s = OpenError();
  EXPECT_TRUE(HasCode(s, StatusCode::kDataLoss));
  EXPECT_THAT(s.message(), HasSubstr("segment 00000000000000000000.seg: record at offset 2 (byte " +
                                     std::to_string(PositionOf(2)) + "): CRC32C mismatch"));
  EXPECT_THAT(s.message(), HasSubstr("not a torn tail"));

  // The operator's repair switch drops it and everything after it.
  StreamLogOptions repair;
  repair.repair_damaged_last_segment = true;
  std::unique_ptr<StreamLog> log = Open(repair);
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(log->recovery().tail_truncated);
  EXPECT_EQ(log->recovery().offset, 2u);
  ExpectRecords(ReadAll(*log), 0, std::vector<Bytes>(model.begin(), model.begin() + 2));
}

TEST_F(StreamLogRecoveryTest, FlippedByteInAnOlderSegmentIsDataLoss) {
  std::vector<Bytes> model;
  {
    std::unique_ptr<StreamLog> log = Open(Small());
    ASSERT_NE(log, nullptr);
    model = Batch(0, 20, 100);
    Append(*log, model);
  }
  const std::vector<std::string> files = SegmentFiles(dir_);
  ASSERT_EQ(files.size(), 4u);
  // Segment 1 holds offsets 5..9; damage the payload of offset 9, its last record.
  const size_t pos = 32 + 4 * 108;
  FlipByte(SegPath(files[1]), pos + 8 + 50);
  for (const bool repair : {false, true}) {
    SCOPED_TRACE(repair ? "with the repair switch" : "without");
    StreamLogOptions o = Small();
    o.repair_damaged_last_segment = repair;  // only ever about the last segment
    const Status s = OpenError(o);
    EXPECT_TRUE(HasCode(s, StatusCode::kDataLoss));
    EXPECT_THAT(s.message(),
                HasSubstr(dir_ + ": segment " + files[1] + ": record at offset 9 (byte " +
                          std::to_string(pos) + "): CRC32C mismatch"));
  }
  EXPECT_EQ(ReadFileOrDie(SegPath(files[1])).size(), 600u - 28) << "nothing was truncated";
}

TEST_F(StreamLogRecoveryTest, TruncatedOlderSegmentIsDataLoss) {
  {
    std::unique_ptr<StreamLog> log = Open(Small());
    ASSERT_NE(log, nullptr);
    Append(*log, Batch(0, 12, 100));
  }
  const std::vector<std::string> files = SegmentFiles(dir_);
  ASSERT_EQ(files.size(), 3u);
  const Bytes b = ReadFileOrDie(SegPath(files[0]));
  WriteFileOrDie(SegPath(files[0]), ByteView(b).first(b.size() - 1));
  const Status s = OpenError(Small());
  EXPECT_TRUE(HasCode(s, StatusCode::kDataLoss));
  EXPECT_THAT(s.message(), HasSubstr(files[0] + ": record at offset 4"));
  EXPECT_THAT(s.message(), HasSubstr("partial record: 107 of 108 bytes"));
}

TEST_F(StreamLogRecoveryTest, DamagedSegmentHeaderIsDataLossInAnySegment) {
  struct Case {
    const char* what;
    size_t pos;
    uint8_t mask;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"magic", 0, 0x20, "bad magic"},
      {"version", 4, 0x03, "unsupported version 2"},
      {"reserved after the version", 6, 0x01, "reserved header bytes set"},
      {"reserved before the CRC", 25, 0x01, "reserved header bytes set"},
      {"first offset", 8, 0x01, "header checksum mismatch"},
      {"created", 20, 0x01, "header checksum mismatch"},
      {"CRC", 30, 0x01, "header checksum mismatch"},
  };
  for (const bool last : {false, true}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(c.what) + (last ? " (last segment)" : " (older segment)"));
      ::ferry::testing::RemoveTree(dir_);
      {
        std::unique_ptr<StreamLog> log = Open(Small());
        ASSERT_NE(log, nullptr);
        Append(*log, Batch(0, 8, 100));
      }
      const std::vector<std::string> files = SegmentFiles(dir_);
      ASSERT_EQ(files.size(), 2u);
      FlipByte(SegPath(files[last ? 1 : 0]), c.pos, c.mask);
      const Status s = OpenError(Small());
      EXPECT_TRUE(HasCode(s, StatusCode::kDataLoss));
      EXPECT_THAT(s.message(), HasSubstr("segment " + files[last ? 1 : 0] + ": " + c.message));
    }
  }
}

TEST_F(StreamLogRecoveryTest, SegmentWhoseNameDisagreesWithItsHeaderIsDataLoss) {
  WriteOneSegment(2);
  ASSERT_TRUE(
      Env::Default()
          ->RenameFile(SegPath("00000000000000000000.seg"), SegPath("00000000000000000007.seg"))
          .ok());
  const Status s = OpenError();
  EXPECT_TRUE(HasCode(s, StatusCode::kDataLoss));
  EXPECT_THAT(s.message(), HasSubstr("header says first offset 0 but the file name says 7"));
}

TEST_F(StreamLogRecoveryTest, MissingMiddleSegmentIsDataLoss) {
  {
    std::unique_ptr<StreamLog> log = Open(Small());
    ASSERT_NE(log, nullptr);
    Append(*log, Batch(0, 12, 100));
  }
  const std::vector<std::string> files = SegmentFiles(dir_);
  ASSERT_EQ(files.size(), 3u);
  ASSERT_TRUE(Env::Default()->RemoveFile(SegPath(files[1])).ok());
  const Status s = OpenError(Small());
  EXPECT_TRUE(HasCode(s, StatusCode::kDataLoss));
  EXPECT_THAT(s.message(),
              HasSubstr(files[2] + ": starts at offset 10 but the previous segment ends at 5"));
}

TEST_F(StreamLogRecoveryTest, UnexpectedSegmentNameIsDataLoss) {
  WriteOneSegment(1);
  WriteFileOrDie(SegPath("123.seg"), SpecHeader(123, 0));
  EXPECT_TRUE(HasCode(OpenError(), StatusCode::kDataLoss));
}

TEST_F(StreamLogRecoveryTest, TornHeaderOfTheLastSegmentIsCreatedAgain) {
  for (const size_t size : {size_t{0}, size_t{10}, size_t{31}, size_t{32}, size_t{4096}}) {
    SCOPED_TRACE(::testing::Message() << "last segment of " << size << " bytes");
    ::ferry::testing::RemoveTree(dir_);
    std::vector<Bytes> model;
    {
      std::unique_ptr<StreamLog> log = Open(Small());
      ASSERT_NE(log, nullptr);
      model = Batch(0, 10, 100);
      Append(*log, model);
    }
    // A crash while segment 10 was being created: its header never reached the disk.
    ASSERT_EQ(SegmentFiles(dir_).back(), "00000000000000000005.seg");
    WriteFileOrDie(SegPath("00000000000000000010.seg"), Bytes(size, 0));
    std::unique_ptr<StreamLog> log = Open(Small());
    ASSERT_NE(log, nullptr);
    EXPECT_TRUE(log->recovery().header_recreated);
    EXPECT_EQ(log->end_offset(), 10u);
    EXPECT_EQ(ReadFileOrDie(SegPath("00000000000000000010.seg")).size(), 32u);
    EXPECT_EQ(Append(*log, {Payload(10, 100)}).first, 10u);
    model.push_back(Payload(10, 100));
    log.reset();
    log = Open(Small());
    ASSERT_NE(log, nullptr);
    ExpectRecords(ReadAll(*log), 0, model);
  }
}

TEST_F(StreamLogRecoveryTest, LeftoverRewriteFileIsRemoved) {
  const std::vector<Bytes> model = WriteOneSegment(3);
  WriteFileOrDie(SegPath("00000000000000000000.seg.tmp"), ToBytes("half a copy"));
  std::unique_ptr<StreamLog> log = Open();
  ASSERT_NE(log, nullptr);
  ExpectRecords(ReadAll(*log), 0, model);
  Result<bool> exists = Env::Default()->FileExists(SegPath("00000000000000000000.seg.tmp"));
  ASSERT_TRUE(exists.ok());
  EXPECT_FALSE(*exists);
}

// ---------------------------------------------------------------------------
// Retention

TEST_F(StreamLogTest, TruncateBeforeDeletesWholeSegmentsAndReadsBelowAreOutOfRange) {
  std::unique_ptr<StreamLog> log = Open(Small());
  ASSERT_NE(log, nullptr);
  const std::vector<Bytes> model = Batch(0, 23, 100);
  Append(*log, model);
  ASSERT_EQ(SegmentFiles(dir_).size(), 5u);  // [0,5) [5,10) [10,15) [15,20) [20,23)

  ASSERT_TRUE(log->TruncateBefore(12).ok());
  EXPECT_EQ(log->start_offset(), 12u);
  EXPECT_EQ(SegmentFiles(dir_),
            (std::vector<std::string>{"00000000000000000010.seg", "00000000000000000015.seg",
                                      "00000000000000000020.seg"}));
  for (const uint64_t below : {uint64_t{0}, uint64_t{9}, uint64_t{11}}) {
    Result<std::vector<StreamRecord>> r = log->Read(below, 10, 1 << 20);
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kOutOfRange)) << below;
    EXPECT_THAT(r.status().message(), HasSubstr("first available offset 12"));
  }
  ExpectRecords(ReadAll(*log), 12, model);

  EXPECT_TRUE(log->TruncateBefore(5).ok()) << "below the start: nothing to do";
  EXPECT_EQ(log->start_offset(), 12u);
  EXPECT_TRUE(HasCode(log->TruncateBefore(24), StatusCode::kOutOfRange));

  // The first retained offset survives a restart.
  log.reset();
  log = Open(Small());
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->start_offset(), 12u);
  EXPECT_TRUE(HasCode(log->Read(11, 1, 1000).status(), StatusCode::kOutOfRange));
  ExpectRecords(ReadAll(*log), 12, model);
}

TEST_F(StreamLogTest, TruncateBeforeTheEndGivesBackEverySegment) {
  std::unique_ptr<StreamLog> log = Open(Small());
  ASSERT_NE(log, nullptr);
  Append(*log, Batch(0, 13, 100));
  ASSERT_TRUE(log->TruncateBefore(13).ok());
  EXPECT_EQ(SegmentFiles(dir_), std::vector<std::string>{"00000000000000000013.seg"});
  EXPECT_EQ(log->Segments().back().bytes, 32u);
  EXPECT_TRUE(HasCode(log->Read(12, 1, 1000).status(), StatusCode::kOutOfRange));
  log.reset();
  log = Open(Small());
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->start_offset(), 13u);
  EXPECT_EQ(log->end_offset(), 13u);
  EXPECT_EQ(Append(*log, {Payload(13, 5)}).first, 13u);
  ASSERT_EQ(ReadAll(*log).size(), 1u);
}

TEST_F(StreamLogTest, InterruptedTruncateIsFinishedByOpen) {
  std::vector<Bytes> model;
  {
    std::unique_ptr<StreamLog> log = Open(Small());
    ASSERT_NE(log, nullptr);
    model = Batch(0, 17, 100);
    Append(*log, model);
  }
  // TruncateBefore(11) wrote the start file and crashed before deleting.
  WriteFileOrDie(SegPath("start"), SpecStartFile(11));
  std::unique_ptr<StreamLog> log = Open(Small());
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->recovery().segments_removed, 2u);
  EXPECT_EQ(log->start_offset(), 11u);
  EXPECT_EQ(SegmentFiles(dir_).front(), "00000000000000000010.seg");
  ExpectRecords(ReadAll(*log), 11, model);
}

TEST_F(StreamLogTest, DamagedOrImpossibleStartFileIsDataLoss) {
  {
    std::unique_ptr<StreamLog> log = Open();
    ASSERT_NE(log, nullptr);
    Append(*log, Batch(0, 4, 10));
  }
  struct Case {
    const char* what;
    Bytes bytes;
    const char* message;
  };
  Bytes bad_crc = SpecStartFile(2);
  bad_crc[22] ^= 1;
  Bytes bad_version = SpecStartFile(2);
  bad_version[4] = 9;
  Bytes reserved = SpecStartFile(2);
  reserved[17] = 1;
  const std::vector<Case> cases = {
      {"checksum", bad_crc, "checksum mismatch"},
      {"version", bad_version, "unsupported version 9"},
      {"reserved", reserved, "reserved bytes set"},
      {"magic", ToBytes("FSEGxxxxxxxxxxxxxxxxxxxx"), "bad magic"},
      {"size", ToBytes("FSTA"), "4 bytes, not 24"},
      {"past the end", SpecStartFile(5), "says offset 5 but the log ends at 4"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    WriteFileOrDie(SegPath("start"), c.bytes);
    const Status s = OpenError();
    EXPECT_TRUE(HasCode(s, StatusCode::kDataLoss));
    EXPECT_THAT(s.message(), HasSubstr(c.message));
  }
  WriteFileOrDie(SegPath("start"), SpecStartFile(4));
  std::unique_ptr<StreamLog> log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->start_offset(), 4u);
}

// ---------------------------------------------------------------------------
// Durability

TEST_F(StreamLogTest, AnsweredAppendsSurviveACrashThatLosesUnsyncedWrites) {
  for (const TestEnv::Crash how : {TestEnv::Crash::kTruncate, TestEnv::Crash::kZeroFill}) {
    SCOPED_TRACE(how == TestEnv::Crash::kTruncate ? "truncated" : "zero-filled");
    ::ferry::testing::RemoveTree(dir_);
    TestEnv env;
    StreamLogOptions o = Small();
    o.env = &env;
    std::vector<Bytes> model;
    {
      std::unique_ptr<StreamLog> log = Open(o);
      ASSERT_NE(log, nullptr);
      for (int i = 0; i < 9; ++i) {
        const std::vector<Bytes> records = Batch(model.size(), 1 + i % 3, 100);
        Append(*log, records);  // answered: durable
        model.insert(model.end(), records.begin(), records.end());
      }
      env.SimulateCrash(how);
    }
    std::unique_ptr<StreamLog> log = Open(Small());
    ASSERT_NE(log, nullptr);
    EXPECT_FALSE(log->recovery().tail_truncated);
    ExpectRecords(ReadAll(*log), 0, model);
  }
}

TEST_F(StreamLogTest, IntervalSyncIsDueOnlyAfterTheInterval) {
  FakeClock clock;
  TestEnv env;
  StreamLogOptions o;
  o.env = &env;
  o.clock = &clock;
  o.fsync = FsyncPolicy::kInterval;
  o.fsync_interval_ms = 50;
  o.sync_thread = false;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  const int syncs_at_open = env.syncs;

  const AppendResult r = Append(*log, Batch(0, 3, 10));
  EXPECT_EQ(log->durable_end_offset(), 0u) << "Append under kInterval does not fsync";
  std::atomic<bool> durable{false};
  std::thread waiter([&] {
    EXPECT_TRUE(log->WaitDurable(r.last).ok());
    durable = true;
  });
  ASSERT_TRUE(log->SyncIfDue().ok());
  clock.Advance(49'000'000);
  ASSERT_TRUE(log->SyncIfDue().ok());
  EXPECT_EQ(log->durable_end_offset(), 0u);
  EXPECT_EQ(env.syncs, syncs_at_open);
  EXPECT_FALSE(durable) << "nothing is durable yet";
  clock.Advance(1'000'000);
  ASSERT_TRUE(log->SyncIfDue().ok());
  waiter.join();
  EXPECT_TRUE(durable);
  EXPECT_EQ(log->durable_end_offset(), 3u);
  EXPECT_EQ(env.syncs, syncs_at_open + 1);
  ASSERT_TRUE(log->SyncIfDue().ok());
  EXPECT_EQ(env.syncs, syncs_at_open + 1) << "nothing new to sync";

  // Group commit: the interval counts from the oldest unsynced write.
  Append(*log, Batch(3, 1, 10));
  clock.Advance(30'000'000);
  Append(*log, Batch(4, 1, 10));
  clock.Advance(20'000'000);
  ASSERT_TRUE(log->SyncIfDue().ok());
  EXPECT_EQ(log->durable_end_offset(), 5u);
  EXPECT_EQ(env.syncs, syncs_at_open + 2) << "one fsync for both batches";
  EXPECT_TRUE(HasCode(log->WaitDurable(5), StatusCode::kOutOfRange));
}

TEST_F(StreamLogTest, UnsyncedRecordsMayBeLostButDurableOnesSurviveACrash) {
  FakeClock clock;
  TestEnv env;
  StreamLogOptions o;
  o.env = &env;
  o.clock = &clock;
  o.fsync = FsyncPolicy::kInterval;
  o.sync_thread = false;
  const std::vector<Bytes> model = Batch(0, 6, 50);
  {
    std::unique_ptr<StreamLog> log = Open(o);
    ASSERT_NE(log, nullptr);
    Append(*log, std::vector<Bytes>(model.begin(), model.begin() + 4));
    clock.Advance(int64_t{o.fsync_interval_ms} * 1'000'000);
    ASSERT_TRUE(log->SyncIfDue().ok());
    ASSERT_TRUE(log->WaitDurable(3).ok());
    Append(*log, std::vector<Bytes>(model.begin() + 4, model.end()));  // written, not durable
    env.SimulateCrash(TestEnv::Crash::kZeroFill);
  }
  std::unique_ptr<StreamLog> log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(log->recovery().tail_truncated);
  EXPECT_EQ(log->recovery().offset, 4u);
  ExpectRecords(ReadAll(*log), 0, std::vector<Bytes>(model.begin(), model.begin() + 4));
}

TEST_F(StreamLogTest, OpenMakesWhatACrashedProcessLeftDurable) {
  // A process appended without fsync and died: its writes are in the page
  // cache only. The next Open must make them durable before it serves them.
  // One TestEnv sees both processes, so that the crash loses what neither
  // of them fsync'd.
  TestEnv env;
  StreamLogOptions o;
  o.env = &env;
  o.fsync = FsyncPolicy::kInterval;
  o.sync_thread = false;
  const std::vector<Bytes> model = Batch(0, 5, 70);
  {
    std::unique_ptr<StreamLog> log = Open(o);
    ASSERT_NE(log, nullptr);
    Append(*log, model);
    env.fail_syncs = true;  // the process dies: its Close syncs nothing
  }
  env.fail_syncs = false;
  StreamLogOptions reopen;
  reopen.env = &env;
  {
    std::unique_ptr<StreamLog> log = Open(reopen);
    ASSERT_NE(log, nullptr);
    ExpectRecords(ReadAll(*log), 0, model);
    env.SimulateCrash(TestEnv::Crash::kTruncate);  // the machine dies now
  }
  std::unique_ptr<StreamLog> log = Open();
  ASSERT_NE(log, nullptr);
  ExpectRecords(ReadAll(*log), 0, model);
}

TEST_F(StreamLogTest, WaitDurableReturnsOnceTheSyncThreadHasSynced) {
  StreamLogOptions o = Small();
  o.fsync = FsyncPolicy::kInterval;
  o.fsync_interval_ms = 1;  // real clock: the thread syncs about 1 ms after each write
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  for (uint64_t i = 0; i < 20; ++i) {
    const AppendResult r = Append(*log, Batch(i * 3, 3, 100));
    ASSERT_TRUE(log->WaitDurable(r.last).ok());
    EXPECT_GT(log->durable_end_offset(), r.last);
  }
}

TEST_F(StreamLogTest, CloseReleasesWaitersWithEverythingDurable) {
  FakeClock clock;
  StreamLogOptions o;
  o.clock = &clock;
  o.fsync = FsyncPolicy::kInterval;
  o.sync_thread = false;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  Append(*log, Batch(0, 2, 10));
  Status waited = InternalError("WaitDurable did not return");
  std::thread waiter([&] { waited = log->WaitDurable(1); });
  ASSERT_TRUE(log->Close().ok());
  waiter.join();
  EXPECT_TRUE(waited.ok()) << waited.ToString();
  EXPECT_EQ(log->durable_end_offset(), 2u);
  EXPECT_TRUE(HasCode(TryAppend(*log, Batch(2, 1, 10)).status(), StatusCode::kFailedPrecondition));
  EXPECT_EQ(ReadAll(*log).size(), 2u) << "reads still work after Close";
}

// ---------------------------------------------------------------------------
// Failed writes and fsyncs: the unsynced tail is discarded, appends go on

TEST_F(StreamLogTest, FailedFsyncFailsTheBatchDiscardsItAndTheNextAppendGoesOn) {
  TestEnv env;
  StreamLogOptions o;
  o.env = &env;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  std::vector<Bytes> model = Batch(0, 2, 10);
  Append(*log, model);
  env.fail_syncs = true;
  Result<AppendResult> failed = TryAppend(*log, Batch(100, 2, 10));
  EXPECT_TRUE(HasCode(failed.status(), StatusCode::kDataLoss));
  EXPECT_THAT(failed.status().message(),
              HasSubstr("records from offset 2 on were not made durable"));
  EXPECT_THAT(failed.status().message(), HasSubstr("injected: fdatasync"));
  EXPECT_FALSE(log->failure().ok()) << "failed until the next write discards the tail";
  EXPECT_TRUE(HasCode(log->WaitDurable(3), StatusCode::kDataLoss));
  EXPECT_TRUE(log->WaitDurable(1).ok()) << "what was durable stays durable";
  env.fail_syncs = false;

  // No restart: the next append discards the failed batch and takes its offsets.
  const std::vector<Bytes> next = Batch(2, 3, 10);
  const AppendResult r = Append(*log, next);
  EXPECT_EQ(r.first, 2u);
  EXPECT_EQ(r.epoch, 1u);
  EXPECT_EQ(log->epoch(), 1u);
  EXPECT_TRUE(log->failure().ok());
  model.insert(model.end(), next.begin(), next.end());
  EXPECT_EQ(log->durable_end_offset(), 5u);
  ExpectRecords(ReadAll(*log), 0, model);
  EXPECT_EQ(env.syncs_after_failure, 0) << "the file whose fsync failed was fsync'd again";

  // The segment was copied into a fresh file: errors still name the segment.
  env.fail_syncs = true;
  Result<AppendResult> again = TryAppend(*log, Batch(100, 1, 10));
  env.fail_syncs = false;
  EXPECT_THAT(again.status().message(),
              HasSubstr("fdatasync " + SegPath("00000000000000000000.seg") + " failed"));
  EXPECT_THAT(again.status().message(), ::testing::Not(HasSubstr(".tmp")));

  // What was answered survives a machine crash, and nothing else is there.
  env.SimulateCrash(TestEnv::Crash::kTruncate);
  log.reset();
  log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_FALSE(log->recovery().tail_truncated);
  ExpectRecords(ReadAll(*log), 0, model);
}

TEST_F(StreamLogTest, FailedWriteDiscardsTheTornBatchAndTheNextAppendGoesOn) {
  for (const bool torn : {false, true}) {
    SCOPED_TRACE(torn ? "half the batch written" : "nothing written");
    ::ferry::testing::RemoveTree(dir_);
    TestEnv env;
    StreamLogOptions o = Small();
    o.env = &env;
    std::unique_ptr<StreamLog> log = Open(o);
    ASSERT_NE(log, nullptr);
    std::vector<Bytes> model = Batch(0, 3, 100);
    Append(*log, model);
    (torn ? env.tear_appends : env.fail_appends) = true;
    Result<AppendResult> failed = TryAppend(*log, Batch(100, 1, 100));
    EXPECT_TRUE(
        HasCode(failed.status(), torn ? StatusCode::kDataLoss : StatusCode::kResourceExhausted));
    (torn ? env.tear_appends : env.fail_appends) = false;
    EXPECT_EQ(log->end_offset(), 3u);

    // Enough to roll a segment after the discard.
    for (int i = 0; i < 4; ++i) {
      const std::vector<Bytes> next = Batch(model.size(), 2, 100);
      EXPECT_EQ(Append(*log, next).first, model.size());
      model.insert(model.end(), next.begin(), next.end());
    }
    ExpectRecords(ReadAll(*log), 0, model);
    EXPECT_GE(SegmentFiles(dir_).size(), 2u);
    env.SimulateCrash(TestEnv::Crash::kZeroFill);
    log.reset();
    log = Open(Small());
    ASSERT_NE(log, nullptr);
    ExpectRecords(ReadAll(*log), 0, model);
  }
}

TEST_F(StreamLogTest, FailedIntervalFsyncFailsEveryWaiterOfTheGroupEvenAfterTheLogWentOn) {
  FakeClock clock;
  TestEnv env;
  StreamLogOptions o;
  o.env = &env;
  o.clock = &clock;
  o.fsync = FsyncPolicy::kInterval;
  o.sync_thread = false;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  const int64_t interval = int64_t{o.fsync_interval_ms} * 1'000'000;
  std::vector<Bytes> model = Batch(0, 2, 30);
  const AppendResult durable = Append(*log, model);
  clock.Advance(interval);
  ASSERT_TRUE(log->SyncIfDue().ok());

  // Two batches in one group; its fsync fails.
  const AppendResult a = Append(*log, Batch(100, 3, 30));
  const AppendResult b = Append(*log, Batch(200, 2, 30));
  Status waited_a = InternalError("WaitDurable did not return");
  std::thread waiter([&] { waited_a = log->WaitDurable(a); });
  env.fail_syncs = true;
  clock.Advance(interval);
  EXPECT_TRUE(HasCode(log->SyncIfDue(), StatusCode::kDataLoss));
  waiter.join();
  EXPECT_TRUE(HasCode(waited_a, StatusCode::kDataLoss)) << waited_a.ToString();
  env.fail_syncs = false;

  // The next batch takes offsets 2.. and becomes durable ...
  const std::vector<Bytes> next = Batch(2, 5, 30);
  const AppendResult c = Append(*log, next);
  EXPECT_EQ(c.first, 2u);
  clock.Advance(interval);
  ASSERT_TRUE(log->SyncIfDue().ok());
  ASSERT_TRUE(log->WaitDurable(c).ok());
  EXPECT_GT(log->durable_end_offset(), b.last);
  // ... but a waiter of a discarded batch still learns that it failed,
  // although its offsets are durable now (with other records in them).
  EXPECT_TRUE(HasCode(log->WaitDurable(b), StatusCode::kDataLoss));
  EXPECT_TRUE(HasCode(log->WaitDurable(a), StatusCode::kDataLoss));
  EXPECT_TRUE(log->WaitDurable(durable).ok()) << "durable before the failure: kept";
  model.insert(model.end(), next.begin(), next.end());
  ExpectRecords(ReadAll(*log), 0, model);
  EXPECT_EQ(env.syncs_after_failure, 0);
}

TEST_F(StreamLogTest, ConcurrentAppendersOfAFailedGroupAllFailAndNoneIsAnswered) {
  // Appenders share fsyncs; one fails under them. Every batch answered OK
  // must be in the log at its offsets, and no failed one, whatever the
  // interleaving; the log goes on. (One segment: see the next test for a
  // batch that spans a roll.)
  TestEnv env;
  StreamLogOptions o;
  o.env = &env;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  std::mutex mu;
  std::map<uint64_t, Bytes> answered;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        if (t == 0 && i % 10 == 5) env.fail_syncs = true;
        if (t == 0 && i % 10 == 6) env.fail_syncs = false;
        const std::vector<Bytes> records = Batch(uint64_t(t) * 1000000 + uint64_t(i) * 10, 2, 40);
        Result<AppendResult> r = TryAppend(*log, records);
        if (!r.ok()) {
          ++failures;
          continue;
        }
        std::lock_guard<std::mutex> l(mu);
        for (size_t k = 0; k < records.size(); ++k) answered[r->first + k] = records[k];
      }
    });
  }
  for (std::thread& t : threads) t.join();
  env.fail_syncs = false;
  ASSERT_TRUE(log->Sync().ok());
  EXPECT_GT(failures.load(), 0);
  const std::vector<StreamRecord> all = ReadAll(*log);
  ASSERT_EQ(all.size(), answered.size()) << "dense: exactly the answered records";
  for (const StreamRecord& r : all) {
    ASSERT_TRUE(answered.count(r.offset)) << r.offset;
    ASSERT_TRUE(r.data == answered[r.offset]) << "offset " << r.offset;
  }
  EXPECT_EQ(env.syncs_after_failure, 0);
}

TEST_F(StreamLogTest, RecordsARollMadeDurableStayWhenTheRestOfTheirBatchFails) {
  // A batch larger than what is left of the segment: the roll fsyncs the
  // records before it, then creating the next segment fails. Those records
  // are durable (a replicator may have shipped them) and stay; the rest of
  // the batch was never written; the batch is not answered.
  TestEnv env;
  StreamLogOptions o = Small();  // 5 records of 100 bytes per segment
  o.env = &env;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  std::vector<Bytes> model = Batch(0, 4, 100);
  Append(*log, model);
  env.fail_sync_dirs = true;
  const std::vector<Bytes> spanning = Batch(4, 3, 100);
  EXPECT_TRUE(HasCode(TryAppend(*log, spanning).status(), StatusCode::kDataLoss));
  env.fail_sync_dirs = false;
  EXPECT_EQ(log->durable_end_offset(), 5u);
  model.push_back(spanning[0]);
  const std::vector<Bytes> next = Batch(5, 2, 100);
  EXPECT_EQ(Append(*log, next).first, 5u);
  model.insert(model.end(), next.begin(), next.end());
  ExpectRecords(ReadAll(*log), 0, model);
}

TEST_F(StreamLogTest, FailedRollLeavesNoStraySegmentAndAppendsGoOn) {
  TestEnv env;
  StreamLogOptions o = Small();  // 5 records of 100 bytes per segment
  o.env = &env;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  std::vector<Bytes> model;
  for (int i = 0; i < 5; ++i) {
    const std::vector<Bytes> one = Batch(model.size(), 1, 100);
    Append(*log, one);
    model.push_back(one[0]);
  }
  ASSERT_EQ(SegmentFiles(dir_).size(), 1u);
  // The roll's new segment is written and fsync'd, its directory entry is not.
  env.fail_sync_dirs = true;
  EXPECT_TRUE(HasCode(TryAppend(*log, Batch(5, 1, 100)).status(), StatusCode::kDataLoss));
  env.fail_sync_dirs = false;
  for (int i = 0; i < 6; ++i) {
    const std::vector<Bytes> one = Batch(model.size(), 1, 100);
    EXPECT_EQ(Append(*log, one).first, model.size());
    model.push_back(one[0]);
  }
  ExpectRecords(ReadAll(*log), 0, model);
  EXPECT_EQ(SegmentFiles(dir_).size(), 3u);
  log.reset();
  log = Open(Small());
  ASSERT_NE(log, nullptr);
  ExpectRecords(ReadAll(*log), 0, model);
}

TEST_F(StreamLogTest, DiskStillFailingFailsTheDiscardAndALaterAppendRetriesIt) {
  TestEnv env;
  StreamLogOptions o;
  o.env = &env;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  std::vector<Bytes> model = Batch(0, 4, 20);
  Append(*log, model);
  env.fail_syncs = true;
  EXPECT_FALSE(TryAppend(*log, Batch(100, 1, 20)).ok());
  // The copy of the durable part cannot be fsync'd either.
  Result<AppendResult> again = TryAppend(*log, Batch(100, 1, 20));
  EXPECT_TRUE(HasCode(again.status(), StatusCode::kDataLoss));
  EXPECT_THAT(again.status().message(), HasSubstr("discarding the records from offset 4"));
  EXPECT_TRUE(HasCode(log->Sync(), StatusCode::kDataLoss));
  EXPECT_FALSE(log->failure().ok());
  env.fail_syncs = false;
  ASSERT_TRUE(log->Sync().ok()) << "Sync discards the tail too";
  EXPECT_EQ(log->end_offset(), 4u);
  const std::vector<Bytes> next = Batch(4, 2, 20);
  EXPECT_EQ(Append(*log, next).first, 4u);
  model.insert(model.end(), next.begin(), next.end());
  ExpectRecords(ReadAll(*log), 0, model);
  Result<bool> tmp = Env::Default()->FileExists(SegPath("00000000000000000000.seg.tmp"));
  ASSERT_TRUE(tmp.ok());
  EXPECT_FALSE(*tmp) << "a failed copy leaves no temporary file";
  EXPECT_EQ(env.syncs_after_failure, 0);
}

TEST_F(StreamLogTest, DurablePartThatNoLongerChecksOutAfterAFailureIsDataLossForGood) {
  TestEnv env;
  StreamLogOptions o;
  o.env = &env;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  Append(*log, Batch(0, 3, 20));
  env.fail_syncs = true;
  EXPECT_FALSE(TryAppend(*log, Batch(3, 1, 20)).ok());
  env.fail_syncs = false;
  FlipByte(SegPath("00000000000000000000.seg"), sf::kHeaderSize + sf::kFrameSize + 2);
  Result<AppendResult> r = TryAppend(*log, Batch(3, 1, 20));
  EXPECT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
  EXPECT_THAT(r.status().message(), HasSubstr("the durable part no longer checks out"));
  EXPECT_TRUE(HasCode(TryAppend(*log, Batch(3, 1, 20)).status(), StatusCode::kDataLoss));
  EXPECT_EQ(log->end_offset(), 4u) << "nothing discarded, nothing appended";
}

TEST_F(StreamLogTest, RetentionAfterAFailureDiscardsTheTailFirst) {
  TestEnv env;
  StreamLogOptions o = Small();
  o.env = &env;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  std::vector<Bytes> model = Batch(0, 8, 100);
  for (size_t i = 0; i < model.size(); i += 2) {
    Append(*log, std::vector<Bytes>(model.begin() + static_cast<std::ptrdiff_t>(i),
                                    model.begin() + static_cast<std::ptrdiff_t>(i + 2)));
  }
  env.fail_syncs = true;
  EXPECT_FALSE(TryAppend(*log, Batch(100, 1, 100)).ok());
  env.fail_syncs = false;
  ASSERT_TRUE(log->TruncateBefore(5).ok());
  EXPECT_EQ(log->start_offset(), 5u);
  EXPECT_EQ(log->end_offset(), 8u);
  ExpectRecords(ReadAll(*log), 5, model);
}

// ---------------------------------------------------------------------------
// Concurrency

TEST_F(StreamLogTest, ConcurrentAppendersGetDenseDisjointOffsets) {
  std::unique_ptr<StreamLog> log = Open(Small());
  ASSERT_NE(log, nullptr);
  constexpr int kThreads = 4, kBatches = 60, kPerBatch = 3;
  std::mutex mu;
  std::map<uint64_t, Bytes> written;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int b = 0; b < kBatches; ++b) {
        const std::vector<Bytes> records =
            Batch(uint64_t(t) * 1000000 + uint64_t(b) * 10, kPerBatch, 20 + static_cast<size_t>(t));
        Result<AppendResult> r = TryAppend(*log, records);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        ASSERT_EQ(r->last - r->first + 1, uint64_t{kPerBatch});
        EXPECT_GT(log->durable_end_offset(), r->last);
        std::lock_guard<std::mutex> l(mu);
        for (int i = 0; i < kPerBatch; ++i) written[r->first + uint64_t(i)] = records[size_t(i)];
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(written.size(), size_t{kThreads * kBatches * kPerBatch});
  EXPECT_EQ(written.rbegin()->first, written.size() - 1) << "dense: no gap, no duplicate";
  const std::vector<StreamRecord> all = ReadAll(*log);
  ASSERT_EQ(all.size(), written.size());
  for (const StreamRecord& r : all) ASSERT_TRUE(r.data == written[r.offset]) << r.offset;
}

TEST_F(StreamLogTest, ReadersSeeWholeRecordsInOrderWhileAppending) {
  StreamLogOptions o;
  o.segment_bytes = 4096;  // many rolls while the readers read
  o.index_interval_bytes = 256;
  o.fsync = FsyncPolicy::kInterval;  // no fsync per batch
  o.sync_thread = false;
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  constexpr uint64_t kRecords = 3000;
  auto size_of = [](uint64_t offset) { return static_cast<size_t>(offset % 150); };
  std::thread appender([&] {
    for (uint64_t next = 0; next < kRecords; next += 10) {
      std::vector<Bytes> records;
      for (uint64_t i = next; i < next + 10; ++i) records.push_back(Payload(i, size_of(i)));
      ASSERT_TRUE(TryAppend(*log, records).ok());
    }
  });
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      uint64_t next = 0;
      while (next < kRecords) {
        Result<std::vector<StreamRecord>> r = log->Read(next, 37, 2000);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        for (const StreamRecord& rec : *r) {
          ASSERT_EQ(rec.offset, next);
          ASSERT_TRUE(rec.data == Payload(next, size_of(next))) << next;
          ++next;
        }
        if (r->empty()) std::this_thread::yield();
      }
    });
  }
  appender.join();
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(log->end_offset(), kRecords);
}

TEST_F(StreamLogTest, ReadsRacingTruncationAreOutOfRangeOrWhole) {
  std::unique_ptr<StreamLog> log = Open(Small());
  ASSERT_NE(log, nullptr);
  Append(*log, Batch(0, 200, 100));
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done) {
      Result<std::vector<StreamRecord>> r = log->Read(log->start_offset(), 200, 1 << 20);
      if (!r.ok()) {
        ASSERT_TRUE(HasCode(r.status(), StatusCode::kOutOfRange));
        continue;
      }
      for (size_t i = 1; i < r->size(); ++i) ASSERT_EQ((*r)[i].offset, (*r)[i - 1].offset + 1);
    }
  });
  for (uint64_t cut = 5; cut <= 200; cut += 5) ASSERT_TRUE(log->TruncateBefore(cut).ok());
  done = true;
  reader.join();
  EXPECT_EQ(log->start_offset(), 200u);
}

// ---------------------------------------------------------------------------
// Scale

TEST_F(StreamLogTest, MillionRecordsRoundTrip) {
  constexpr uint64_t kRecords = 1'000'000;
  auto size_of = [](uint64_t offset) { return static_cast<size_t>(20 + offset % 101); };
  StreamLogOptions o;
  o.fsync = FsyncPolicy::kInterval;
  {
    std::unique_ptr<StreamLog> log = Open(o);
    ASSERT_NE(log, nullptr);
    std::vector<Bytes> batch;
    for (uint64_t next = 0; next < kRecords; next += 1000) {
      batch.clear();
      for (uint64_t i = next; i < next + 1000; ++i) batch.push_back(Payload(i, size_of(i)));
      ASSERT_EQ(Append(*log, batch).first, next);
    }
    ASSERT_TRUE(log->Close().ok());
  }
  std::unique_ptr<StreamLog> log = Open(o);
  ASSERT_NE(log, nullptr);
  ASSERT_EQ(log->end_offset(), kRecords);
  EXPECT_GT(log->Segments().size(), 4u);
  uint64_t next = 0;
  while (next < kRecords) {
    Result<std::vector<StreamRecord>> r = log->Read(next, 10000, 4 << 20);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_FALSE(r->empty());
    for (const StreamRecord& rec : *r) {
      ASSERT_EQ(rec.offset, next);
      ASSERT_TRUE(rec.data == Payload(next, size_of(next))) << next;
      ++next;
    }
  }
}

// ---------------------------------------------------------------------------
// Golden sample (docs/format/stream-segment.md, "Worked example")

std::string GoldenPath(const std::string& name) {
  const char* src = std::getenv("FERRY_SOURCE_DIR");
  if (src != nullptr && *src != '\0') return std::string(src) + "/tests/golden/" + name;
  const std::string here = __FILE__;  // tests/snapshot/stream_log_test.cc
  return here.substr(0, here.rfind('/')) + "/../golden/" + name;
}

bool UpdatingGoldens() {
  const char* v = std::getenv("FERRY_UPDATE_GOLDEN");
  return v != nullptr && std::string(v) == "1";
}

void ExpectMatchesGolden(const std::string& name, ByteView actual) {
  SCOPED_TRACE("golden file " + name);
  if (UpdatingGoldens()) {
    WriteFileOrDie(GoldenPath(name), actual);
    std::printf("[golden] wrote %s (%zu bytes)\n", GoldenPath(name).c_str(), actual.size());
    return;
  }
  const Bytes expected = ReadFileOrDie(GoldenPath(name));
  EXPECT_EQ(HexEncode(expected), HexEncode(actual))
      << "If the format changed on purpose, bump its version, update "
         "docs/format/stream-segment.md and regenerate (tests/golden/README.md).";
}

constexpr int64_t kGoldenCreated = 1'700'000'000'000'000'000;
const std::vector<Bytes>& GoldenRecords() {
  static const std::vector<Bytes> records = {ToBytes("hello"), Bytes(), ToBytes("ferry\n")};
  return records;
}

TEST(GoldenStreamSegment, RebuildsByteForByte) {
  TempDir tmp;
  FakeClock clock(kGoldenCreated);
  StreamLogOptions o;
  o.clock = &clock;
  Result<std::unique_ptr<StreamLog>> log = StreamLog::Open(tmp.Sub("s"), o);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  const std::vector<Bytes>& records = GoldenRecords();
  Append(**log, {records[0], records[1]});
  Append(**log, {records[2]});
  ASSERT_TRUE((*log)->TruncateBefore(2).ok());
  ASSERT_TRUE((*log)->Close().ok());
  const Bytes segment = ReadFileOrDie(tmp.Sub("s/00000000000000000000.seg"));
  const Bytes start = ReadFileOrDie(tmp.Sub("s/start"));

  // The field-by-field encoder written from the page agrees.
  Bytes spec = SpecHeader(0, kGoldenCreated);
  for (size_t i = 0; i < records.size(); ++i) SpecRecord(spec, i, records[i]);
  EXPECT_EQ(HexEncode(segment), HexEncode(spec));
  EXPECT_EQ(HexEncode(start), HexEncode(SpecStartFile(2)));

  ExpectMatchesGolden("stream-segment.bin", segment);
  ExpectMatchesGolden("stream-start.bin", start);
}

TEST(GoldenStreamSegment, DecodesToTheFixedRecords) {
  TempDir tmp;
  const std::string dir = tmp.Sub("s");
  MakeDirsOrDie(dir);
  WriteFileOrDie(dir + "/00000000000000000000.seg",
                 ReadFileOrDie(GoldenPath("stream-segment.bin")));
  {
    Result<std::unique_ptr<StreamLog>> log = StreamLog::Open(dir);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    const std::vector<StreamSegmentInfo> segs = (*log)->Segments();
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].created_unix_ns, kGoldenCreated);
    EXPECT_EQ(segs[0].bytes, 67u);
    ExpectRecords(ReadAll(**log), 0, GoldenRecords());
  }
  WriteFileOrDie(dir + "/start", ReadFileOrDie(GoldenPath("stream-start.bin")));
  Result<std::unique_ptr<StreamLog>> log = StreamLog::Open(dir);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ((*log)->start_offset(), 2u);
  EXPECT_TRUE(HasCode((*log)->Read(1, 1, 100).status(), StatusCode::kOutOfRange));
  ExpectRecords(ReadAll(**log), 2, GoldenRecords());
}

// Every documented kind of damage, with the golden segment as an older
// segment (followed by an empty one at offset 3), where damage is DATA_LOSS.
TEST(GoldenStreamSegment, DamageIsRejected) {
  const Bytes golden = ReadFileOrDie(GoldenPath("stream-segment.bin"));
  ASSERT_EQ(golden.size(), 67u);
  struct Case {
    const char* what;
    std::function<void(Bytes&)> damage;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"magic", [](Bytes& b) { b[1] = 'X'; }, "bad magic"},
      {"version", [](Bytes& b) { b[4] = 2; }, "unsupported version 2"},
      {"reserved byte 5", [](Bytes& b) { b[5] = 1; }, "reserved header bytes set"},
      {"reserved word 24", [](Bytes& b) { b[27] = 1; }, "reserved header bytes set"},
      {"first offset", [](Bytes& b) { b[8] = 1; }, "header checksum mismatch"},
      {"created", [](Bytes& b) { b[16] ^= 1; }, "header checksum mismatch"},
      {"header CRC", [](Bytes& b) { b[28] ^= 1; }, "header checksum mismatch"},
      {"record 0 length", [](Bytes& b) { b[32] = 4; },
       "record at offset 0 (byte 32): CRC32C mismatch"},
      {"record 0 CRC", [](Bytes& b) { b[36] ^= 1; },
       "record at offset 0 (byte 32): CRC32C mismatch"},
      {"record 0 payload", [](Bytes& b) { b[40] = 'j'; },
       "record at offset 0 (byte 32): CRC32C mismatch"},
      {"record 1 (empty) CRC", [](Bytes& b) { b[49] ^= 0x80; },
       "record at offset 1 (byte 45): CRC32C mismatch"},
      {"record 2 length over 16 MiB", [](Bytes& b) { b[56] = 0x80; },
       "record at offset 2 (byte 53): bad length"},
      {"record 2 length past the end", [](Bytes& b) { b[53] = 7; },
       "record at offset 2 (byte 53): partial record: 14 of 15 bytes"},
      {"truncated", [](Bytes& b) { b.pop_back(); },
       "record at offset 2 (byte 53): partial record: 13 of 14 bytes"},
      {"extended", [](Bytes& b) { b.push_back(0); },
       "record at offset 3 (byte 67): partial frame header: 1 of 8 bytes"},
      {"cut in the header", [](Bytes& b) { b.resize(20); }, "too short for a segment header"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    TempDir tmp;
    const std::string dir = tmp.Sub("s");
    MakeDirsOrDie(dir);
    Bytes damaged = golden;
    c.damage(damaged);
    WriteFileOrDie(dir + "/00000000000000000000.seg", damaged);
    WriteFileOrDie(dir + "/00000000000000000003.seg", SpecHeader(3, kGoldenCreated));
    Result<std::unique_ptr<StreamLog>> log = StreamLog::Open(dir);
    ASSERT_FALSE(log.ok());
    EXPECT_TRUE(HasCode(log.status(), StatusCode::kDataLoss));
    EXPECT_THAT(log.status().message(),
                HasSubstr("segment 00000000000000000000.seg: " + std::string(c.message)));
  }
}

}  // namespace
}  // namespace ferry::snapshot
