#include "snapshot/ref_set.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/env.h"
#include "core/sodium.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

using ::ferry::testing::MakeDirsOrDie;
using ::ferry::testing::ReadFileOrDie;
using ::ferry::testing::TempDir;
using ::ferry::testing::WriteFileOrDie;
using ::testing::HasSubstr;

using ::ferry::testing::HasCode;

// Layout of a refs object (docs/format/refs.md): 16-byte header (magic,
// version, 3 reserved, u64 count), 36-byte entries, 32-byte checksum.
constexpr size_t kHeader = 16;
constexpr size_t kEntry = 36;
constexpr size_t kSum = 32;

ChunkId RandomId(std::mt19937_64& rng) {
  ChunkId id;
  for (size_t i = 0; i < id.size(); i += 8) StoreU64(id.data() + i, rng());
  return id;
}

// A sealed size that depends only on the id, so duplicates agree.
uint32_t SizeFor(const ChunkId& id) { return 52 + LoadU32(id.data() + 28) % 100000; }

void FixChecksum(Bytes& b) {
  const auto sum = sodium::Blake2b256(ByteView(b.data(), b.size() - kSum));
  std::copy(sum.begin(), sum.end(), b.end() - static_cast<std::ptrdiff_t>(kSum));
}

struct ReadOutcome {
  Status open;  // from Open/FromBytes
  std::vector<RefEntry> entries;
  Status status;  // after the last Next()
  sodium::Hash256 digest{};
  uint64_t count = 0;
};

ReadOutcome Drain(Result<std::unique_ptr<RefSetReader>> opened) {
  ReadOutcome out;
  if (!opened.ok()) {
    out.open = opened.status();
    out.status = opened.status();
    return out;
  }
  RefSetReader& r = **opened;
  out.count = r.count();
  RefEntry e;
  while (r.Next(e)) out.entries.push_back(e);
  out.status = r.status();
  if (out.status.ok()) out.digest = r.digest();
  return out;
}

std::vector<std::string> ListDir(const std::string& dir) {
  Result<std::vector<std::string>> names = Env::Default()->ListDir(dir);
  EXPECT_TRUE(names.ok()) << names.status().ToString();
  return names.ok() ? *names : std::vector<std::string>{};
}

class RefSetTest : public ::testing::Test {
 protected:
  RefSetTest() {
    MakeDirsOrDie(dir_.Sub("tmp"));
    MakeDirsOrDie(dir_.Sub("out"));
  }
  Env& env() { return *Env::Default(); }
  std::string tmp() const { return dir_.Sub("tmp"); }

  // Builds a refs object from `entries` and returns its path.
  std::string Build(const std::vector<RefEntry>& entries, const std::string& name,
                    RefSetSummaryInfo* summary = nullptr) {
    RefSetBuilder b(env(), tmp());
    for (const RefEntry& e : entries) EXPECT_TRUE(b.Add(e.id, e.sealed_size).ok());
    const std::string path = dir_.Sub("out/" + name);
    Result<RefSetSummaryInfo> s = b.Finish(path);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (summary != nullptr && s.ok()) *summary = *s;
    return path;
  }

  // Ten sorted entries (a small valid object to damage).
  std::vector<RefEntry> TenEntries() {
    std::mt19937_64 rng(99);
    std::vector<RefEntry> v;
    for (int i = 0; i < 10; ++i) {
      const ChunkId id = RandomId(rng);
      v.push_back(RefEntry{id, SizeFor(id)});
    }
    std::sort(v.begin(), v.end());
    return v;
  }

  TempDir dir_;
};

