#include "snapshot/chunker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

// The pseudo-random input of docs/format/chunking.md, "Worked example":
// SplitMix64 from `seed`, each 64-bit output stored little-endian.
Bytes SplitMix64Bytes(uint64_t seed, size_t size) {
  Bytes out(size);
  uint64_t state = seed;
  for (size_t i = 0; i < size; i += 8) {
    state += 0x9e3779b97f4a7c15;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    z ^= z >> 31;
    for (size_t j = 0; j < 8 && i + j < size; ++j) out[i + j] = static_cast<uint8_t>(z >> (8 * j));
  }
  return out;
}

// Chunk lengths when the whole input is in one buffer.
std::vector<size_t> ChunkAll(const Chunker& chunker, ByteView data) {
  std::vector<size_t> lengths;
  size_t start = 0;
  while (start < data.size()) {
    const size_t n = chunker.FindBoundary(data.subspan(start), /*at_eof=*/true);
    if (n == 0) {
      ADD_FAILURE() << "FindBoundary returned 0 at eof with " << data.size() - start
                    << " bytes left";
      break;
    }
    lengths.push_back(n);
    start += n;
  }
  return lengths;
}

// Chunk lengths when the caller sees the input a few bytes at a time, as a
// streaming reader does: `next_step()` says how many more bytes arrive each
// time FindBoundary asks for more (returns 0).
template <typename StepFn>
std::vector<size_t> ChunkStreaming(const Chunker& chunker, ByteView data, StepFn next_step) {
  std::vector<size_t> lengths;
  size_t start = 0;
  size_t available = 0;  // data[0, available) has arrived
  while (true) {
    const bool at_eof = available == data.size();
    const size_t n = chunker.FindBoundary(data.subspan(start, available - start), at_eof);
    if (n == 0) {
      if (at_eof) break;
      available = std::min(data.size(), available + std::max<size_t>(1, next_step()));
      continue;
    }
    EXPECT_LE(n, available - start);
    lengths.push_back(n);
    start += n;
  }
  EXPECT_EQ(start, data.size());
  return lengths;
}

// The cut rule of docs/format/chunking.md computed the slow, obvious way: the
// hash of each candidate from its 64-byte window, without a rolling state.
// The optimized chunker must agree with it everywhere.
std::vector<size_t> ReferenceChunkAll(const ChunkerParams& params, const GearTable& gear,
                                      ByteView data) {
  const unsigned avg_bits = static_cast<unsigned>(std::countr_zero(params.avg_size));
  const uint64_t mask_small = ~uint64_t{0} << (64 - (avg_bits + 2));
  const uint64_t mask_large = ~uint64_t{0} << (64 - (avg_bits - 2));
  std::vector<size_t> lengths;
  size_t start = 0;
  while (start < data.size()) {
    const size_t remaining = data.size() - start;
    size_t cut = std::min<size_t>(remaining, params.max_size);
    for (size_t n = params.min_size; n < std::min<size_t>(remaining + 1, params.max_size); ++n) {
      uint64_t h = 0;
      for (size_t j = 0; j < 64; ++j) h += gear[data[start + n - 1 - j]] << j;
      const uint64_t mask = n < params.avg_size ? mask_small : mask_large;
      if ((h & mask) == 0) {
        cut = n;
        break;
      }
    }
    lengths.push_back(cut);
    start += cut;
  }
  return lengths;
}

Bytes KeyZeroToThirtyOne() {
  Bytes key(32);
  std::iota(key.begin(), key.end(), uint8_t{0});
  return key;
}

const ChunkerParams kSmallParams{.min_size = 256, .avg_size = 1024, .max_size = 4096};

TEST(ChunkerParamsTest, DefaultsAndExtremesAreValid) {
  EXPECT_TRUE(ChunkerParams{}.Validate().ok());
  EXPECT_TRUE(kSmallParams.Validate().ok());
  EXPECT_TRUE(
      (ChunkerParams{.min_size = 64, .avg_size = 128, .max_size = 16u << 20}).Validate().ok());
}

