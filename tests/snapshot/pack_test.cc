#include "snapshot/pack.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/env.h"
#include "core/evp.h"
#include "snapshot/keyset.h"
#include "snapshot/pack_format.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

namespace pf = pack_format;
using ::ferry::testing::ReadFileOrDie;
using ::ferry::testing::SeededBytes;
using ::ferry::testing::TempDir;
using ::ferry::testing::WriteFileOrDie;
using ::testing::HasSubstr;

using ::ferry::testing::HasCode;

struct TestChunk {
  ChunkId id{};
  Bytes sealed;
  KeyId key_id{};
  Bytes wrapped;
  evp::Digest256 Digest() const { return evp::Sha256(sealed); }
};

// Where the index and the footer checksum sit in a pack's bytes.
struct Trailer {
  size_t footer = 0;
  uint64_t index_offset = 0;
  uint32_t index_len = 0;
};
Trailer TrailerOf(const Bytes& pack) {
  Trailer t;
  t.footer = pack.size() - pf::kFooterSize;
  t.index_offset = LoadU64(pack.data() + t.footer);
  t.index_len = LoadU32(pack.data() + t.footer + 8);
  return t;
}

// SHA-256 of header || index || the footer's first 16 bytes, as the format says.
evp::Digest256 ExpectedChecksum(const Bytes& pack) {
  const Trailer t = TrailerOf(pack);
  Bytes covered(pack.begin(), pack.begin() + pf::kHeaderSize);
  covered.insert(covered.end(), pack.begin() + static_cast<std::ptrdiff_t>(t.index_offset),
                 pack.begin() + static_cast<std::ptrdiff_t>(t.index_offset + t.index_len));
  covered.insert(covered.end(), pack.begin() + static_cast<std::ptrdiff_t>(t.footer),
                 pack.begin() + static_cast<std::ptrdiff_t>(t.footer + 16));
  return evp::Sha256(covered);
}

// Rewrites the footer checksum after a deliberate edit of the index, so that
// the structural check under test is reached.
void FixChecksum(Bytes& pack) {
  const evp::Digest256 sum = ExpectedChecksum(pack);
  std::copy(sum.begin(), sum.end(),
            pack.begin() + static_cast<std::ptrdiff_t>(TrailerOf(pack).footer + 16));
}

// Pack contents need not be real sealed chunks: the pack layer treats them
// as opaque bytes. Chunks alternate between two keys.
std::vector<TestChunk> MakeChunks(size_t n, uint64_t seed, size_t max_len = 300) {
  std::vector<TestChunk> out;
  KeyId keys[2];
  Bytes wrapped[2];
  for (int k = 0; k < 2; ++k) {
    const Bytes b = SeededBytes(seed * 1000 + static_cast<uint64_t>(k), 16);
    std::copy(b.begin(), b.end(), keys[k].begin());
    wrapped[k] = SeededBytes(seed * 1000 + 10 + static_cast<uint64_t>(k), kWrappedDataKeySize);
  }
  for (size_t i = 0; i < n; ++i) {
    TestChunk c;
    const Bytes idb = SeededBytes(seed * 100000 + i, 32);
    std::copy(idb.begin(), idb.end(), c.id.begin());
    c.sealed = SeededBytes(seed * 100000 + 50000 + i, 1 + (i * 37) % max_len);
    c.key_id = keys[(i / 3) % 2];
    c.wrapped = wrapped[(i / 3) % 2];
    out.push_back(std::move(c));
  }
  return out;
}

class PackTest : public ::testing::Test {
 protected:
  Env& env() { return *Env::Default(); }