TEST_F(RefSetTest, SpillingBuilderMatchesInMemoryBuilder) {
  // 100k adds over 60k distinct ids, in random order with duplicates.
  std::mt19937_64 rng(1);
  std::vector<ChunkId> distinct;
  for (int i = 0; i < 60000; ++i) distinct.push_back(RandomId(rng));
  std::vector<ChunkId> adds = distinct;
  while (adds.size() < 100000) adds.push_back(distinct[rng() % distinct.size()]);
  std::shuffle(adds.begin(), adds.end(), rng);

  std::map<ChunkId, uint32_t> expected;
  uint64_t expected_bytes = 0;
  for (const ChunkId& id : distinct) {
    expected[id] = SizeFor(id);
    expected_bytes += SizeFor(id);
  }

  const std::string tmp_small = dir_.Sub("tmp-small"), tmp_big = dir_.Sub("tmp-big");
  MakeDirsOrDie(tmp_small);
  MakeDirsOrDie(tmp_big);
  RefSetBuilder spilling(env(), tmp_small, /*memory_budget=*/0);
  RefSetBuilder in_memory(env(), tmp_big, /*memory_budget=*/64 << 20);
  for (const ChunkId& id : adds) {
    ASSERT_TRUE(spilling.Add(id, SizeFor(id)).ok());
    ASSERT_TRUE(in_memory.Add(id, SizeFor(id)).ok());
  }
  EXPECT_GT(ListDir(tmp_small).size(), 10u) << "a tiny budget must spill sorted runs";
  EXPECT_TRUE(ListDir(tmp_big).empty());

  Result<RefSetSummaryInfo> a = spilling.Finish(dir_.Sub("out/spilled.refs"));
  Result<RefSetSummaryInfo> b = in_memory.Finish(dir_.Sub("out/memory.refs"));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_TRUE(ListDir(tmp_small).empty()) << "spilled runs are removed by Finish";
  EXPECT_EQ(ListDir(dir_.Sub("out")).size(), 2u) << "no temporary output left beside the refs";

  EXPECT_EQ(a->count, expected.size());
  EXPECT_EQ(a->sealed_bytes, expected_bytes);
  EXPECT_EQ(a->count, b->count);
  EXPECT_EQ(a->sealed_bytes, b->sealed_bytes);
  EXPECT_EQ(a->digest, b->digest);
  EXPECT_EQ(ReadFileOrDie(dir_.Sub("out/spilled.refs")),
            ReadFileOrDie(dir_.Sub("out/memory.refs")));

  ReadOutcome read = Drain(RefSetReader::Open(env(), dir_.Sub("out/spilled.refs")));
  ASSERT_TRUE(read.status.ok()) << read.status.ToString();
  ASSERT_EQ(read.entries.size(), expected.size());
  EXPECT_EQ(read.count, expected.size());
  auto it = expected.begin();
  for (size_t i = 0; i < read.entries.size(); ++i, ++it) {
    ASSERT_EQ(read.entries[i].id, it->first) << "entry " << i;
    ASSERT_EQ(read.entries[i].sealed_size, it->second) << "entry " << i;
  }
  EXPECT_EQ(read.digest, a->digest);
}

TEST_F(RefSetTest, DigestIsBlake2bOfEverythingBeforeTheTrailingChecksum) {
  RefSetSummaryInfo summary;
  const std::string path = Build(TenEntries(), "a.refs", &summary);
  const Bytes file = ReadFileOrDie(path);
  ASSERT_EQ(file.size(), kHeader + 10 * kEntry + kSum);
  // The digest the manifest signs is the object's own trailing checksum:
  // BLAKE2b-256 over header and entries, not over the checksum itself.
  EXPECT_EQ(summary.digest, sodium::Blake2b256(ByteView(file.data(), file.size() - kSum)));
  EXPECT_TRUE(std::equal(summary.digest.begin(), summary.digest.end(), file.end() - kSum));
  EXPECT_NE(summary.digest, sodium::Blake2b256(file));

  ReadOutcome read = Drain(RefSetReader::Open(env(), path));
  ASSERT_TRUE(read.status.ok()) << read.status.ToString();
  EXPECT_EQ(read.digest, summary.digest);

  Result<RefSetSummaryInfo> again = RefSetReader::Summarize(env(), path);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->count, summary.count);
  EXPECT_EQ(again->sealed_bytes, summary.sealed_bytes);
  EXPECT_EQ(again->digest, summary.digest);
}

TEST_F(RefSetTest, SealedSizesAreSummedOncePerDistinctId) {
  ChunkId a{}, b{}, c{};
  a[0] = 3;
  b[0] = 1;
  c[0] = 2;
  RefSetSummaryInfo summary;
  const std::string path =
      Build({{a, 100}, {b, 20}, {a, 100}, {c, 3}, {b, 20}, {b, 20}}, "s.refs", &summary);
  EXPECT_EQ(summary.count, 3u);
  EXPECT_EQ(summary.sealed_bytes, 123u);
  ReadOutcome read = Drain(RefSetReader::Open(env(), path));
  ASSERT_TRUE(read.status.ok());
  ASSERT_EQ(read.entries.size(), 3u);
  EXPECT_EQ(read.entries[0].id, b);
  EXPECT_EQ(read.entries[1].id, c);
  EXPECT_EQ(read.entries[2].id, a);
}