TEST(ChunkerParamsTest, BadParamsAreRejectedNamingTheField) {
  struct Case {
    std::string name;
    ChunkerParams params;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"min below the hash window",
       {.min_size = 63, .avg_size = 1024, .max_size = 4096},
       "min_size"},
      {"min zero", {.min_size = 0, .avg_size = 1024, .max_size = 4096}, "min_size"},
      {"avg not a power of two", {.min_size = 256, .avg_size = 1000, .max_size = 4096}, "avg_size"},
      {"avg zero", {.min_size = 256, .avg_size = 0, .max_size = 4096}, "avg_size"},
      {"min equal to avg", {.min_size = 1024, .avg_size = 1024, .max_size = 4096}, "min_size"},
      {"min above avg", {.min_size = 2048, .avg_size = 1024, .max_size = 4096}, "min_size"},
      {"max equal to avg", {.min_size = 256, .avg_size = 1024, .max_size = 1024}, "max_size"},
      {"max below avg", {.min_size = 256, .avg_size = 1024, .max_size = 512}, "max_size"},
      {"max above 16 MiB",
       {.min_size = 256, .avg_size = 1024, .max_size = (16u << 20) + 1},
       "max_size"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Status s = c.params.Validate();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(c.field), std::string::npos) << s.message();
  }
}

TEST(ChunkerGearTableTest, KeyedTablesDifferFromTheDefaultAndBetweenKeys) {
  const Bytes key_a = KeyZeroToThirtyOne();
  Bytes key_b = key_a;
  key_b[31] ^= 1;
  const GearTable a = GearTableFromKey(key_a);
  const GearTable b = GearTableFromKey(key_b);
  EXPECT_NE(a, DefaultGearTable());
  EXPECT_NE(b, DefaultGearTable());
  EXPECT_NE(a, b);
  // The same key gives the same table, so every agent of a tenant cuts alike.
  EXPECT_EQ(GearTableFromKey(key_a), a);
  // Entries are distinct 64-bit values (a table with repeats would weaken the hash).
  std::vector<uint64_t> sorted(a.begin(), a.end());
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());
}

TEST(ChunkerGearTableTest, DefaultTableIsTheKeyedDerivationOfThePublicSeed) {
  EXPECT_EQ(GearTableFromKey(AsBytes("Ferry chunker v1 public gear key")), DefaultGearTable());
}

TEST(ChunkerGearTableTest, GoldenEntries) {
  // docs/format/chunking.md, "Gear table": a change here changes every cut point.
  const GearTable& d = DefaultGearTable();
  EXPECT_EQ(d[0], 0x1f9d74bd39706ab9u);
  EXPECT_EQ(d[1], 0x34c96f7d04cd12a6u);
  EXPECT_EQ(d[2], 0x717b98d5d9b66c34u);
  EXPECT_EQ(d[255], 0xc42475d73695d99du);
  const GearTable k = GearTableFromKey(KeyZeroToThirtyOne());
  EXPECT_EQ(k[0], 0x9127680d0e96645au);
  EXPECT_EQ(k[1], 0x361b225e1038e753u);
  EXPECT_EQ(k[2], 0x5add049e58b127dau);
  EXPECT_EQ(k[255], 0x988a76024b1b546bu);
}

// docs/format/chunking.md, "Worked example". These pin the algorithm: if one
// changes, every chunk boundary moved and dedup with existing data is lost.
TEST(ChunkerTest, GoldenCutPointsWithTheDefaultTable) {
  const Bytes data = SplitMix64Bytes(0, 1 << 20);
  EXPECT_EQ(ChunkAll(Chunker(ChunkerParams{}, DefaultGearTable()), data),
            (std::vector<size_t>{78793, 71185, 85165, 65704, 18183, 83414, 70110, 104743, 70274,
                                 68034, 112570, 81629, 113938, 24834}));
  EXPECT_EQ(ChunkAll(Chunker(kSmallParams, DefaultGearTable()), ByteView(data).first(16384)),
            (std::vector<size_t>{1494, 1046, 1287, 1145, 1070, 1054, 1162, 1501, 1031, 1703, 1152,
                                 1284, 1316, 139}));
}

TEST(ChunkerTest, GoldenCutPointsWithAKeyedTable) {
  const Bytes data = SplitMix64Bytes(0, 1 << 20);
  ASSERT_EQ(HexEncode(ByteView(data).first(8)), "afcd1d7b39a820e2");
  const GearTable gear = GearTableFromKey(KeyZeroToThirtyOne());
  EXPECT_EQ(ChunkAll(Chunker(ChunkerParams{}, gear), data),
            (std::vector<size_t>{41215, 68769, 69303, 75076, 67582, 76309, 97674, 82973, 71993,
                                 88385, 69464, 68942, 90460, 73625, 6806}));
  EXPECT_EQ(ChunkAll(Chunker(kSmallParams, gear), ByteView(data).first(16384)),
            (std::vector<size_t>{1254, 1260, 1243, 1187, 1381, 1172, 1538, 1621, 1098, 1749, 1050,
                                 1191, 640}));
}