  // Writes `chunks` into a pack at `path` and returns Finish()'s result.
  PackContents WritePack(const std::string& path, const std::vector<TestChunk>& chunks) {
    Result<std::unique_ptr<PackWriter>> w = PackWriter::Create(env(), path);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    if (!w.ok()) return {};
    for (const TestChunk& c : chunks) {
      Status s = (*w)->Add(c.id, c.sealed, c.Digest(), c.key_id, c.wrapped);
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    EXPECT_EQ((*w)->entry_count(), chunks.size());
    Result<PackContents> contents = (*w)->Finish();
    EXPECT_TRUE(contents.ok()) << contents.status().ToString();
    return contents.ok() ? std::move(*contents) : PackContents{};
  }

  Result<PackContents> ReadBytes(const Bytes& bytes, bool verify) {
    const std::string path = dir_.Sub("edited-" + std::to_string(edits_++) + ".pack");
    WriteFileOrDie(path, bytes);
    return ReadPackIndex(env(), path, verify);
  }

  TempDir dir_;
  int edits_ = 0;
};

void ExpectSameContents(const PackContents& a, const PackContents& b) {
  ASSERT_EQ(a.entries.size(), b.entries.size());
  for (size_t i = 0; i < a.entries.size(); ++i) {
    SCOPED_TRACE("entry " + std::to_string(i));
    EXPECT_EQ(a.entries[i].id, b.entries[i].id);
    EXPECT_EQ(a.entries[i].offset, b.entries[i].offset);
    EXPECT_EQ(a.entries[i].length, b.entries[i].length);
    EXPECT_EQ(a.entries[i].digest, b.entries[i].digest);
  }
  ASSERT_EQ(a.keys.size(), b.keys.size());
  for (size_t i = 0; i < a.keys.size(); ++i) {
    EXPECT_EQ(a.keys[i].id, b.keys[i].id);
    EXPECT_EQ(a.keys[i].wrapped, b.keys[i].wrapped);
  }
  EXPECT_EQ(a.checksum, b.checksum);
  EXPECT_EQ(a.size, b.size);
}

TEST_F(PackTest, FinishedPackReadsBackWithTheSameIndex) {
  const std::vector<TestChunk> chunks = MakeChunks(25, 1);
  const std::string path = dir_.Sub("a.pack");
  const PackContents written = WritePack(path, chunks);
  ASSERT_EQ(written.entries.size(), chunks.size());
  ASSERT_EQ(written.keys.size(), 2u) << "each key is recorded once, at first use";
  EXPECT_EQ(written.keys[0].id, chunks[0].key_id);
  EXPECT_EQ(written.keys[1].id, chunks[3].key_id);

  for (bool verify : {true, false}) {
    SCOPED_TRACE(verify ? "verified" : "structural only");
    Result<PackContents> read = ReadPackIndex(env(), path, verify);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    ExpectSameContents(*read, written);
  }

  // The index points at the sealed bytes, each behind a frame of id + length.
  const Bytes file = ReadFileOrDie(path);
  EXPECT_EQ(file.size(), written.size);
  for (size_t i = 0; i < chunks.size(); ++i) {
    SCOPED_TRACE("chunk " + std::to_string(i));
    const PackEntry& e = written.entries[i];
    EXPECT_EQ(e.id, chunks[i].id);
    ASSERT_EQ(e.length, chunks[i].sealed.size());
    ASSERT_LE(e.offset + e.length, file.size());
    EXPECT_EQ(Bytes(file.begin() + static_cast<std::ptrdiff_t>(e.offset),
                    file.begin() + static_cast<std::ptrdiff_t>(e.offset + e.length)),
              chunks[i].sealed);
    const uint8_t* frame = file.data() + e.offset - pf::kEntryFrameSize;
    EXPECT_TRUE(std::equal(e.id.begin(), e.id.end(), frame));
    EXPECT_EQ(LoadU32(frame + 32), e.length);
    EXPECT_EQ(e.digest, evp::Sha256(chunks[i].sealed)) << "each entry carries its SHA-256";
  }
  // The footer checksum covers header, index and the footer's first 16 bytes.
  const Trailer t = TrailerOf(file);
  EXPECT_EQ(t.index_offset + t.index_len, t.footer);
  EXPECT_EQ(t.index_len, 4 + 2 * pf::kIndexKeySize + 4 + chunks.size() * pf::kIndexEntrySize);
  EXPECT_EQ(ExpectedChecksum(file), written.checksum);
  EXPECT_TRUE(std::equal(written.checksum.begin(), written.checksum.end(),
                         file.begin() + static_cast<std::ptrdiff_t>(t.footer + 16)));
}

TEST_F(PackTest, EmptyPackIsValid) {
  const std::string path = dir_.Sub("empty.pack");
  const PackContents written = WritePack(path, {});
  Result<PackContents> read = ReadPackIndex(env(), path, true);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_TRUE(read->entries.empty());
  EXPECT_TRUE(read->keys.empty());
  ExpectSameContents(*read, written);
}

TEST_F(PackTest, LargeChunksPassThroughTheWriteBuffer) {
  // Chunks larger than the writer's 1 MiB buffer are written directly.
  std::vector<TestChunk> chunks = MakeChunks(4, 2);
  chunks[1].sealed = SeededBytes(77, 3 << 20);
  chunks[2].sealed = SeededBytes(78, (1 << 20) - 10);
  const std::string path = dir_.Sub("big.pack");
  const PackContents written = WritePack(path, chunks);
  Result<PackContents> read = ReadPackIndex(env(), path, true);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ExpectSameContents(*read, written);
  const Bytes file = ReadFileOrDie(path);
  const PackEntry& e = read->entries[1];
  EXPECT_EQ(Bytes(file.begin() + static_cast<std::ptrdiff_t>(e.offset),
                  file.begin() + static_cast<std::ptrdiff_t>(e.offset + e.length)),
            chunks[1].sealed);
}

TEST_F(PackTest, FlippedDataByteFailsVerificationButPassesStructuralRead) {
  const std::vector<TestChunk> chunks = MakeChunks(5, 3);
  const std::string path = dir_.Sub("a.pack");
  const PackContents written = WritePack(path, chunks);
  Bytes file = ReadFileOrDie(path);
  file[written.entries[2].offset + 1] ^= 0x04;

  Result<PackContents> verified = ReadBytes(file, /*verify=*/true);
  EXPECT_TRUE(HasCode(verified.status(), StatusCode::kDataLoss));
  EXPECT_THAT(verified.status().message(), HasSubstr("entry 2"));
  EXPECT_THAT(verified.status().message(), HasSubstr("SHA-256 mismatch"));

  Result<PackContents> structural = ReadBytes(file, /*verify=*/false);
  ASSERT_TRUE(structural.ok()) << structural.status().ToString();
  ExpectSameContents(*structural, written);
}

TEST_F(PackTest, FrameThatDisagreesWithTheIndexFailsVerification) {
  const std::vector<TestChunk> chunks = MakeChunks(5, 3);
  const std::string path = dir_.Sub("a.pack");
  const PackContents written = WritePack(path, chunks);
  const Bytes good = ReadFileOrDie(path);
  for (size_t at : {size_t{0}, size_t{31}, size_t{32}, size_t{35}}) {
    SCOPED_TRACE("frame byte " + std::to_string(at));
    Bytes file = good;
    file[written.entries[3].offset - pf::kEntryFrameSize + at] ^= 0x01;
    Result<PackContents> verified = ReadBytes(file, /*verify=*/true);
    EXPECT_TRUE(HasCode(verified.status(), StatusCode::kDataLoss));
    EXPECT_THAT(verified.status().message(), HasSubstr("entry 3 frame does not match"));
  }
}

TEST_F(PackTest, WrongDigestFromTheCallerIsCaughtByVerification) {
  const std::string path = dir_.Sub("a.pack");
  Result<std::unique_ptr<PackWriter>> w = PackWriter::Create(env(), path);
  ASSERT_TRUE(w.ok());
  const TestChunk c = MakeChunks(1, 11)[0];
  evp::Digest256 wrong = c.Digest();
  wrong[0] ^= 1;
  ASSERT_TRUE((*w)->Add(c.id, c.sealed, wrong, c.key_id, c.wrapped).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  EXPECT_TRUE(ReadPackIndex(env(), path, false).ok());
  EXPECT_TRUE(HasCode(ReadPackIndex(env(), path, true).status(), StatusCode::kDataLoss));
}

TEST_F(PackTest, MoreKeysThanAPackMayHoldAreRefused) {
  const std::string path = dir_.Sub("a.pack");
  Result<std::unique_ptr<PackWriter>> w = PackWriter::Create(env(), path);
  ASSERT_TRUE(w.ok());
  const TestChunk c = MakeChunks(1, 12)[0];
  for (uint32_t k = 0; k < pf::kMaxKeysPerPack; ++k) {
    KeyId key{};
    StoreU32(key.data(), k);
    ASSERT_TRUE((*w)->Add(c.id, c.sealed, c.Digest(), key, c.wrapped).ok()) << k;
  }
  KeyId one_more{};
  StoreU32(one_more.data(), pf::kMaxKeysPerPack);
  EXPECT_TRUE(HasCode((*w)->Add(c.id, c.sealed, c.Digest(), one_more, c.wrapped),
                      StatusCode::kResourceExhausted));
  KeyId known{};
  StoreU32(known.data(), 7);
  EXPECT_TRUE((*w)->Add(c.id, c.sealed, c.Digest(), known, c.wrapped).ok())
      << "a key already in the pack is still fine";
  Result<PackContents> contents = (*w)->Finish();
  ASSERT_TRUE(contents.ok()) << contents.status().ToString();
  Result<PackContents> read = ReadPackIndex(env(), path, true);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->keys.size(), pf::kMaxKeysPerPack);
  EXPECT_EQ(read->entries.size(), size_t{pf::kMaxKeysPerPack} + 1);
}

TEST_F(PackTest, EveryFlippedByteIsDataLossWhenVerifying) {
  const std::vector<TestChunk> chunks = MakeChunks(3, 4, 40);
  const std::string path = dir_.Sub("a.pack");
  WritePack(path, chunks);
  const Bytes file = ReadFileOrDie(path);
  for (size_t i = 0; i < file.size(); ++i) {
    SCOPED_TRACE("byte " + std::to_string(i) + " of " + std::to_string(file.size()));
    Bytes bad = file;
    bad[i] ^= 0x20;
    Result<PackContents> r = ReadBytes(bad, true);
    ASSERT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
    EXPECT_THAT(r.status().message(), HasSubstr("edited-")) << "the message names the pack";
  }
}

TEST_F(PackTest, EveryTruncationIsDataLoss) {
  const std::vector<TestChunk> chunks = MakeChunks(3, 5, 40);
  const std::string path = dir_.Sub("a.pack");
  WritePack(path, chunks);
  const Bytes file = ReadFileOrDie(path);
  for (size_t len = 0; len < file.size(); ++len) {
    for (bool verify : {true, false}) {
      SCOPED_TRACE("length " + std::to_string(len) + (verify ? ", verified" : ", structural"));
      Result<PackContents> r = ReadBytes(Bytes(file.begin(), file.begin() + len), verify);
      ASSERT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
    }
  }
}

TEST_F(PackTest, BadHeaderTrailerOrIndexIsDataLossEvenWithoutVerification) {
  const std::vector<TestChunk> chunks = MakeChunks(6, 6);
  const std::string path = dir_.Sub("a.pack");
  const PackContents written = WritePack(path, chunks);
  const Bytes file = ReadFileOrDie(path);
  const Trailer t = TrailerOf(file);
  ASSERT_EQ(t.index_offset + t.index_len, t.footer);
  const size_t index_at = static_cast<size_t>(t.index_offset);
  const size_t entries_at = index_at + 4 + written.keys.size() * pf::kIndexKeySize + 4;

  // Each edit returns the damaged bytes; `fix` recomputes the footer checksum
  // so that a structural check, not the checksum, has to catch it.
  auto edit = [&](auto&& fn, bool fix) {
    Bytes b = file;
    fn(b);
    if (fix) FixChecksum(b);
    return b;
  };
  auto set8 = [&](size_t off, uint8_t v, bool fix = false) {
    return edit([&](Bytes& b) { b[off] = v; }, fix);
  };
  auto set32 = [&](size_t off, uint32_t v, bool fix = false) {
    return edit([&](Bytes& b) { StoreU32(b.data() + off, v); }, fix);
  };
  auto set64 = [&](size_t off, uint64_t v, bool fix = false) {
    return edit([&](Bytes& b) { StoreU64(b.data() + off, v); }, fix);
  };
  auto set_index = [&](uint64_t off, uint32_t len, bool fix = false) {
    return edit(
        [&](Bytes& b) {
          StoreU64(b.data() + t.footer, off);
          StoreU32(b.data() + t.footer + 8, len);
        },
        fix);
  };
  const uint64_t huge = ~uint64_t{0};
  const struct {
    const char* name;
    Bytes bytes;
    const char* message;
  } kCases[] = {
      {"bad magic", set8(0, 'X'), "bad magic"},
      {"version 2", set8(4, 2), "unsupported version"},
      {"reserved header byte", set8(6, 1), "reserved header"},
      {"reserved header byte (checksum fixed)", set8(7, 1, true), "reserved header"},
      {"end magic", set8(file.size() - 8, 'X'), "end marker"},
      {"footer version", set8(file.size() - 4, 2), "footer version"},
      {"footer reserved byte", set8(file.size() - 1, 1), "footer version or reserved"},
      {"footer reserved word", set32(t.footer + 12, 1), "reserved footer"},
      {"footer checksum", set8(t.footer + 20, file[t.footer + 20] ^ 1), "checksum mismatch"},
      {"index offset one too far", set64(t.footer, t.index_offset + 1),
       "does not end at the footer"},
      {"index offset one too early", set64(t.footer, t.index_offset - 1),
       "does not end at the footer"},
      {"index offset inside the header", set_index(4, static_cast<uint32_t>(t.footer - 4)),
       "does not end at the footer"},
      {"index offset huge", set64(t.footer, huge - 3), "does not end at the footer"},
      {"index offset wraps around with its length",
       set_index(huge - 9, static_cast<uint32_t>(t.index_len + 10 + t.index_offset)),
       "does not end at the footer"},
      {"index length one too long", set32(t.footer + 8, t.index_len + 1),
       "does not end at the footer"},
      {"index length zero", set32(t.footer + 8, 0), "does not end at the footer"},
      {"index moved earlier consistently (checksum fixed)",
       set_index(t.index_offset - 36, t.index_len + 36, true), ""},
      {"index byte flipped", set8(entries_at + 50, file[entries_at + 50] ^ 1), "checksum mismatch"},
      {"key count too large", set32(index_at, pf::kMaxKeysPerPack + 1, true), "key table"},
      {"key count beyond the index", set32(index_at, 1000, true), "key table"},
      {"entry count one too many",
       set32(entries_at - 4, static_cast<uint32_t>(chunks.size() + 1), true), "wrong length"},
      {"entry offset lies", set64(entries_at + 32, written.entries[0].offset + 1, true),
       "out of bounds"},
      {"entry length lies", set32(entries_at + 40, written.entries[0].length + 1, true),
       "out of bounds"},
      {"entry length over the limit", set32(entries_at + 40, kMaxChunkSize + 1025, true),
       "out of bounds"},
      {"last entry length short",
       set32(entries_at + (chunks.size() - 1) * pf::kIndexEntrySize + 40,
             written.entries.back().length - 1, true),
       "do not fill"},
  };
  for (const auto& c : kCases) {
    for (bool verify : {false, true}) {
      SCOPED_TRACE(std::string(c.name) + (verify ? ", verified" : ", structural"));
      Result<PackContents> r = ReadBytes(c.bytes, verify);
      ASSERT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
      EXPECT_THAT(r.status().message(), HasSubstr(c.message));
    }
  }
}

TEST_F(PackTest, AbandonRemovesTheTemporaryFile) {
  const std::string path = dir_.Sub("tmp.pack");
  Result<std::unique_ptr<PackWriter>> w = PackWriter::Create(env(), path);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  const std::vector<TestChunk> chunks = MakeChunks(3, 7);
  for (const TestChunk& c : chunks)
    ASSERT_TRUE((*w)->Add(c.id, c.sealed, c.Digest(), c.key_id, c.wrapped).ok());
  ASSERT_TRUE(*env().FileExists(path));
  (*w)->Abandon();
  EXPECT_FALSE(*env().FileExists(path));
}

TEST_F(PackTest, UnfinishedWriterRemovesItsFileOnDestruction) {
  const std::string path = dir_.Sub("tmp.pack");
  {
    Result<std::unique_ptr<PackWriter>> w = PackWriter::Create(env(), path);
    ASSERT_TRUE(w.ok());
    const TestChunk c = MakeChunks(1, 8)[0];
    ASSERT_TRUE((*w)->Add(c.id, c.sealed, c.Digest(), c.key_id, c.wrapped).ok());
  }
  EXPECT_FALSE(*env().FileExists(path));
}

TEST_F(PackTest, FinishedPackSurvivesTheWriter) {
  const std::string path = dir_.Sub("a.pack");
  WritePack(path, MakeChunks(2, 9));
  EXPECT_TRUE(*env().FileExists(path));
}

TEST_F(PackTest, WriterRefusesMisuse) {
  const std::string path = dir_.Sub("a.pack");
  Result<std::unique_ptr<PackWriter>> w = PackWriter::Create(env(), path);
  ASSERT_TRUE(w.ok());
  const TestChunk c = MakeChunks(1, 10)[0];
  EXPECT_TRUE(HasCode((*w)->Add(c.id, c.sealed, c.Digest(), c.key_id, Bytes(95, 0)),
                      StatusCode::kInvalidArgument))
      << "wrapped key of the wrong size";
  EXPECT_TRUE(
      HasCode((*w)->Add(c.id, Bytes(kMaxChunkSize + 1025, 0), c.Digest(), c.key_id, c.wrapped),
              StatusCode::kInvalidArgument))
      << "sealed chunk over the limit";
  ASSERT_TRUE((*w)->Add(c.id, c.sealed, c.Digest(), c.key_id, c.wrapped).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  EXPECT_FALSE((*w)->Add(c.id, c.sealed, c.Digest(), c.key_id, c.wrapped).ok())
      << "add after finish";
  EXPECT_FALSE((*w)->Finish().ok()) << "finish twice";
  Result<PackContents> read = ReadPackIndex(env(), path, true);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->entries.size(), 1u) << "refused adds left no trace";

  EXPECT_TRUE(HasCode(PackWriter::Create(env(), path).status(), StatusCode::kAlreadyExists))
      << "an existing file is never overwritten";
  EXPECT_TRUE(ReadPackIndex(env(), path, true).ok()) << "nor removed";
}

TEST_F(PackTest, PackOverTheSizeLimitIsRefusedBeforeReading) {
  const std::string path = dir_.Sub("huge.pack");
  WriteFileOrDie(path, Bytes(100, 0));
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(pf::kMaxPackSize + 1)), 0);  // sparse
  Result<PackContents> r = ReadPackIndex(env(), path, false);
  EXPECT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
  EXPECT_THAT(r.status().message(), HasSubstr("1 GiB"));
}

TEST_F(PackTest, MissingPackIsNotFound) {
  EXPECT_TRUE(
      HasCode(ReadPackIndex(env(), dir_.Sub("absent.pack"), true).status(), StatusCode::kNotFound));
}

}  // namespace
}  // namespace ferry::snapshot
