#include "snapshot/delta.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/evp.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot::delta {
namespace {

using ::ferry::testing::HasCode;
using ::ferry::testing::SeededBytes;
using ::testing::HasSubstr;

// The fixed inputs of the worked examples in docs/format/delta.md.
std::array<uint8_t, 32> FixedKey() {
  std::array<uint8_t, 32> key;
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(i);
  return key;
}

// byte i = i mod 251
Bytes PatternBytes(size_t size) {
  Bytes out(size);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>(i % 251);
  return out;
}

Bytes Concat(std::initializer_list<ByteView> parts) {
  Bytes out;
  for (ByteView p : parts) PutBytes(out, p);
  return out;
}

ByteView Sub(const Bytes& b, size_t from, size_t n = SIZE_MAX) {
  return ByteView(b).subspan(from, std::min(n, b.size() - from));
}

class DeltaTest : public ::testing::Test {
 protected:
  DeltaTest() : id_hasher_(FixedKey()), hasher_(id_hasher_) {}

  ChunkId IdOf(ByteView plain) const { return id_hasher_.Compute(plain); }

  // Adds `plain` as a base of `index` and remembers its bytes for Rebuild.
  void AddBase(BaseIndex& index, const Bytes& plain) {
    const ChunkId id = IdOf(plain);
    store_[id] = plain;
    const Status s = index.Add(id, ComputeSignature(hasher_, plain));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  BaseIndex IndexOf(std::initializer_list<const Bytes*> bases) {
    BaseIndex index;
    for (const Bytes* b : bases) AddBase(index, *b);
    return index;
  }

  // Parses and applies `e` with the bases from the store, as a restore would.
  Bytes Rebuild(const Encoded& e) {
    Result<ParsedDelta> parsed = Parse(e.payload);
    EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
    if (!parsed.ok()) return {};
    EXPECT_EQ(parsed->bases, e.bases);
    std::vector<ByteView> bases;
    for (const ChunkId& id : parsed->bases) {
      EXPECT_EQ(store_.count(id), 1u);
      bases.emplace_back(store_[id]);
    }
    Bytes out = ToBytes("left over");
    const Status s = Apply(*parsed, bases, out);
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(out.size(), parsed->size);
    return out;
  }

  // Encodes `plain` against `index` (with a budget of its own size), checks
  // that it round-trips, and returns the encoding.
  Encoded EncodeAndCheck(const BaseIndex& index, const Bytes& plain) {
    std::optional<Encoded> e = Encode(hasher_, index, plain, plain.size());
    EXPECT_TRUE(e.has_value());
    if (!e) return {};
    EXPECT_TRUE(Rebuild(*e) == plain) << "round trip differs";
    EXPECT_LT(e->payload.size(), plain.size());
    EXPECT_GT(e->copied, 0u);
    EXPECT_LE(e->copied, plain.size());
    EXPECT_LE(e->bases.size(), kMaxBases);
    return *e;
  }

  size_t OpCount(const Encoded& e) {
    Result<ParsedDelta> parsed = Parse(e.payload);
    return parsed.ok() ? parsed->ops.size() : 0;
  }

  evp::HmacSha256 id_hasher_;
  BlockHasher hasher_;
  std::map<ChunkId, Bytes> store_;
};

// ---- Hashes and signatures ----------------------------------------------------

TEST_F(DeltaTest, WeakChecksumIsRsyncs) {
  // a = 97 + 98 + 99 = 0x126, b = 3*97 + 2*98 + 99 = 0x24a.
  EXPECT_EQ(WeakChecksum(AsBytes("abc")), 0x024a0126u);
  EXPECT_EQ(WeakChecksum({}), 0u);
  // Every length around the 16-byte steps of the vectorized sums, and long
  // runs of 0xff (the largest sums).
  for (const size_t size : {1, 2, 15, 16, 17, 31, 32, 33, 100, 2047, 2048, 2049, 5000, 70000}) {
    for (const bool ones : {false, true}) {
      SCOPED_TRACE(::testing::Message() << size << (ones ? " bytes of 0xff" : " random bytes"));
      const Bytes data = ones ? Bytes(size, 0xff) : SeededBytes(size, size);
      uint64_t a = 0, b = 0;
      for (size_t i = 0; i < data.size(); ++i) {
        a += data[i];
        b += (data.size() - i) * data[i];
      }
      EXPECT_EQ(WeakChecksum(data), static_cast<uint32_t>((a & 0xffff) | ((b & 0xffff) << 16)));
    }
  }
}

TEST_F(DeltaTest, StrongIsTruncatedHmacUnderTheDerivedBlockKey) {
  const evp::Digest256 block_key = id_hasher_.Compute(AsBytes("ferry delta block v1"));
  const evp::HmacSha256 block_hmac(block_key);
  const Bytes block = SeededBytes(2, kBlockSize);
  const evp::Digest256 full = block_hmac.Compute(block);
  StrongHash want;
  std::copy_n(full.begin(), kStrongSize, want.begin());
  EXPECT_EQ(hasher_.Strong(block), want);
  // Another chunk-id key gives other strong hashes.
  std::array<uint8_t, 32> other_key = FixedKey();
  other_key[0] ^= 1;
  const evp::HmacSha256 other_id_hasher(other_key);
  EXPECT_NE(BlockHasher(other_id_hasher).Strong(block), want);
}

TEST_F(DeltaTest, SignatureListsEveryFullBlock) {
  for (const uint32_t size : {0u, 1u, 2047u, 2048u, 2049u, 65536u, 65537u + 2047u}) {
    SCOPED_TRACE(size);
    const Bytes plain = SeededBytes(size, size);
    const Bytes sig = ComputeSignature(hasher_, plain);
    ASSERT_EQ(sig.size(), 8 + (size / kBlockSize) * 20);
    EXPECT_EQ(sig.size(), SignatureSize(size));
    EXPECT_TRUE(CheckSignature(sig).ok());
    EXPECT_EQ(sig[0], 1);
    EXPECT_EQ(sig[1], 11);
    EXPECT_EQ(sig[2], 0);
    EXPECT_EQ(sig[3], 0);
    EXPECT_EQ(LoadU32(sig.data() + 4), size);
    for (size_t i = 0; i < size / kBlockSize; ++i) {
      const ByteView block = Sub(plain, i * kBlockSize, kBlockSize);
      const uint8_t* entry = sig.data() + 8 + i * 20;
      EXPECT_EQ(LoadU32(entry), WeakChecksum(block));
      const StrongHash strong = hasher_.Strong(block);
      EXPECT_TRUE(std::equal(strong.begin(), strong.end(), entry + 4)) << "block " << i;
    }
  }
}

TEST_F(DeltaTest, CheckSignatureRejectsDamage) {
  const Bytes good = ComputeSignature(hasher_, SeededBytes(3, 3 * kBlockSize + 5));
  ASSERT_TRUE(CheckSignature(good).ok());
  auto with = [&](size_t at, uint8_t value) {
    Bytes b = good;
    b[at] = value;
    return b;
  };
  Bytes over_limit = good;
  StoreU32(over_limit.data() + 4, kMaxChunkSize + 1);
  Bytes longer_claim = good;
  StoreU32(longer_claim.data() + 4, 4 * kBlockSize);
  const struct {
    const char* name;
    Bytes bytes;
    const char* message;
  } cases[] = {
      {"empty", {}, "shorter than its 8-byte header"},
      {"short header", Bytes(good.begin(), good.begin() + 7), "shorter than its 8-byte header"},
      {"version 0", with(0, 0), "unknown version 0"},
      {"version 2", with(0, 2), "unknown version 2"},
      {"block size 2^12", with(1, 12), "block size 2^12"},
      {"reserved byte 2", with(2, 1), "reserved bytes set"},
      {"reserved byte 3", with(3, 0x80), "reserved bytes set"},
      {"length over the limit", over_limit, "over the limit"},
      {"one entry short", Bytes(good.begin(), good.end() - 20), "expected 68"},
      {"one byte short", Bytes(good.begin(), good.end() - 1), "expected 68"},
      {"one byte extra", Concat({good, Bytes{0}}), "expected 68"},
      {"length claims another block", longer_claim, "expected 88"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const Status s = CheckSignature(c.bytes);
    EXPECT_TRUE(HasCode(s, StatusCode::kDataLoss));
    EXPECT_THAT(s.message(), HasSubstr(c.message));
    BaseIndex index;
    EXPECT_TRUE(HasCode(index.Add(ChunkId{}, c.bytes), StatusCode::kDataLoss));
    EXPECT_TRUE(index.empty());
  }
}

// ---- BaseIndex ----------------------------------------------------------------

TEST_F(DeltaTest, AddingABaseTwiceIsANoOp) {
  const Bytes base = SeededBytes(4, 10000);
  BaseIndex index;
  EXPECT_TRUE(index.empty());
  AddBase(index, base);
  AddBase(index, base);
  EXPECT_FALSE(index.empty());
  EXPECT_EQ(index.bases(), 1u);
  const Encoded e = EncodeAndCheck(index, base);
  EXPECT_EQ(e.bases.size(), 1u);
  BaseIndex moved = std::move(index);
  EXPECT_EQ(moved.bases(), 1u);
}

// ---- Encode: round trips ------------------------------------------------------

TEST_F(DeltaTest, UnchangedChunkIsOneCopy) {
  const Bytes base = SeededBytes(5, 64 << 10);
  const BaseIndex index = IndexOf({&base});
  const Encoded e = EncodeAndCheck(index, base);
  EXPECT_EQ(e.copied, base.size());
  EXPECT_EQ(OpCount(e), 1u);
  EXPECT_EQ(e.payload.size(), 2 + 32 + 8 + 10u);
  ASSERT_EQ(e.bases.size(), 1u);
  EXPECT_EQ(e.bases[0], IdOf(base));
}

TEST_F(DeltaTest, OneByteOverwriteIn64KiBIsSmall) {
  const Bytes base = SeededBytes(6, 64 << 10);
  const BaseIndex index = IndexOf({&base});
  for (const size_t at : {size_t{0}, size_t{1}, size_t{2047}, size_t{2048}, size_t{30000},
                          base.size() - 2049, base.size() - 1}) {
    SCOPED_TRACE(at);
    Bytes plain = base;
    plain[at] ^= 0x5a;
    const Encoded e = EncodeAndCheck(index, plain);
    EXPECT_LT(e.payload.size(), 5u << 10);
    // One block of literal, the other 31 copied.
    EXPECT_EQ(e.copied, base.size() - kBlockSize);
    EXPECT_LE(e.payload.size(), 2 + 32 + 8 + 10 + 5 + kBlockSize + 10);
  }
}

TEST_F(DeltaTest, InsertsAndDeletionsRoundTrip) {
  const Bytes base = SeededBytes(7, 64 << 10);
  const BaseIndex index = IndexOf({&base});
  const Bytes insert = SeededBytes(70, 100);
  const struct {
    const char* name;
    Bytes plain;
  } cases[] = {
      {"insert in the middle", Concat({Sub(base, 0, 30000), insert, Sub(base, 30000)})},
      {"insert at the start", Concat({insert, base})},
      {"insert at the end", Concat({base, insert})},
      {"one byte at the start", Concat({Bytes{42}, base})},
      {"delete in the middle", Concat({Sub(base, 0, 10000), Sub(base, 10500)})},
      {"delete at the start", Concat({Sub(base, 1)})},
      {"delete at the end", Concat({Sub(base, 0, base.size() - 1)})},
      {"delete a whole block", Concat({Sub(base, 0, 4096), Sub(base, 6144)})},
      {"shifted by 1000", Concat({SeededBytes(71, 1000), Sub(base, 0, base.size() - 1000)})},
      {"overwrite at the start and end",
       Concat({SeededBytes(72, 10), Sub(base, 10, base.size() - 20), SeededBytes(73, 10)})},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const Encoded e = EncodeAndCheck(index, c.plain);
    // At most two blocks' worth of new bytes around each edit.
    EXPECT_LT(e.payload.size(), 5u << 10);
    EXPECT_GE(e.copied, base.size() - 3 * kBlockSize);
  }
}

TEST_F(DeltaTest, BlocksAreFoundAtEveryShift) {
  // The rolled checksum must equal the one computed afresh at any offset.
  const Bytes base = SeededBytes(19, 8 * kBlockSize);
  const BaseIndex index = IndexOf({&base});
  for (size_t shift = 1; shift <= 40; ++shift) {
    SCOPED_TRACE(shift);
    const Bytes plain = Concat({SeededBytes(shift, shift), base});
    const Encoded e = EncodeAndCheck(index, plain);
    EXPECT_EQ(e.copied, base.size());
    EXPECT_EQ(OpCount(e), 2u);
  }
}

TEST_F(DeltaTest, ContentMovedBetweenTwoBases) {
  const Bytes a = SeededBytes(8, 64 << 10);
  const Bytes b = SeededBytes(9, 64 << 10);
  const BaseIndex index = IndexOf({&a, &b});
  // Chunk boundaries moved: the new chunk is the end of a and the start of b.
  const Bytes plain = Concat({Sub(a, 40000), SeededBytes(90, 300), Sub(b, 0, 30000)});
  const Encoded e = EncodeAndCheck(index, plain);
  ASSERT_EQ(e.bases.size(), 2u);
  EXPECT_EQ(e.bases[0], IdOf(a));
  EXPECT_EQ(e.bases[1], IdOf(b));
  EXPECT_LT(e.payload.size(), 3 * kBlockSize + 300);
  // Interleaved pieces of both.
  const Bytes mixed = Concat({Sub(b, 0, 8192), Sub(a, 0, 8192), Sub(b, 8192, 8192), Sub(a, 100)});
  const Encoded m = EncodeAndCheck(index, mixed);
  EXPECT_EQ(m.bases.size(), 2u);
}

TEST_F(DeltaTest, ShortChunksAndBases) {
  const Bytes base = SeededBytes(10, 3000);
  const BaseIndex index = IndexOf({&base});
  // Shorter than a block: nothing can be copied.
  EXPECT_FALSE(Encode(hasher_, index, Sub(base, 0, 2047), 100000).has_value());
  EXPECT_FALSE(Encode(hasher_, index, {}, 100000).has_value());
  // Exactly the one full block of the base, then new bytes.
  const Bytes plain = Concat({Sub(base, 0, kBlockSize), SeededBytes(11, 10)});
  const Encoded e = EncodeAndCheck(index, plain);
  EXPECT_EQ(e.copied, kBlockSize);
  // A base shorter than a block has no blocks to match.
  const Bytes tiny = SeededBytes(12, 2047);
  const BaseIndex tiny_index = IndexOf({&tiny});
  EXPECT_FALSE(tiny_index.empty());
  EXPECT_FALSE(Encode(hasher_, tiny_index, Concat({tiny, tiny}), 100000).has_value());
  EXPECT_FALSE(Encode(hasher_, BaseIndex(), base, 100000).has_value());
}

TEST_F(DeltaTest, UnrelatedDataGivesNothing) {
  const Bytes base = SeededBytes(13, 64 << 10);
  const BaseIndex index = IndexOf({&base});
  EXPECT_FALSE(Encode(hasher_, index, SeededBytes(14, 64 << 10), 1 << 20).has_value());
}

TEST_F(DeltaTest, MaxPayloadIsRespected) {
  const Bytes base = SeededBytes(15, 64 << 10);
  const BaseIndex index = IndexOf({&base});
  Bytes plain = base;
  for (size_t at = 1000; at < plain.size(); at += 9000) plain[at] ^= 1;
  const Encoded e = EncodeAndCheck(index, plain);
  EXPECT_FALSE(Encode(hasher_, index, plain, e.payload.size()).has_value());
  EXPECT_FALSE(Encode(hasher_, index, plain, 100).has_value());
  EXPECT_FALSE(Encode(hasher_, index, plain, 0).has_value());
  const std::optional<Encoded> again = Encode(hasher_, index, plain, e.payload.size() + 1);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->payload, e.payload);
}

TEST_F(DeltaTest, AtMostKMaxBasesAreUsed) {
  std::vector<Bytes> bases;
  BaseIndex index;
  Bytes plain;
  for (uint64_t i = 0; i < kMaxBases + 4; ++i) {
    bases.push_back(SeededBytes(100 + i, 2 * kBlockSize));
    AddBase(index, bases.back());
    PutBytes(plain, bases.back());
  }
  EXPECT_EQ(index.bases(), kMaxBases + 4);
  const Encoded e = EncodeAndCheck(index, plain);
  EXPECT_EQ(e.bases.size(), kMaxBases);
  EXPECT_EQ(e.copied, kMaxBases * 2 * kBlockSize);
  for (size_t i = 0; i < kMaxBases; ++i) EXPECT_EQ(e.bases[i], IdOf(bases[i]));
}

TEST_F(DeltaTest, CopiesContinueInTheSameBase) {
  // Two bases with the same first 32 KiB: the copy stays in the one it started in.
  const Bytes common = SeededBytes(16, 32 << 10);
  const Bytes a = Concat({common, SeededBytes(17, 32 << 10)});
  const Bytes b = Concat({SeededBytes(18, 4096), common});
  const BaseIndex index = IndexOf({&a, &b});
  const Bytes plain = Concat({Sub(b, 0, 4096), common});
  const Encoded e = EncodeAndCheck(index, plain);
  EXPECT_EQ(OpCount(e), 1u);
  ASSERT_EQ(e.bases.size(), 1u);
  EXPECT_EQ(e.bases[0], IdOf(b));
  // Repetitive content (every block the same) still gives a single copy.
  const Bytes zeros(64 << 10, 0);
  const BaseIndex zero_index = IndexOf({&zeros});
  Bytes plain_zeros = zeros;
  plain_zeros.back() = 1;
  const Encoded z = EncodeAndCheck(zero_index, plain_zeros);
  EXPECT_EQ(OpCount(z), 2u);
  EXPECT_EQ(z.copied, zeros.size() - kBlockSize);
}

TEST_F(DeltaTest, RandomEditsRoundTrip) {
  std::mt19937_64 rng(20260101);
  int encoded = 0;
  constexpr int kIterations = 150;
  for (int iteration = 0; iteration < kIterations; ++iteration) {
    SCOPED_TRACE(iteration);
    const size_t size = kBlockSize + rng() % (150 << 10);
    const Bytes base = SeededBytes(rng(), size);
    Bytes plain = base;
    const int edits = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < edits; ++i) {
      const size_t at = rng() % (plain.size() + 1);
      const size_t len = 1 + rng() % 300;
      switch (rng() % 3) {
        case 0:  // overwrite
          for (size_t j = at; j < std::min(plain.size(), at + len); ++j) plain[j] ^= 0xff;
          break;
        case 1: {  // insert
          const Bytes ins = SeededBytes(rng(), len);
          plain.insert(plain.begin() + static_cast<ptrdiff_t>(at), ins.begin(), ins.end());
          break;
        }
        case 2:  // delete
          plain.erase(plain.begin() + static_cast<ptrdiff_t>(at),
                      plain.begin() + static_cast<ptrdiff_t>(std::min(plain.size(), at + len)));
          break;
      }
    }
    // A second base sometimes: the previous version split in two chunks.
    BaseIndex index;
    if (rng() % 2 == 0) {
      AddBase(index, base);
    } else {
      const size_t cut = rng() % (base.size() + 1);
      AddBase(index, Bytes(base.begin(), base.begin() + static_cast<ptrdiff_t>(cut)));
      AddBase(index, Bytes(base.begin() + static_cast<ptrdiff_t>(cut), base.end()));
    }
    const std::optional<Encoded> e = Encode(hasher_, index, plain, plain.size() + 1);
    if (!e) continue;
    ++encoded;
    EXPECT_TRUE(Rebuild(*e) == plain);
    EXPECT_LE(e->payload.size(), plain.size());
    EXPECT_LE(e->copied, plain.size());
  }
  // Most edited chunks keep blocks of their old version.
  EXPECT_GT(encoded, kIterations * 3 / 4);
}

// ---- Parse and Apply ----------------------------------------------------------

// Writes payload fields one by one, for hand-made (and broken) payloads.
struct PayloadWriter {
  Bytes b;
  PayloadWriter& Header(uint8_t version, uint8_t bases, uint32_t size, uint32_t ops) {
    PutU8(b, version);
    PutU8(b, bases);
    for (uint8_t i = 0; i < bases; ++i) b.insert(b.end(), 32, static_cast<uint8_t>(0xb0 + i));
    PutU32(b, size);
    PutU32(b, ops);
    return *this;
  }
  PayloadWriter& Copy(uint8_t base, uint32_t offset, uint32_t length) {
    PutU8(b, 1);
    PutU8(b, base);
    PutU32(b, offset);
    PutU32(b, length);
    return *this;
  }
  PayloadWriter& Literal(std::string_view bytes) {
    PutU8(b, 2);
    PutU32(b, static_cast<uint32_t>(bytes.size()));
    PutBytes(b, AsBytes(bytes));
    return *this;
  }
  PayloadWriter& Raw(Bytes bytes) {
    PutBytes(b, bytes);
    return *this;
  }
};

TEST_F(DeltaTest, ParseReadsAHandMadePayload) {
  const Bytes payload =
      PayloadWriter().Header(1, 2, 3 + 4 + 2, 3).Literal("abc").Copy(1, 10, 4).Copy(0, 0, 2).b;
  Result<ParsedDelta> d = Parse(payload);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(d->bases.size(), 2u);
  EXPECT_EQ(d->bases[1][0], 0xb1);
  EXPECT_EQ(d->size, 9u);
  ASSERT_EQ(d->ops.size(), 3u);
  EXPECT_EQ(d->ops[0].kind, Op::Kind::kLiteral);
  EXPECT_EQ(AsStringView(d->ops[0].literal), "abc");
  EXPECT_EQ(d->ops[1].kind, Op::Kind::kCopy);
  EXPECT_EQ(d->ops[1].base, 1);
  EXPECT_EQ(d->ops[1].offset, 10u);
  EXPECT_EQ(d->ops[1].length, 4u);
  const Bytes base0 = ToBytes("XY");
  const Bytes base1 = ToBytes("0123456789ABCDEF");
  const ByteView bases[] = {base0, base1};
  Bytes out;
  ASSERT_TRUE(Apply(*d, bases, out).ok());
  EXPECT_EQ(AsStringView(out), "abcABCDXY");
}

TEST_F(DeltaTest, ParseRejectsEveryMalformedPayload) {
  auto good = [] { return PayloadWriter().Header(1, 1, 5, 2).Literal("ab").Copy(0, 0, 3); };
  const Bytes valid = good().b;
  ASSERT_TRUE(Parse(valid).ok());
  Bytes over_limit = PayloadWriter().Header(1, 1, kMaxChunkSize + 1, 1).Copy(0, 0, 1).b;
  const struct {
    const char* name;
    Bytes bytes;
    const char* message;
  } cases[] = {
      {"empty", {}, "delta payload is empty"},
      {"version 0", PayloadWriter().Header(0, 1, 5, 2).Literal("ab").Copy(0, 0, 3).b,
       "unknown version 0"},
      {"version 2", PayloadWriter().Header(2, 1, 5, 2).Literal("ab").Copy(0, 0, 3).b,
       "unknown version 2"},
      {"no base count", Bytes{1}, "truncated in its header"},
      {"zero bases", PayloadWriter().Header(1, 0, 2, 1).Literal("ab").b,
       "names 0 bases, expected 1 to 16"},
      {"17 bases", PayloadWriter().Header(1, 17, 3, 1).Copy(0, 0, 3).b, "names 17 bases"},
      {"truncated id", Bytes(valid.begin(), valid.begin() + 2 + 31), "truncated in its base ids"},
      {"truncated size", Bytes(valid.begin(), valid.begin() + 2 + 32 + 3),
       "truncated in its header"},
      {"truncated op count", Bytes(valid.begin(), valid.begin() + 2 + 32 + 7),
       "truncated in its header"},
      {"size over the limit", over_limit, "over the limit"},
      {"op count larger than the bytes left",
       PayloadWriter().Header(1, 1, 5, 3).Literal("ab").Copy(0, 0, 3).b,
       "claims 3 ops, more than its 17 remaining bytes"},
      {"huge op count", PayloadWriter().Header(1, 1, 5, 0xffffffff).Literal("ab").b,
       "claims 4294967295 ops"},
      {"unknown op kind 0", PayloadWriter().Header(1, 1, 5, 2).Literal("ab").Raw(Bytes(10, 0)).b,
       "delta op 1 has unknown kind 0"},
      {"unknown op kind 3",
       PayloadWriter().Header(1, 1, 5, 2).Literal("ab").Raw({3, 0, 0, 0, 0, 0, 0, 0, 0, 0}).b,
       "delta op 1 has unknown kind 3"},
      {"base index out of range", PayloadWriter().Header(1, 1, 5, 2).Literal("ab").Copy(1, 0, 3).b,
       "delta op 1 copies from base 1 of 1"},
      {"zero-length copy",
       PayloadWriter().Header(1, 1, 5, 3).Literal("ab").Copy(0, 0, 0).Copy(0, 0, 3).b,
       "delta op 1 has zero length"},
      {"zero-length literal", PayloadWriter().Header(1, 1, 3, 2).Literal("").Copy(0, 0, 3).b,
       "delta op 0 has zero length"},
      {"literal past the end", PayloadWriter().Header(1, 1, 5, 1).Raw({2, 9, 0, 0, 0, 1, 2}).b,
       "literal of 9 bytes runs past the end"},
      {"literal length past the end",
       PayloadWriter().Header(1, 1, 10, 3).Literal("ab").Literal("cdefghi").Raw({2, 1, 0, 0}).b,
       "truncated at op 2"},
      {"truncated copy", PayloadWriter().Header(1, 1, 5, 1).Raw({1, 0, 0, 0, 0, 0, 0, 0, 0}).b,
       "truncated at op 0"},
      {"ops longer than size", PayloadWriter().Header(1, 1, 4, 2).Literal("ab").Copy(0, 0, 3).b,
       "cover more than the 4 result bytes"},
      {"ops shorter than size", PayloadWriter().Header(1, 1, 6, 2).Literal("ab").Copy(0, 0, 3).b,
       "delta ops cover 5 bytes, expected 6"},
      {"u32 overflow of the sum",
       PayloadWriter().Header(1, 1, 5, 2).Copy(0, 0, 0xffffffff).Copy(0, 0, 6).b,
       "cover more than the 5 result bytes"},
      {"trailing bytes", Concat({valid, Bytes{0}}), "1 trailing bytes"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Result<ParsedDelta> d = Parse(c.bytes);
    ASSERT_FALSE(d.ok());
    EXPECT_TRUE(HasCode(d.status(), StatusCode::kDataLoss));
    EXPECT_THAT(d.status().message(), HasSubstr(c.message));
  }
  // Every truncation of a valid payload is refused.
  for (size_t n = 0; n < valid.size(); ++n) {
    EXPECT_TRUE(HasCode(Parse(ByteView(valid).first(n)).status(), StatusCode::kDataLoss)) << n;
  }
}

TEST_F(DeltaTest, ApplyChecksBasesAndCopies) {
  const Bytes payload =
      PayloadWriter().Header(1, 2, 8, 3).Copy(0, 2, 4).Literal("-").Copy(1, 0, 3).b;
  Result<ParsedDelta> d = Parse(payload);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const Bytes six = ToBytes("012345");
  const Bytes three = ToBytes("abc");
  const Bytes two = ToBytes("ab");
  Bytes out;
  {
    const ByteView bases[] = {six, three};
    ASSERT_TRUE(Apply(*d, bases, out).ok());
    EXPECT_EQ(AsStringView(out), "2345-abc");
  }
  const struct {
    const char* name;
    std::vector<ByteView> bases;
    const char* message;
  } cases[] = {
      {"no bases", {}, "delta names 2 bases, 0 given"},
      {"one base", {six}, "delta names 2 bases, 1 given"},
      {"three bases", {six, three, three}, "delta names 2 bases, 3 given"},
      {"first copy past the end of base 0", {three, three}, "op 0 copies bytes 2..6 of base 0"},
      {"copy past the end of base 1", {six, two}, "op 2 copies bytes 0..3 of base 1"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    out = ToBytes("stale");
    const Status s = Apply(*d, c.bases, out);
    EXPECT_TRUE(HasCode(s, StatusCode::kDataLoss));
    EXPECT_THAT(s.message(), HasSubstr(c.message));
    EXPECT_TRUE(out.empty());
  }
  // An offset that wraps a u32 when added to the length.
  ParsedDelta wrap = *d;
  wrap.ops[0].offset = 0xfffffffe;
  const ByteView bases[] = {six, three};
  EXPECT_TRUE(HasCode(Apply(wrap, bases, out), StatusCode::kDataLoss));
}

// ---- Pinned bytes (docs/format/delta.md, "Worked example") --------------------

TEST_F(DeltaTest, PinnedSignatureBytes) {
  // Chunk-id key 00 01 .. 1f; plaintext byte i = i mod 251, 4100 bytes.
  const Bytes plain = PatternBytes(4100);
  const Bytes sig = ComputeSignature(hasher_, plain);
  ASSERT_EQ(sig.size(), 48u);
  // Header: version 1, block size 2^11, reserved, length 4100.
  EXPECT_EQ(HexEncode(ByteView(sig).first(8)), "010b000004100000");
  // First entry: weak b1 90 d7 84 (LE), strong 390be2d0…dc48.
  EXPECT_EQ(HexEncode(ByteView(sig).subspan(8, 20)), "84d790b1390be2d03a334edeff6d46791368dc48");
  EXPECT_EQ(HexEncode(ByteView(sig).subspan(28, 20)), "c4dd507e004ebe24e5661c502a08397c1cbdb16f");
  EXPECT_EQ(LoadU32(sig.data() + 8), WeakChecksum(ByteView(plain).first(kBlockSize)));
}

TEST_F(DeltaTest, PinnedPayloadBytes) {
  // Base: byte i = i mod 251, 2048 bytes (one block). New chunk: "Ferry!",
  // the base, ".".
  const Bytes base = PatternBytes(kBlockSize);
  const BaseIndex index = IndexOf({&base});
  const Bytes plain = Concat({AsBytes("Ferry!"), base, AsBytes(".")});
  const Encoded e = EncodeAndCheck(index, plain);
  EXPECT_EQ(HexEncode(IdOf(base)),
            "9e13f0c97a9c7b5ac868e639d50caed19f7b6ea0c1f9bef641dbc89d62c57853");
  EXPECT_EQ(e.copied, kBlockSize);
  EXPECT_EQ(HexEncode(e.payload),
            "0101"                                                              // version 1, 1 base
            "9e13f0c97a9c7b5ac868e639d50caed19f7b6ea0c1f9bef641dbc89d62c57853"  // base id
            "07080000"                                                          // size 2055
            "03000000"                                                          // 3 ops
            "0206000000466572727921"                                            // literal "Ferry!"
            "01000000000000080000"  // copy base 0, offset 0, length 2048
            "02010000002e");        // literal "."
}

}  // namespace
}  // namespace ferry::snapshot::delta