TEST(ChunkerTest, ChunksStayWithinBoundsAndConcatenateToTheInput) {
  struct Case {
    std::string name;
    ChunkerParams params;
    Bytes data;
  };
  std::vector<Case> cases;
  cases.push_back({"default, random", {}, SplitMix64Bytes(1, 8 << 20)});
  cases.push_back({"default, compressible", {}, testing::CompressibleBytes(2, 8 << 20, 0.6)});
  cases.push_back({"default, zeros", {}, Bytes(3 << 20, 0)});
  cases.push_back({"default, shorter than min", {}, SplitMix64Bytes(3, 1000)});
  cases.push_back({"small, random", kSmallParams, SplitMix64Bytes(4, 1 << 20)});
  cases.push_back(
      {"small, compressible", kSmallParams, testing::CompressibleBytes(5, 1 << 20, 0.3)});
  cases.push_back({"tightest",
                   {.min_size = 64, .avg_size = 128, .max_size = 129},
                   SplitMix64Bytes(6, 1 << 16)});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Chunker chunker(c.params, DefaultGearTable());
    const std::vector<size_t> lengths = ChunkAll(chunker, c.data);
    ASSERT_FALSE(lengths.empty());
    for (size_t i = 0; i + 1 < lengths.size(); ++i) {
      EXPECT_GE(lengths[i], c.params.min_size) << "chunk " << i;
      EXPECT_LE(lengths[i], c.params.max_size) << "chunk " << i;
    }
    EXPECT_GE(lengths.back(), 1u);
    EXPECT_LE(lengths.back(), c.params.max_size);
    Bytes joined;
    size_t start = 0;
    for (size_t n : lengths) {
      PutBytes(joined, ByteView(c.data).subspan(start, n));
      start += n;
    }
    EXPECT_TRUE(joined == c.data);
  }
}

TEST(ChunkerTest, MatchesTheSpecComputedWindowByWindow) {
  struct Case {
    std::string name;
    ChunkerParams params;
    Bytes data;
  };
  std::vector<Case> cases;
  cases.push_back({"default, random", {}, SplitMix64Bytes(7, 2 << 20)});
  cases.push_back({"small, random", kSmallParams, SplitMix64Bytes(8, 1 << 19)});
  cases.push_back(
      {"small, compressible", kSmallParams, testing::CompressibleBytes(9, 1 << 19, 0.5)});
  cases.push_back({"odd sizes",
                   {.min_size = 100, .avg_size = 512, .max_size = 1001},
                   SplitMix64Bytes(10, 1 << 18)});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    for (const GearTable& gear : {DefaultGearTable(), GearTableFromKey(KeyZeroToThirtyOne())}) {
      EXPECT_EQ(ChunkAll(Chunker(c.params, gear), c.data),
                ReferenceChunkAll(c.params, gear, c.data));
    }
  }
}

TEST(ChunkerTest, CutsDoNotDependOnBuffering) {
  {
    SCOPED_TRACE("one more byte at a time");
    const Chunker chunker(kSmallParams, DefaultGearTable());
    const Bytes data = SplitMix64Bytes(11, 1 << 16);
    EXPECT_EQ(ChunkStreaming(chunker, data, [] { return 1; }), ChunkAll(chunker, data));
  }
  for (uint64_t seed : {12, 13, 14}) {
    SCOPED_TRACE("random buffer sizes, seed " + std::to_string(seed));
    const Chunker chunker(ChunkerParams{}, DefaultGearTable());
    const Bytes data = SplitMix64Bytes(seed, 4 << 20);
    std::mt19937_64 rng(seed);
    const std::vector<size_t> streamed =
        ChunkStreaming(chunker, data, [&rng] { return rng() % (300 * 1024); });
    EXPECT_EQ(streamed, ChunkAll(chunker, data));
  }
}

