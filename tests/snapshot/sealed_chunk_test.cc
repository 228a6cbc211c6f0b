#include "snapshot/sealed_chunk.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/evp.h"
#include "core/sodium.h"
#include "snapshot/sealed_chunk_format.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

namespace fmt = sealed_chunk_format;
using ::ferry::testing::CompressibleBytes;
using ::ferry::testing::SeededBytes;
using ::testing::HasSubstr;

using ::ferry::testing::HasCode;

constexpr evp::AeadSuite kSuites[] = {evp::AeadSuite::kAes256Gcm,
                                      evp::AeadSuite::kChaCha20Poly1305};

std::string SuiteName(evp::AeadSuite s) {
  return s == evp::AeadSuite::kAes256Gcm ? "aes-256-gcm" : "chacha20-poly1305";
}

DataKey NewKey() {
  DataKey k;
  k.id = sodium::RandomArray<16>();
  k.key = sodium::RandomSecret(32);
  return k;
}

class SealedChunkTest : public ::testing::Test {
 protected:
  SealedChunkTest() : id_key_(sodium::RandomSecret(32)), hasher_(id_key_.view()) {}

  // Seals `plain` and returns the sealed bytes (test fails on error).
  Bytes Seal(ByteView plain, const DataKey& key, evp::AeadSuite suite, bool compress = true) {
    Bytes out;
    SealOptions opts;
    opts.suite = suite;
    opts.compress = compress;
    Status s = SealChunk(hasher_.Compute(plain), plain, key, out, opts);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  SecretBytes id_key_;
  evp::HmacSha256 hasher_;
};

TEST_F(SealedChunkTest, RoundTripsUnderBothSuites) {
  const struct {
    const char* name;
    Bytes plain;
  } kInputs[] = {
      {"empty", Bytes()},
      {"one byte", Bytes{0x42}},
      {"63 zero bytes (below the LZ4 threshold)", Bytes(63, 0)},
      {"64 random bytes", SeededBytes(1, 64)},
      {"100 KiB random", SeededBytes(2, 100 * 1024)},
      {"100 KiB compressible", CompressibleBytes(3, 100 * 1024, 0.3)},
      {"1 MiB of zeros", Bytes(1 << 20, 0)},
  };
  const DataKey key = NewKey();
  for (evp::AeadSuite suite : kSuites) {
    for (const auto& in : kInputs) {
      SCOPED_TRACE(SuiteName(suite) + ", " + in.name);
      const ChunkId id = hasher_.Compute(in.plain);
      const Bytes sealed = Seal(in.plain, key, suite);
      Result<SealedChunkHeader> h = ParseSealedChunkHeader(sealed);
      ASSERT_TRUE(h.ok()) << h.status().ToString();
      EXPECT_EQ(h->version, fmt::kVersion);
      EXPECT_EQ(h->suite, suite);
      EXPECT_EQ(h->key_id, key.id);
      EXPECT_EQ(h->plain_len, in.plain.size());
      Bytes plain;
      Status s = OpenChunk(id, sealed, key.key, hasher_, plain);
      ASSERT_TRUE(s.ok()) << s.ToString();
      EXPECT_EQ(plain, in.plain);
    }
  }
}

TEST_F(SealedChunkTest, EmptyChunkRoundTripsAsHeaderAndTagOnly) {
  for (evp::AeadSuite suite : kSuites) {
    SCOPED_TRACE(SuiteName(suite));
    const DataKey key = NewKey();
    const Bytes sealed = Seal({}, key, suite);
    EXPECT_EQ(sealed.size(), fmt::kOverhead);
    Bytes plain{1, 2, 3};
    Status s = OpenChunk(hasher_.Compute({}), sealed, key.key, hasher_, plain);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_TRUE(plain.empty());
  }
}

TEST_F(SealedChunkTest, CompressibleDataGetsLz4FlagAndShrinks) {
  const Bytes plain = CompressibleBytes(7, 64 * 1024, 0.25);
  for (evp::AeadSuite suite : kSuites) {
    SCOPED_TRACE(SuiteName(suite));
    const Bytes sealed = Seal(plain, NewKey(), suite);
    Result<SealedChunkHeader> h = ParseSealedChunkHeader(sealed);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    EXPECT_EQ(h->flags, fmt::kFlagLz4);
    EXPECT_LT(sealed.size(), plain.size() / 2) << "LZ4 should roughly halve this input";
  }
}

TEST_F(SealedChunkTest, IncompressibleDataIsStoredWithoutLz4) {
  const Bytes plain = SeededBytes(8, 64 * 1024);
  for (evp::AeadSuite suite : kSuites) {
    SCOPED_TRACE(SuiteName(suite));
    const Bytes sealed = Seal(plain, NewKey(), suite);
    Result<SealedChunkHeader> h = ParseSealedChunkHeader(sealed);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    EXPECT_EQ(h->flags, 0);
    EXPECT_EQ(sealed.size(), plain.size() + fmt::kOverhead);
  }
}

TEST_F(SealedChunkTest, CompressionCanBeTurnedOff) {
  const Bytes plain(64 * 1024, 'a');
  const DataKey key = NewKey();
  const Bytes sealed = Seal(plain, key, evp::AeadSuite::kAes256Gcm, /*compress=*/false);
  Result<SealedChunkHeader> h = ParseSealedChunkHeader(sealed);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->flags, 0);
  EXPECT_EQ(sealed.size(), plain.size() + fmt::kOverhead);
  Bytes out;
  ASSERT_TRUE(OpenChunk(hasher_.Compute(plain), sealed, key.key, hasher_, out).ok());
  EXPECT_EQ(out, plain);
}

