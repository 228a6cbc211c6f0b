#include "snapshot/file_cache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/env.h"
#include "snapshot/delta.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

using ::ferry::testing::ReadFileOrDie;
using ::ferry::testing::TempDir;
using ::ferry::testing::WriteFileOrDie;
using ::testing::HasSubstr;

// Path components joined by NUL, as the capture walk builds keys.
std::string Key(std::initializer_list<std::string> parts) {
  std::string k;
  for (const std::string& p : parts) {
    if (!k.empty()) k.push_back('\0');
    k += p;
  }
  return k;
}

CachedFile Record(const std::string& key, uint64_t seed, size_t n_chunks = 2, size_t n_extents = 0,
                  size_t n_xattrs = 0) {
  CachedFile f;
  f.key = key;
  f.ino = 1000 + seed;
  f.size = 4096 * seed + 7;
  f.mtime_ns = -1234567890123 + static_cast<int64_t>(seed);  // before 1970 is allowed
  f.ctime_ns = 1700000000000000000 + static_cast<int64_t>(seed);
  for (size_t i = 0; i < n_chunks; ++i) {
    CachedChunk c;
    for (size_t b = 0; b < c.id.size(); ++b) c.id[b] = static_cast<uint8_t>(seed * 31 + i + b);
    c.plain_size = static_cast<uint32_t>(1000 + i);
    c.sealed_size = static_cast<uint32_t>(1052 + i);
    f.chunks.push_back(c);
  }
  for (size_t i = 0; i < n_extents; ++i) f.extents.emplace_back(i * 8192, 4096);
  for (size_t i = 0; i < n_xattrs; ++i) {
    // Values are bytes: NUL and high bytes included, one empty value.
    f.xattrs.emplace_back("user.attr" + std::to_string(i),
                          i == 0 ? std::string() : std::string("v\0\xff", 3) + std::string(i, 'x'));
  }
  return f;
}

void ExpectSameRecord(const CachedFile& got, const CachedFile& want) {
  EXPECT_EQ(got.key, want.key);
  EXPECT_EQ(got.ino, want.ino);
  EXPECT_EQ(got.size, want.size);
  EXPECT_EQ(got.mtime_ns, want.mtime_ns);
  EXPECT_EQ(got.ctime_ns, want.ctime_ns);
  ASSERT_EQ(got.chunks.size(), want.chunks.size());
  for (size_t i = 0; i < got.chunks.size(); ++i) {
    EXPECT_EQ(got.chunks[i].id, want.chunks[i].id);
    EXPECT_EQ(got.chunks[i].plain_size, want.chunks[i].plain_size);
    EXPECT_EQ(got.chunks[i].sealed_size, want.chunks[i].sealed_size);
  }
  EXPECT_EQ(got.extents, want.extents);
  EXPECT_EQ(got.xattrs, want.xattrs);
}

class FileCacheTest : public ::testing::Test {
 protected:
  FileCacheTest() : path_(dir_.Sub("files.cache")) {
    for (size_t i = 0; i < identity_.keyset_id.size(); ++i) {
      identity_.keyset_id[i] = static_cast<uint8_t>(i + 1);
    }
  }
  Env& env() { return *Env::Default(); }