TEST_F(RefSetTest, EmptySetIsAValidObject) {
  RefSetSummaryInfo summary;
  const std::string path = Build({}, "empty.refs", &summary);
  EXPECT_EQ(summary.count, 0u);
  EXPECT_EQ(summary.sealed_bytes, 0u);
  const Bytes file = ReadFileOrDie(path);
  EXPECT_EQ(file.size(), kHeader + kSum);
  ReadOutcome read = Drain(RefSetReader::Open(env(), path));
  ASSERT_TRUE(read.status.ok()) << read.status.ToString();
  EXPECT_TRUE(read.entries.empty());
  EXPECT_EQ(read.digest, summary.digest);
}

TEST_F(RefSetTest, FromBytesReadsExactlyWhatOpenReads) {
  std::mt19937_64 rng(5);
  std::vector<RefEntry> entries;
  for (int i = 0; i < 20000; ++i) {  // > 256 KiB: several reader refills
    const ChunkId id = RandomId(rng);
    entries.push_back({id, SizeFor(id)});
  }
  const std::string path = Build(entries, "big.refs");
  ReadOutcome from_file = Drain(RefSetReader::Open(env(), path));
  ReadOutcome from_memory = Drain(RefSetReader::FromBytes(ReadFileOrDie(path), "link"));
  ASSERT_TRUE(from_file.status.ok()) << from_file.status.ToString();
  ASSERT_TRUE(from_memory.status.ok()) << from_memory.status.ToString();
  EXPECT_EQ(from_file.count, from_memory.count);
  EXPECT_EQ(from_file.digest, from_memory.digest);
  ASSERT_EQ(from_file.entries.size(), from_memory.entries.size());
  for (size_t i = 0; i < from_file.entries.size(); ++i) {
    ASSERT_EQ(from_file.entries[i].id, from_memory.entries[i].id);
    ASSERT_EQ(from_file.entries[i].sealed_size, from_memory.entries[i].sealed_size);
  }
}

TEST_F(RefSetTest, NextAfterTheEndKeepsReturningFalse) {
  const std::string path = Build(TenEntries(), "a.refs");
  Result<std::unique_ptr<RefSetReader>> r = RefSetReader::Open(env(), path);
  ASSERT_TRUE(r.ok());
  RefEntry e;
  int n = 0;
  while ((*r)->Next(e)) ++n;
  EXPECT_EQ(n, 10);
  EXPECT_TRUE((*r)->status().ok());
  EXPECT_FALSE((*r)->Next(e));
  EXPECT_FALSE((*r)->Next(e));
  EXPECT_TRUE((*r)->status().ok());
}

TEST_F(RefSetTest, ReaderRejectsMalformedObjects) {
  const std::string path = Build(TenEntries(), "a.refs");
  const Bytes good = ReadFileOrDie(path);
  auto entry = [](size_t i) { return kHeader + i * kEntry; };
  auto edit = [&](auto&& fn, bool fix) {
    Bytes b = good;
    fn(b);
    if (fix) FixChecksum(b);
    return b;
  };
  const struct {
    const char* name;
    Bytes bytes;
    const char* message;
  } kCases[] = {
      {"unsorted entries",
       edit(
           [&](Bytes& b) {
             std::swap_ranges(b.begin() + entry(3), b.begin() + entry(4), b.begin() + entry(4));
           },
           true),
       "not sorted"},
      {"duplicate entry",
       edit(
           [&](Bytes& b) {
             std::copy(b.begin() + entry(6), b.begin() + entry(7), b.begin() + entry(7));
           },
           true),
       "not sorted"},
      {"count one too many", edit([](Bytes& b) { StoreU64(b.data() + 8, 11); }, true), "count"},
      {"count one too few", edit([](Bytes& b) { StoreU64(b.data() + 8, 9); }, true), "count"},
      {"count huge", edit([](Bytes& b) { StoreU64(b.data() + 8, ~uint64_t{0} / kEntry); }, true),
       "count"},
      {"checksum mismatch (sealed size changed)",
       edit([&](Bytes& b) { b[entry(5) + 33] ^= 1; }, false), "checksum mismatch"},
      {"checksum mismatch (checksum changed)", edit([](Bytes& b) { b[b.size() - 1] ^= 1; }, false),
       "checksum mismatch"},
      {"bad magic", edit([](Bytes& b) { b[0] = 'X'; }, true), "bad magic"},
      {"version 2", edit([](Bytes& b) { b[4] = 2; }, true), "unsupported version"},
      {"reserved byte", edit([](Bytes& b) { b[7] = 1; }, true), "reserved"},
      {"one entry missing", Bytes(good.begin(), good.end() - kEntry), "count"},
      {"one byte appended", edit([](Bytes& b) { b.push_back(0); }, false), "count"},
  };
  for (const auto& c : kCases) {
    for (bool in_memory : {false, true}) {
      SCOPED_TRACE(std::string(c.name) + (in_memory ? ", FromBytes" : ", Open"));
      ReadOutcome read;
      if (in_memory) {
        read = Drain(RefSetReader::FromBytes(c.bytes, "received refs"));
      } else {
        const std::string p = dir_.Sub("out/bad.refs");
        WriteFileOrDie(p, c.bytes);
        read = Drain(RefSetReader::Open(env(), p));
      }
      ASSERT_TRUE(HasCode(read.status, StatusCode::kDataLoss));
      EXPECT_THAT(read.status.message(), HasSubstr(c.message));
      EXPECT_THAT(read.status.message(), HasSubstr(in_memory ? "received refs" : "bad.refs"));
    }
  }
}