TEST(ChunkerTest, AnEditChangesOnlyTheChunksAroundIt) {
  const Chunker chunker(ChunkerParams{}, DefaultGearTable());
  const Bytes original = SplitMix64Bytes(15, 8 << 20);
  const std::vector<size_t> before = ChunkAll(chunker, original);
  ASSERT_GT(before.size(), 80u);
  struct Case {
    std::string name;
    size_t offset;
    size_t erase;
    Bytes insert;
  };
  const std::vector<Case> cases = {
      {"insert 5 bytes near the start", 100, 0, {1, 2, 3, 4, 5}},
      {"insert 1 byte at offset 0", 0, 0, {0xff}},
      {"insert 3 bytes in the middle", (4 << 20) + 12345, 0, {9, 9, 9}},
      {"delete 10 bytes in the middle", (5 << 20) + 777, 10, {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Bytes edited(original.begin(), original.begin() + static_cast<ptrdiff_t>(c.offset));
    PutBytes(edited, c.insert);
    edited.insert(edited.end(), original.begin() + static_cast<ptrdiff_t>(c.offset + c.erase),
                  original.end());
    const std::vector<size_t> after = ChunkAll(chunker, edited);
    // Chunks before the edit and, once the cuts re-align, after it are the same.
    const auto prefix = static_cast<size_t>(
        std::mismatch(before.begin(), before.end(), after.begin(), after.end()).first -
        before.begin());
    const auto suffix = static_cast<size_t>(
        std::mismatch(before.rbegin(), before.rend(), after.rbegin(), after.rend()).first -
        before.rbegin());
    EXPECT_LE(before.size() - std::min(before.size(), prefix + suffix), 2u)
        << "prefix " << prefix << " suffix " << suffix << " of " << before.size();
    EXPECT_LE(after.size() - std::min(after.size(), prefix + suffix), 2u);
  }
}

TEST(ChunkerTest, AverageChunkSizeIsNearTheTarget) {
  const Bytes data = SplitMix64Bytes(16, 64 << 20);
  for (const ChunkerParams& params :
       {ChunkerParams{}, ChunkerParams{.min_size = 2048, .avg_size = 8192, .max_size = 32768}}) {
    SCOPED_TRACE("avg_size " + std::to_string(params.avg_size));
    const std::vector<size_t> lengths = ChunkAll(Chunker(params, DefaultGearTable()), data);
    const double mean = static_cast<double>(data.size()) / static_cast<double>(lengths.size());
    EXPECT_GT(mean, 0.75 * params.avg_size);
    EXPECT_LT(mean, 1.25 * params.avg_size);
    // Normalized chunking keeps forced cuts at max_size rare.
    const auto at_max = std::count(lengths.begin(), lengths.end(), size_t{params.max_size});
    EXPECT_LT(static_cast<double>(at_max), 0.001 * static_cast<double>(lengths.size()) + 1);
  }
}

TEST(ChunkerTest, AsksForMoreDataUntilACutOrMaxSize) {
  // Every hash has its top bit set: no content-defined cut ever.
  GearTable never;
  never.fill(uint64_t{1} << 63);
  const Chunker chunker(kSmallParams, never);
  const Bytes data = SplitMix64Bytes(17, 10000);
  const ByteView v(data);
  EXPECT_EQ(chunker.FindBoundary(v.first(0), false), 0u);
  EXPECT_EQ(chunker.FindBoundary(v.first(0), true), 0u);
  EXPECT_EQ(chunker.FindBoundary(v.first(100), false), 0u);
  EXPECT_EQ(chunker.FindBoundary(v.first(100), true), 100u);
  EXPECT_EQ(chunker.FindBoundary(v.first(4095), false), 0u);
  EXPECT_EQ(chunker.FindBoundary(v.first(4095), true), 4095u);
  EXPECT_EQ(chunker.FindBoundary(v.first(4096), false), 4096u);
  EXPECT_EQ(chunker.FindBoundary(v.first(4096), true), 4096u);
  EXPECT_EQ(chunker.FindBoundary(v, false), 4096u);
  EXPECT_EQ(chunker.FindBoundary(v, true), 4096u);
}

TEST(ChunkerTest, CutsAtMinSizeWhenEveryPositionQualifies) {
  // With every entry 2^64 - 1, a full window hashes to 1: every candidate is a cut.
  GearTable always;
  always.fill(~uint64_t{0});
  const Chunker chunker(kSmallParams, always);
  const Bytes data = SplitMix64Bytes(18, 10000);
  const ByteView v(data);
  EXPECT_EQ(chunker.FindBoundary(v.first(255), false), 0u);
  EXPECT_EQ(chunker.FindBoundary(v.first(255), true), 255u);
  // A cut inside the data is final even before the end of the input is known.
  EXPECT_EQ(chunker.FindBoundary(v.first(256), false), 256u);
  EXPECT_EQ(chunker.FindBoundary(v, false), 256u);
  EXPECT_EQ(chunker.FindBoundary(v, true), 256u);
}

}  // namespace
}  // namespace ferry::snapshot