  void WriteCache(const std::vector<CachedFile>& records) {
    Result<std::unique_ptr<FileCacheWriter>> w = FileCacheWriter::Create(env(), path_, identity_);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    for (const CachedFile& r : records) {
      Status s = (*w)->Add(r);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    Status s = (*w)->Commit();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  std::unique_ptr<FileCacheReader> Open(std::string* why, const FileCacheIdentity* id = nullptr) {
    return FileCacheReader::Open(env(), path_, id ? *id : identity_, why);
  }
  // Writes `records`, reopens the cache and finds each of them, in order.
  void ExpectRoundTrip(const std::vector<CachedFile>& records) {
    WriteCache(records);
    std::unique_ptr<FileCacheReader> r = Open(nullptr);
    ASSERT_NE(r, nullptr);
    for (const CachedFile& want : records) {
      const CachedFile* f = r->Find(want.key);
      ASSERT_NE(f, nullptr) << want.key;
      ExpectSameRecord(*f, want);
    }
  }

  TempDir dir_;
  std::string path_;
  FileCacheIdentity identity_;
};

TEST_F(FileCacheTest, RecordsAreFoundInOrderAndUnknownKeysMiss) {
  const std::vector<CachedFile> records = {
      Record(Key({"a"}), 1),
      Record(Key({"a", "b"}), 2, 0),  // empty file: no chunks
      Record(Key({"a", "b", "c"}), 3, 3, 2, 3),
      Record(Key({"a", "d"}), 4),
      Record(Key({"b\nnewline"}), 5),
      Record(Key({"\xff"}), 6),
  };
  WriteCache(records);
  std::string why;
  std::unique_ptr<FileCacheReader> r = Open(&why);
  EXPECT_EQ(why, "") << "a usable cache gives no reason";

  const struct {
    std::string key;
    int record;  // index into records, or -1 for a miss
  } kLookups[] = {
      {Key({"0"}), -1},     {Key({"a"}), 0},           {Key({"a", "a"}), -1},
      {Key({"a", "b"}), 1}, {Key({"a", "b", "c"}), 2}, {Key({"a", "c"}), -1},
      {Key({"a", "d"}), 3}, {Key({"b"}), -1},          {Key({"b\nnewline"}), 4},
      {Key({"c"}), -1},     {Key({"\xff"}), 5},        {Key({"\xff", "x"}), -1},
  };
  for (const auto& l : kLookups) {
    SCOPED_TRACE("key '" + l.key + "'");
    const CachedFile* f = r->Find(l.key);
    if (l.record < 0) {
      EXPECT_EQ(f, nullptr);
    } else {
      ASSERT_NE(f, nullptr);
      ExpectSameRecord(*f, records[static_cast<size_t>(l.record)]);
    }
  }
  EXPECT_EQ(r->Find(Key({"\xff\xff"})), nullptr) << "past the end";
}

TEST_F(FileCacheTest, FindSkipsOverKeysThatAreNotAsked) {
  std::vector<CachedFile> records;
  for (int i = 0; i < 5000; ++i) {
    char name[16];
    std::snprintf(name, sizeof(name), "f%06d", i * 2);  // even numbers only
    records.push_back(Record(Key({"dir", name}), static_cast<uint64_t>(i), 3));
  }
  WriteCache(records);  // ~0.9 MB: the reader refills its buffer several times
  std::unique_ptr<FileCacheReader> r = Open(nullptr);
  for (int i = 0; i < 5000; i += 7) {
    char odd[16], even[16];
    std::snprintf(odd, sizeof(odd), "f%06d", i * 2 - 1);
    std::snprintf(even, sizeof(even), "f%06d", i * 2);
    SCOPED_TRACE(even);
    if (i > 0) {
      EXPECT_EQ(r->Find(Key({"dir", odd})), nullptr);
    }
    const CachedFile* f = r->Find(Key({"dir", even}));
    ASSERT_NE(f, nullptr);
    ExpectSameRecord(*f, records[static_cast<size_t>(i)]);
  }
}

TEST_F(FileCacheTest, RecordLargerThanTheReadBufferIsRead) {
  const std::vector<CachedFile> records = {
      Record(Key({"a"}), 1),
      Record(Key({"huge"}), 2, 20000, 3000, 50),  // ~850 KB in one record
      Record(Key({"z"}), 3),
  };
  ExpectRoundTrip(records);
}

// The writer buffers 1 MiB; a record larger than that goes to the file
// whole, between buffered ones, and the checksum still covers every byte.
TEST_F(FileCacheTest, RecordLargerThanTheWriteBufferIsWrittenWhole) {
  std::vector<CachedFile> records;
  for (int i = 0; i < 300; ++i)
    records.push_back(Record(Key({"a", std::to_string(1000 + i)}), 10 + i, 80));
  records.push_back(Record(Key({"b"}), 2, 40000));  // ~1.6 MB in one record
  records.push_back(Record(Key({"c"}), 3));
  ExpectRoundTrip(records);
}

TEST_F(FileCacheTest, EmptyCacheIsUsableAndHasNoHits) {
  WriteCache({});
  std::string why = "unchanged";
  std::unique_ptr<FileCacheReader> r = Open(&why);
  EXPECT_EQ(why, "unchanged");
  EXPECT_EQ(r->Find(Key({"a"})), nullptr);
}

TEST_F(FileCacheTest, CacheOfAnotherKeysetOrChunkerIsUnused) {
  WriteCache({Record(Key({"a"}), 1), Record(Key({"b"}), 2)});
  FileCacheIdentity other_keyset = identity_;
  other_keyset.keyset_id[15] ^= 1;
  FileCacheIdentity other_min = identity_;
  other_min.params.min_size /= 2;
  FileCacheIdentity other_avg = identity_;
  other_avg.params.avg_size *= 2;
  other_avg.params.max_size *= 2;
  FileCacheIdentity other_max = identity_;
  other_max.params.max_size += 1;
  const struct {
    const char* what;
    const FileCacheIdentity* identity;
  } kCases[] = {
      {"keyset id", &other_keyset},
      {"chunker min_size", &other_min},
      {"chunker avg_size", &other_avg},
      {"chunker max_size", &other_max},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    std::string why;
    std::unique_ptr<FileCacheReader> r = Open(&why, c.identity);
    ASSERT_NE(r, nullptr);
    EXPECT_THAT(why, HasSubstr("another keyset"));
    EXPECT_EQ(r->Find(Key({"a"})), nullptr);
    EXPECT_EQ(r->Find(Key({"b"})), nullptr);
  }
}

TEST_F(FileCacheTest, AbsentCacheIsUnused) {
  std::string why;
  std::unique_ptr<FileCacheReader> r = Open(&why);
  ASSERT_NE(r, nullptr);
  EXPECT_THAT(why, HasSubstr("no cache"));
  EXPECT_EQ(r->Find(Key({"a"})), nullptr);
}

TEST_F(FileCacheTest, DamagedRecordIsCaughtByTheChecksum) {
  WriteCache({Record(Key({"a"}), 1), Record(Key({"b"}), 2)});
  Bytes file = ReadFileOrDie(path_);
  file[36 + 12] ^= 1;  // the first record's size: plausible, and wrong
  WriteFileOrDie(path_, file);
  std::string why;
  std::unique_ptr<FileCacheReader> r = Open(&why);
  EXPECT_THAT(why, HasSubstr("checksum"));
  EXPECT_EQ(r->Find(Key({"a"})), nullptr);
}

TEST_F(FileCacheTest, AnyDamageMeansNoHits) {
  WriteCache({Record(Key({"a"}), 1), Record(Key({"b"}), 2, 1, 1, 2)});
  const Bytes good = ReadFileOrDie(path_);
  for (size_t i = 0; i < good.size(); ++i) {
    SCOPED_TRACE("byte " + std::to_string(i));
    Bytes bad = good;
    bad[i] ^= 0x40;
    WriteFileOrDie(path_, bad);
    std::string why;
    std::unique_ptr<FileCacheReader> r = Open(&why);
    EXPECT_FALSE(why.empty());
    ASSERT_EQ(r->Find(Key({"a"})), nullptr);
    ASSERT_EQ(r->Find(Key({"b"})), nullptr);
  }
  for (size_t len = 0; len < good.size(); ++len) {
    SCOPED_TRACE("truncated to " + std::to_string(len));
    WriteFileOrDie(path_, ByteView(good.data(), len));
    std::string why;
    std::unique_ptr<FileCacheReader> r = Open(&why);
    EXPECT_FALSE(why.empty());
    ASSERT_EQ(r->Find(Key({"a"})), nullptr);
    ASSERT_EQ(r->Find(Key({"b"})), nullptr);
  }
}

TEST_F(FileCacheTest, OutOfOrderOrRepeatedKeysAreRefused) {
  Result<std::unique_ptr<FileCacheWriter>> w = FileCacheWriter::Create(env(), path_, identity_);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Add(Record(Key({"b"}), 1)).ok());
  EXPECT_FALSE((*w)->Add(Record(Key({"a"}), 2)).ok()) << "smaller key";
  EXPECT_FALSE((*w)->Add(Record(Key({"b"}), 3)).ok()) << "same key again";
  EXPECT_FALSE((*w)->Add(Record(Key({"a", "z"}), 4)).ok()) << "child of an earlier key";
  ASSERT_TRUE((*w)->Add(Record(Key({"b", "a"}), 5)).ok()) << "a child sorts after its parent";
  ASSERT_TRUE((*w)->Commit().ok());
  std::unique_ptr<FileCacheReader> r = Open(nullptr);
  const CachedFile* b = r->Find(Key({"b"}));
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->ino, Record("", 1).ino) << "refused records left no trace";
  ASSERT_NE(r->Find(Key({"b", "a"})), nullptr);
}