TEST_F(SealedChunkTest, SealAppendsAfterExistingBytes) {
  const Bytes plain = SeededBytes(9, 1000);
  const DataKey key = NewKey();
  Bytes out = {0xde, 0xad};
  ASSERT_TRUE(SealChunk(hasher_.Compute(plain), plain, key, out).ok());
  ASSERT_GT(out.size(), 2u);
  EXPECT_EQ(out[0], 0xde);
  EXPECT_EQ(out[1], 0xad);
  Bytes back;
  Status s = OpenChunk(hasher_.Compute(plain), ByteView(out).subspan(2), key.key, hasher_, back);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(back, plain);
}

TEST_F(SealedChunkTest, SealingTwiceUsesFreshNonces) {
  const Bytes plain = SeededBytes(10, 500);
  const DataKey key = NewKey();
  const Bytes a = Seal(plain, key, evp::AeadSuite::kAes256Gcm);
  const Bytes b = Seal(plain, key, evp::AeadSuite::kAes256Gcm);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_NE(Bytes(a.begin() + fmt::kOffNonce, a.begin() + fmt::kHeaderSize),
            Bytes(b.begin() + fmt::kOffNonce, b.begin() + fmt::kHeaderSize));
}

TEST_F(SealedChunkTest, AnyFlippedByteIsDataLoss) {
  // Small enough to flip every byte, large enough to have a real payload; one
  // input of each kind so that both the raw and the LZ4 paths are covered.
  const struct {
    const char* name;
    Bytes plain;
  } kInputs[] = {
      {"raw", SeededBytes(11, 700)},
      {"lz4", CompressibleBytes(12, 2000, 0.2)},
  };
  for (evp::AeadSuite suite : kSuites) {
    for (const auto& in : kInputs) {
      const DataKey key = NewKey();
      const ChunkId id = hasher_.Compute(in.plain);
      const Bytes sealed = Seal(in.plain, key, suite);
      for (size_t i = 0; i < sealed.size(); ++i) {
        const char* region = i < fmt::kOffNonce                  ? "header"
                             : i < fmt::kHeaderSize              ? "nonce"
                             : i < sealed.size() - fmt::kTagSize ? "ciphertext"
                                                                 : "tag";
        for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}}) {
          SCOPED_TRACE(SuiteName(suite) + ", " + in.name + ", byte " + std::to_string(i) + " (" +
                       region + ") ^ " + std::to_string(mask));
          Bytes bad = sealed;
          bad[i] ^= mask;
          Bytes plain;
          Status s = OpenChunk(id, bad, key.key, hasher_, plain);
          ASSERT_TRUE(HasCode(s, StatusCode::kDataLoss));
          EXPECT_FALSE(s.message().empty());
          EXPECT_TRUE(plain.empty()) << "no unauthenticated plaintext may leak";
        }
      }
    }
  }
}