TEST_F(RefSetTest, EveryTruncationIsDataLoss) {
  const Bytes good = ReadFileOrDie(Build(TenEntries(), "a.refs"));
  for (size_t len = 0; len < good.size(); ++len) {
    SCOPED_TRACE("length " + std::to_string(len));
    ReadOutcome read = Drain(RefSetReader::FromBytes(Bytes(good.begin(), good.begin() + len), "t"));
    ASSERT_TRUE(HasCode(read.status, StatusCode::kDataLoss));
  }
}

TEST_F(RefSetTest, EveryFlippedByteIsDataLoss) {
  const Bytes good = ReadFileOrDie(Build(TenEntries(), "a.refs"));
  for (size_t i = 0; i < good.size(); ++i) {
    SCOPED_TRACE("byte " + std::to_string(i));
    Bytes bad = good;
    bad[i] ^= 0x08;
    ReadOutcome read = Drain(RefSetReader::FromBytes(bad, "t"));
    ASSERT_TRUE(HasCode(read.status, StatusCode::kDataLoss));
  }
}

TEST_F(RefSetTest, SummarizeReportsDamage) {
  const std::string path = Build(TenEntries(), "a.refs");
  Bytes bad = ReadFileOrDie(path);
  bad[kHeader + 2 * kEntry + 33] ^= 1;
  const std::string bad_path = dir_.Sub("out/bad.refs");
  WriteFileOrDie(bad_path, bad);
  EXPECT_TRUE(HasCode(RefSetReader::Summarize(env(), bad_path).status(), StatusCode::kDataLoss));
  EXPECT_TRUE(HasCode(RefSetReader::Summarize(env(), dir_.Sub("out/absent.refs")).status(),
                      StatusCode::kNotFound));
}

TEST_F(RefSetTest, AbandonedBuilderRemovesItsRuns) {
  {
    RefSetBuilder b(env(), tmp(), /*memory_budget=*/0);
    std::mt19937_64 rng(7);
    for (int i = 0; i < 5000; ++i) {
      const ChunkId id = RandomId(rng);
      ASSERT_TRUE(b.Add(id, SizeFor(id)).ok());
    }
    EXPECT_FALSE(ListDir(tmp()).empty());
  }
  EXPECT_TRUE(ListDir(tmp()).empty());
}

TEST_F(RefSetTest, FinishReplacesAnExistingObject) {
  RefSetSummaryInfo first, second;
  Build(TenEntries(), "a.refs", &first);
  ChunkId one{};
  one[5] = 9;
  const std::string path = Build({{one, 7}}, "a.refs", &second);
  EXPECT_NE(first.digest, second.digest);
  ReadOutcome read = Drain(RefSetReader::Open(env(), path));
  ASSERT_TRUE(read.status.ok());
  ASSERT_EQ(read.entries.size(), 1u);
  EXPECT_EQ(read.entries[0].id, one);
}

}  // namespace
}  // namespace ferry::snapshot