TEST_F(FileCacheTest, RecordBeyondTheReaderLimitsIsLeftUncached) {
  // More user xattrs than a reader accepts (1 MiB in all): that one file is
  // simply not cached; the records around it still are.
  CachedFile big = Record(Key({"b"}), 2);
  for (int i = 0; i < 20; ++i) {
    big.xattrs.emplace_back("user.big" + std::to_string(i), std::string(64 * 1024, 'x'));
  }
  WriteCache({Record(Key({"a"}), 1), big, Record(Key({"c"}), 3)});
  std::string why;
  std::unique_ptr<FileCacheReader> r = Open(&why);
  EXPECT_EQ(why, "");
  ASSERT_NE(r->Find(Key({"a"})), nullptr);
  EXPECT_EQ(r->Find(Key({"b"})), nullptr);
  const CachedFile* c = r->Find(Key({"c"}));
  ASSERT_NE(c, nullptr);
  ExpectSameRecord(*c, Record(Key({"c"}), 3));
}

TEST_F(FileCacheTest, UncommittedWriterLeavesNothingBehind) {
  WriteCache({Record(Key({"old"}), 1)});
  {
    Result<std::unique_ptr<FileCacheWriter>> w = FileCacheWriter::Create(env(), path_, identity_);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Add(Record(Key({"new"}), 2)).ok());
  }
  Result<std::vector<std::string>> names = env().ListDir(dir_.path());
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"files.cache"}) << "no temporary file remains";
  std::unique_ptr<FileCacheReader> r = Open(nullptr);
  EXPECT_NE(r->Find(Key({"old"})), nullptr) << "the previous cache is untouched";
}