TEST_F(SealedChunkTest, EveryTruncationIsDataLoss) {
  for (evp::AeadSuite suite : kSuites) {
    for (bool compressible : {false, true}) {
      const Bytes input = compressible ? CompressibleBytes(13, 1500, 0.2) : SeededBytes(14, 300);
      const DataKey key = NewKey();
      const ChunkId id = hasher_.Compute(input);
      const Bytes sealed = Seal(input, key, suite);
      for (size_t len = 0; len < sealed.size(); ++len) {
        SCOPED_TRACE(SuiteName(suite) + (compressible ? ", lz4" : ", raw") + ", length " +
                     std::to_string(len) + " of " + std::to_string(sealed.size()));
        Bytes plain;
        Status s = OpenChunk(id, ByteView(sealed.data(), len), key.key, hasher_, plain);
        ASSERT_TRUE(HasCode(s, StatusCode::kDataLoss));
        EXPECT_FALSE(s.message().empty());
      }
      SCOPED_TRACE("one byte appended");
      Bytes longer = sealed;
      longer.push_back(0);
      Bytes plain;
      EXPECT_TRUE(HasCode(OpenChunk(id, longer, key.key, hasher_, plain), StatusCode::kDataLoss));
    }
  }
}

TEST_F(SealedChunkTest, WrongDataKeyIsDataLoss) {
  const Bytes input = SeededBytes(15, 4096);
  for (evp::AeadSuite suite : kSuites) {
    SCOPED_TRACE(SuiteName(suite));
    const Bytes sealed = Seal(input, NewKey(), suite);
    const DataKey other = NewKey();
    Bytes plain;
    Status s = OpenChunk(hasher_.Compute(input), sealed, other.key, hasher_, plain);
    EXPECT_TRUE(HasCode(s, StatusCode::kDataLoss));
    EXPECT_TRUE(plain.empty());
  }
}

TEST_F(SealedChunkTest, ChunkOpenedUnderAnotherIdIsDataLoss) {
  // The id is associated data: a sealed chunk moved to another id's slot
  // (a swapped index entry) must not open.
  const Bytes input = SeededBytes(16, 4096);
  const Bytes other_input = SeededBytes(17, 4096);
  for (evp::AeadSuite suite : kSuites) {
    SCOPED_TRACE(SuiteName(suite));
    const DataKey key = NewKey();
    const Bytes sealed = Seal(input, key, suite);
    Bytes plain;
    Status s = OpenChunk(hasher_.Compute(other_input), sealed, key.key, hasher_, plain);
    EXPECT_TRUE(HasCode(s, StatusCode::kDataLoss));
    EXPECT_TRUE(plain.empty());
  }
}

TEST_F(SealedChunkTest, ContentThatDoesNotHashToItsIdIsDataLoss) {
  // Sealed under the right id and key, but checked with another tenant's
  // chunk-id key: the AEAD opens, the id check must still refuse it.
  const Bytes input = SeededBytes(18, 2048);
  const DataKey key = NewKey();
  const Bytes sealed = Seal(input, key, evp::AeadSuite::kAes256Gcm);
  const SecretBytes other_key = sodium::RandomSecret(32);
  const evp::HmacSha256 other_hasher(other_key.view());
  Bytes plain;
  Status s = OpenChunk(hasher_.Compute(input), sealed, key.key, other_hasher, plain);
  EXPECT_TRUE(HasCode(s, StatusCode::kDataLoss));
  EXPECT_THAT(s.message(), HasSubstr("does not match its id"));
  EXPECT_TRUE(plain.empty());
}

TEST_F(SealedChunkTest, PlaintextOverTheLimitIsInvalidArgument) {
  const Bytes too_big(size_t{kMaxChunkSize} + 1, 0);
  Bytes out = {7};
  Status s = SealChunk(hasher_.Compute(too_big), too_big, NewKey(), out);
  EXPECT_TRUE(HasCode(s, StatusCode::kInvalidArgument));
  EXPECT_EQ(out, Bytes{7}) << "nothing may be appended on failure";
}

TEST_F(SealedChunkTest, PlaintextAtTheLimitRoundTrips) {
  const Bytes at_limit(kMaxChunkSize, 0x5a);
  const DataKey key = NewKey();
  const Bytes sealed = Seal(at_limit, key, evp::AeadSuite::kAes256Gcm);
  Bytes plain;
  Status s = OpenChunk(hasher_.Compute(at_limit), sealed, key.key, hasher_, plain);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(plain, at_limit);
}

TEST_F(SealedChunkTest, HeaderParserRejectsBadFieldsWithAReason) {
  const DataKey key = NewKey();
  const Bytes raw = Seal(SeededBytes(19, 200), key, evp::AeadSuite::kAes256Gcm);
  const Bytes lz4 = Seal(Bytes(4000, 'z'), key, evp::AeadSuite::kAes256Gcm);
  ASSERT_EQ(raw[fmt::kOffFlags], 0);
  ASSERT_EQ(lz4[fmt::kOffFlags], fmt::kFlagLz4);
  auto with = [](Bytes b, size_t off, uint8_t v) {
    b[off] = v;
    return b;
  };
  auto with_len = [](Bytes b, uint32_t len) {
    StoreU32(b.data() + fmt::kOffPlainLen, len);
    return b;
  };
  const struct {
    const char* name;
    Bytes bytes;
    const char* message;
  } kCases[] = {
      {"shorter than header and tag", Bytes(raw.begin(), raw.begin() + fmt::kOverhead - 1),
       "shorter"},
      {"version 0", with(raw, fmt::kOffVersion, 0), "unknown version"},
      {"version 2", with(raw, fmt::kOffVersion, 2), "unknown version"},
      {"suite 0", with(raw, fmt::kOffSuite, 0), "unknown cipher suite"},
      {"suite 3", with(raw, fmt::kOffSuite, 3), "unknown cipher suite"},
      {"unknown flag bit", with(raw, fmt::kOffFlags, 0x04), "reserved"},
      {"reserved byte set", with(raw, fmt::kOffReserved, 1), "reserved"},
      {"plain length over the limit", with_len(raw, kMaxChunkSize + 1), "over the limit"},
      {"raw payload shorter than plain length", with_len(raw, 201), "differs"},
      {"raw payload longer than plain length", with_len(raw, 199), "differs"},
      {"lz4 payload not smaller than plain length", with_len(lz4, 1), "inconsistent"},
      {"lz4 flag on a raw payload", with(raw, fmt::kOffFlags, fmt::kFlagLz4), "inconsistent"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    Result<SealedChunkHeader> h = ParseSealedChunkHeader(c.bytes);
    ASSERT_TRUE(HasCode(h.status(), StatusCode::kDataLoss));
    EXPECT_THAT(h.status().message(), HasSubstr(c.message));
  }
}

TEST_F(SealedChunkTest, FixedTestNonceGivesIdenticalBytes) {
  const std::array<uint8_t, 12> nonce = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  SealOptions opts;
  opts.suite = evp::AeadSuite::kChaCha20Poly1305;
  opts.nonce_for_test = &nonce;
  const Bytes plain = SeededBytes(20, 300);
  const DataKey key = NewKey();
  Bytes a, b;
  ASSERT_TRUE(SealChunk(hasher_.Compute(plain), plain, key, a, opts).ok());
  ASSERT_TRUE(SealChunk(hasher_.Compute(plain), plain, key, b, opts).ok());
  EXPECT_EQ(a, b);
  EXPECT_EQ(Bytes(a.begin() + fmt::kOffNonce, a.begin() + fmt::kHeaderSize),
            Bytes(nonce.begin(), nonce.end()));
}

// A delta chunk names its bases in the clear, after the header, so that a
// store without keys knows what it depends on; the tag covers them.
TEST_F(SealedChunkTest, DeltaChunkNamesItsBasesInTheClearUnderTheTag) {
  const DataKey key = NewKey();
  const Bytes payload = CompressibleBytes(7, 3000, 0.5);
  const ChunkId id = hasher_.Compute(AsBytes(std::string("the chunk this delta rebuilds")));
  const std::vector<ChunkId> bases = {hasher_.Compute(Bytes{1}), hasher_.Compute(Bytes{2})};
  const ChunkId content = hasher_.Compute(Bytes{3});
  for (evp::AeadSuite suite : kSuites) {
    SCOPED_TRACE(SuiteName(suite));
    SealOptions opts;
    opts.suite = suite;
    Bytes sealed;
    ASSERT_TRUE(SealDeltaChunk(id, content, payload, bases, key, sealed, opts).ok());
    Result<SealedChunkHeader> h = ParseSealedChunkHeader(sealed);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    EXPECT_TRUE(h->is_delta());
    EXPECT_EQ(h->flags & fmt::kFlagDelta, fmt::kFlagDelta);
    EXPECT_EQ(h->bases, bases);
    EXPECT_EQ(h->content_id, content);
    EXPECT_EQ(h->plain_len, payload.size()) << "plain_len is the payload's length";
    EXPECT_EQ(sealed[fmt::kHeaderSize], 2);
    EXPECT_TRUE(
        std::equal(bases[0].begin(), bases[0].end(), sealed.begin() + fmt::kHeaderSize + 1));

    Bytes out;
    SealedChunkHeader opened;
    ASSERT_TRUE(OpenChunkPayload(id, sealed, key.key, hasher_, out, opened).ok());
    EXPECT_EQ(out, payload);
    EXPECT_EQ(opened.bases, bases);
    Status whole = OpenChunk(id, sealed, key.key, hasher_, out);
    EXPECT_TRUE(HasCode(whole, StatusCode::kFailedPrecondition)) << whole.ToString();
    EXPECT_TRUE(out.empty());

    // Another base id or content id in the clear fails the tag.
    for (size_t at : {fmt::kHeaderSize + 1 + 32 + 5, fmt::kHeaderSize + 1 + 64 + 7}) {
      Bytes swapped = sealed;
      swapped[at] ^= 0x01;
      Status s = OpenChunkPayload(id, swapped, key.key, hasher_, out, opened);
      EXPECT_TRUE(HasCode(s, StatusCode::kDataLoss)) << s.ToString();
    }
    // Clearing the delta flag makes the base list ciphertext: the tag fails.
    Bytes unflagged = sealed;
    unflagged[fmt::kOffFlags] &= static_cast<uint8_t>(~fmt::kFlagDelta);
    Result<SealedChunkHeader> uh = ParseSealedChunkHeader(unflagged);
    if (uh.ok()) {
      EXPECT_FALSE(OpenChunk(id, unflagged, key.key, hasher_, out).ok());
    }
  }
}

TEST_F(SealedChunkTest, DeltaChunkBaseCountOutsideOneToSixteenIsRefused) {
  const DataKey key = NewKey();
  const ChunkId id = hasher_.Compute(Bytes{9});
  Bytes out;
  EXPECT_TRUE(
      HasCode(SealDeltaChunk(id, id, Bytes{1, 2, 3}, {}, key, out), StatusCode::kInvalidArgument));
  std::vector<ChunkId> seventeen(17, id);
  EXPECT_TRUE(HasCode(SealDeltaChunk(id, id, Bytes{1, 2, 3}, seventeen, key, out),
                      StatusCode::kInvalidArgument));
  EXPECT_TRUE(out.empty());

  Bytes sealed;
  ASSERT_TRUE(SealDeltaChunk(id, id, Bytes{1, 2, 3}, std::vector<ChunkId>{id}, key, sealed).ok());
  for (uint8_t count : {0, 17, 255}) {
    Bytes bad = sealed;
    bad[fmt::kHeaderSize] = count;
    Result<SealedChunkHeader> h = ParseSealedChunkHeader(bad);
    EXPECT_TRUE(HasCode(h.status(), StatusCode::kDataLoss)) << int{count};
  }
  // A count that claims more ids than the bytes hold.
  Bytes two = sealed;
  two[fmt::kHeaderSize] = 2;
  two.resize(fmt::kHeaderSize + 1 + 32 + fmt::kTagSize);
  Result<SealedChunkHeader> h = ParseSealedChunkHeader(two);
  EXPECT_TRUE(HasCode(h.status(), StatusCode::kDataLoss));
  EXPECT_THAT(h.status().message(), HasSubstr("too short"));
}

}  // namespace
}  // namespace ferry::snapshot