TEST_F(FileCacheTest, CommitReplacesThePreviousCache) {
  WriteCache({Record(Key({"old"}), 1)});
  WriteCache({Record(Key({"new"}), 2)});
  std::unique_ptr<FileCacheReader> r = Open(nullptr);
  EXPECT_NE(r->Find(Key({"new"})), nullptr);
  EXPECT_EQ(r->Find(Key({"old"})), nullptr);
  Result<std::vector<std::string>> names = env().ListDir(dir_.path());
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names->size(), 1u);
}

// The delta block: an entry per chunk with its flags, a delta chunk's bases
// (with sealed sizes) and the signature; it round-trips through the cache.
TEST_F(FileCacheTest, DeltaEntriesRoundTripWithTheirBases) {
  CachedFile f = Record(Key({"d", "f"}), 3, /*n_chunks=*/3);
  f.chunks[1].plain_size = 5000;  // two full 2 KiB blocks in its signature
  std::vector<Bytes> sigs;
  for (const CachedChunk& c : f.chunks) {
    Bytes sig(delta::SignatureSize(c.plain_size), static_cast<uint8_t>(c.plain_size));
    sigs.push_back(sig);
  }
  const BaseList bases = {{f.chunks[0].id, 77}, {f.chunks[2].id, 88}};
  ChunkId content{};
  content.fill(0xcc);
  AppendDeltaEntry(f.delta, f.chunks[0].id, {}, sigs[0]);
  AppendDeltaEntry(f.delta, content, bases, sigs[1]);
  AppendDeltaEntry(f.delta, f.chunks[2].id, {}, sigs[2]);
  WriteCache({f, Record(Key({"e"}), 4)});
  std::string why;
  std::unique_ptr<FileCacheReader> r = Open(&why);
  const CachedFile* got = r->Find(f.key);
  ASSERT_NE(got, nullptr) << why;
  EXPECT_EQ(got->delta, f.delta);
  std::vector<DeltaEntry> entries;
  ASSERT_TRUE(ParseDeltaBlock(got->delta, got->chunks, entries));
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].flags, 0);
  EXPECT_EQ(entries[1].flags, kCachedChunkDelta);
  EXPECT_EQ(entries[1].bases, bases);
  EXPECT_EQ(entries[1].content_id, content);
  EXPECT_TRUE(entries[2].bases.empty());
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(Bytes(entries[i].signature.begin(), entries[i].signature.end()), sigs[i]);
  }
  const CachedFile* other = r->Find(Key({"e"}));
  ASSERT_NE(other, nullptr);
  EXPECT_TRUE(other->delta.empty()) << "a record without a block has none";
}

TEST_F(FileCacheTest, MalformedDeltaBlocksAreRefusedOrLeftOut) {
  CachedFile f = Record(Key({"f"}), 5, /*n_chunks=*/2);
  const Bytes sig0(delta::SignatureSize(f.chunks[0].plain_size), 1);
  const Bytes sig1(delta::SignatureSize(f.chunks[1].plain_size), 2);
  Bytes good;
  AppendDeltaEntry(good, f.chunks[0].id, {}, sig0);
  AppendDeltaEntry(good, f.chunks[1].id, {{f.chunks[0].id, 9}}, sig1);
  std::vector<DeltaEntry> entries;
  ASSERT_TRUE(ParseDeltaBlock(good, f.chunks, entries));
  const size_t second = 1 + sig0.size();
  const struct {
    const char* name;
    std::function<void(Bytes&)> damage;
  } kCases[] = {
      {"unknown flag bit", [](Bytes& b) { b[0] = 0x02; }},
      {"zero bases", [&](Bytes& b) { b[second + 1 + 32] = 0; }},
      {"seventeen bases", [&](Bytes& b) { b[second + 1 + 32] = 17; }},
      {"truncated", [](Bytes& b) { b.pop_back(); }},
      {"trailing byte", [](Bytes& b) { b.push_back(0); }},
      {"one entry only", [&](Bytes& b) { b.resize(second); }},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    Bytes bad = good;
    c.damage(bad);
    EXPECT_FALSE(ParseDeltaBlock(bad, f.chunks, entries));
    // The writer leaves out a block it could not read back; the record stays.
    f.delta = bad;
    WriteCache({f});
    std::string why;
    std::unique_ptr<FileCacheReader> r = Open(&why);
    const CachedFile* got = r->Find(f.key);
    ASSERT_NE(got, nullptr) << why;
    EXPECT_TRUE(got->delta.empty());
    EXPECT_EQ(got->chunks.size(), 2u);
  }
}

}  // namespace
}  // namespace ferry::snapshot
