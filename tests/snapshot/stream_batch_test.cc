// Stream batches (docs/format/stream-batch.md): round trips, what a reader
// without keys learns, that every change to the bytes is refused, the
// sealing limits, and the golden sample tests/golden/stream-batch.bin.
//
// FERRY_UPDATE_GOLDEN=1 makes GoldenStreamBatch.RebuildsByteForByte write
// the sample instead of comparing (tests/golden/README.md).
#include "snapshot/stream_batch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <lz4.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/evp.h"
#include "core/sodium.h"
#include "snapshot/keyset.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

using ::ferry::testing::CompressibleBytes;
using ::ferry::testing::HasCode;
using ::ferry::testing::ReadFileOrDie;
using ::ferry::testing::SeededBytes;
using ::ferry::testing::WriteFileOrDie;
using ::testing::HasSubstr;

// Layout constants written down from docs/format/stream-batch.md, on
// purpose not taken from the code under test.
constexpr size_t kNameLenAt = 3;
constexpr size_t kFirstAt = 4;
constexpr size_t kCountAt = 12;
constexpr size_t kPlainLenAt = 16;
constexpr size_t kKeyIdAt = 20;
constexpr size_t kWrappedAt = 36;
constexpr size_t kNonceAt = 132;
constexpr size_t kNameAt = 144;
constexpr size_t kTagBytes = 16;
constexpr size_t kTrailerBytes = 32 + 64;  // signer, signature
// "ferry stream batch v1" and its terminating NUL: 22 bytes.
const Bytes kContext = [] {
  Bytes c = ToBytes("ferry stream batch v1");
  c.push_back(0);
  return c;
}();

constexpr evp::AeadSuite kSuites[] = {evp::AeadSuite::kAes256Gcm,
                                      evp::AeadSuite::kChaCha20Poly1305};

std::string SuiteName(evp::AeadSuite s) {
  return s == evp::AeadSuite::kAes256Gcm ? "aes-256-gcm" : "chacha20-poly1305";
}

std::vector<ByteView> Views(const std::vector<Bytes>& records) {
  return std::vector<ByteView>(records.begin(), records.end());
}

uint32_t RecordBytes(const std::vector<Bytes>& records) {
  size_t n = 0;
  for (const Bytes& r : records) n += 4 + r.size();
  return static_cast<uint32_t>(n);
}

// The length-prefixed record section (before compression).
Bytes Frame(const std::vector<Bytes>& records) {
  Bytes plain;
  for (const Bytes& r : records) {
    PutU32(plain, static_cast<uint32_t>(r.size()));
    PutBytes(plain, r);
  }
  return plain;
}

// An LZ4 block of `plain` into at most plain.size() - 1 bytes, as the page
// says a writer compresses; empty when it does not shrink.
Bytes Lz4(ByteView plain) {
  Bytes out(plain.size());
  const int n = LZ4_compress_default(
      reinterpret_cast<const char*>(plain.data()), reinterpret_cast<char*>(out.data()),
      static_cast<int>(plain.size()), static_cast<int>(plain.size() - 1));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

// Replaces the signer and signature of `batch` with `signer`'s, as anyone
// holding a signing key can.
void Resign(Bytes& batch, const sodium::SigningKeyPair& signer) {
  ASSERT_GE(batch.size(), kTrailerBytes);
  batch.resize(batch.size() - kTrailerBytes);
  PutBytes(batch, signer.public_key);
  Bytes message = kContext;
  PutBytes(message, batch);
  PutBytes(batch, sodium::Sign(signer, message));
}

// A batch written field by field from the page (reference encoder).
// `payload` is what gets encrypted: the record section, or its LZ4 block
// when `flags` has bit 0.
struct SpecBatch {
  uint8_t version = 1;
  evp::AeadSuite suite = evp::AeadSuite::kAes256Gcm;
  uint8_t flags = 0;
  std::string stream;
  uint64_t first_offset = 0;
  uint32_t record_count = 0;
  uint32_t plain_len = 0;
  KeyId key_id{};
  Bytes wrapped;
  std::array<uint8_t, 12> nonce{};
  Bytes payload;

  Bytes Encode(const SecretBytes& data_key, const sodium::SigningKeyPair& signer) const {
    Bytes b;
    b.push_back(version);
    b.push_back(static_cast<uint8_t>(suite));
    b.push_back(flags);
    b.push_back(static_cast<uint8_t>(stream.size()));
    PutU64(b, first_offset);
    PutU32(b, record_count);
    PutU32(b, plain_len);
    PutBytes(b, key_id);
    PutBytes(b, wrapped);
    PutBytes(b, nonce);
    PutBytes(b, AsBytes(stream));
    const Bytes aad = b;
    const Status s = evp::AeadSeal(suite, data_key.view(), nonce, aad, payload, b);
    EXPECT_TRUE(s.ok()) << s.ToString();
    PutBytes(b, Bytes(kTrailerBytes));  // replaced by Resign
    Resign(b, signer);
    return b;
  }
};

void ExpectRecords(const std::vector<StreamRecord>& got, uint64_t first,
                   const std::vector<Bytes>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].offset, first + i) << "record " << i;
    EXPECT_TRUE(got[i].data == want[i]) << "record " << i << " differs";
  }
}

class StreamBatchTest : public ::testing::Test {
 protected:
  StreamBatchTest() : keyset_(Keyset::Generate()) {
    Keyset::NewDataKey k = keyset_->MakeDataKey();
    key_.key = std::move(k.key);
    key_.wrapped = std::move(k.wrapped);
  }

  Bytes Seal(const std::string& stream, uint64_t first, const std::vector<Bytes>& records,
             const StreamBatchSealOptions& options = {}) {
    Result<Bytes> b =
        SealStreamBatch(stream, first, Views(records), key_, keyset_->signing_key(), options);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? std::move(*b) : Bytes();
  }

  std::unique_ptr<Keyset> keyset_;
  StreamBatchKey key_;
};

TEST_F(StreamBatchTest, RoundTripsWithAndWithoutLz4) {
  Bytes every_byte(256);
  std::iota(every_byte.begin(), every_byte.end(), 0);
  const struct {
    const char* name;
    std::vector<Bytes> records;
    bool compressible;  // LZ4 shrinks the record section
  } kInputs[] = {
      {"small records (below the 64-byte LZ4 threshold)",
       {ToBytes("hello"), Bytes(), ToBytes("ferry\n")},
       false},
      {"one empty record", {Bytes()}, false},
      {"1000 empty records", std::vector<Bytes>(1000), true},
      {"binary data", {every_byte, SeededBytes(1, 1000), Bytes{0, 0, 0, 0}}, false},
      {"compressible records",
       {CompressibleBytes(2, 5000, 0.3), CompressibleBytes(3, 5000, 0.3)},
       true},
      {"one big random record (8 MiB)", {SeededBytes(4, 8u << 20)}, false},
      {"one big compressible record (8 MiB)", {CompressibleBytes(5, 8u << 20, 0.25)}, true},
  };
  for (evp::AeadSuite suite : kSuites) {
    for (bool compress : {true, false}) {
      for (const auto& in : kInputs) {
        SCOPED_TRACE(SuiteName(suite) + (compress ? ", compress, " : ", no compression, ") +
                     in.name);
        StreamBatchSealOptions options;
        options.suite = suite;
        options.compress = compress;
        const Bytes sealed = Seal("sensors", 77, in.records, options);
        const bool lz4 = compress && in.compressible;

        // Anyone can read the header and check the signature.
        Result<StreamBatchHeader> h = VerifyStreamBatch(sealed);
        ASSERT_TRUE(h.ok()) << h.status().ToString();
        EXPECT_EQ(h->version, kStreamBatchVersion);
        EXPECT_EQ(h->suite, suite);
        EXPECT_EQ(h->lz4, lz4);
        EXPECT_EQ(h->stream, "sensors");
        EXPECT_EQ(h->first_offset, 77u);
        EXPECT_EQ(h->record_count, in.records.size());
        EXPECT_EQ(h->end_offset(), 77u + in.records.size());
        EXPECT_EQ(h->plain_len, RecordBytes(in.records));
        EXPECT_EQ(h->key_id, key_.key.id);
        EXPECT_TRUE(h->wrapped_key == key_.wrapped);
        EXPECT_EQ(h->signer, keyset_->signing_key().public_key);
        const size_t overhead = kNameAt + 7 + kTagBytes + kTrailerBytes;
        if (lz4) {
          EXPECT_LT(sealed.size(), overhead + h->plain_len);
        } else {
          EXPECT_EQ(sealed.size(), overhead + h->plain_len);
        }

        // The tenant keyset unwraps the data key the batch carries and opens it.
        Result<SecretBytes> data_key = keyset_->UnwrapDataKey(h->key_id, h->wrapped_key);
        ASSERT_TRUE(data_key.ok()) << data_key.status().ToString();
        Result<std::vector<StreamRecord>> records = OpenStreamBatch(sealed, *data_key);
        ASSERT_TRUE(records.ok()) << records.status().ToString();
        ExpectRecords(*records, 77, in.records);
      }
    }
  }
}

TEST_F(StreamBatchTest, LongestNameAndLastOffsetsAreAccepted) {
  const std::string name(kMaxStreamNameBytes, 'n');
  const std::vector<Bytes> records = {ToBytes("a"), ToBytes("b")};
  const uint64_t first = UINT64_MAX - 2;  // the last record is at UINT64_MAX - 1
  const Bytes sealed = Seal(name, first, records);
  Result<StreamBatchHeader> h = VerifyStreamBatch(sealed);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->stream, name);
  EXPECT_EQ(h->end_offset(), UINT64_MAX);
  Result<std::vector<StreamRecord>> opened = OpenStreamBatch(sealed, key_.key.key);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  ExpectRecords(*opened, first, records);
}

TEST_F(StreamBatchTest, EachSealDrawsAFreshNonce) {
  const std::vector<Bytes> records = {ToBytes("same records")};
  const Bytes a = Seal("s", 0, records);
  const Bytes b = Seal("s", 0, records);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_NE(HexEncode(ByteView(a).subspan(kNonceAt, 12)),
            HexEncode(ByteView(b).subspan(kNonceAt, 12)));
  EXPECT_FALSE(a == b);
}

// The signature covers every byte before it, so any change anywhere — header,
// ciphertext, tag, signer or signature — is DATA_LOSS, from a reader with
// keys as from one without.
TEST_F(StreamBatchTest, EverySingleByteChangeIsDataLoss) {
  const std::vector<std::vector<Bytes>> inputs = {
      {ToBytes("hello"), Bytes(), ToBytes("ferry\n")},    // stored
      {CompressibleBytes(6, 300, 0.3), ToBytes("tail")},  // LZ4
  };
  for (const std::vector<Bytes>& records : inputs) {
    const Bytes sealed = Seal("sensors", 5, records);
    Result<StreamBatchHeader> h = VerifyStreamBatch(sealed);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    SCOPED_TRACE(h->lz4 ? "lz4 batch" : "stored batch");
    for (size_t i = 0; i < sealed.size(); ++i) {
      for (uint8_t mask : {0x01, 0x80, 0xff}) {
        Bytes damaged = sealed;
        damaged[i] ^= mask;
        SCOPED_TRACE("byte " + std::to_string(i) + " ^ " + std::to_string(mask));
        ASSERT_TRUE(HasCode(VerifyStreamBatch(damaged).status(), StatusCode::kDataLoss));
        ASSERT_TRUE(
            HasCode(OpenStreamBatch(damaged, key_.key.key).status(), StatusCode::kDataLoss));
      }
    }
  }
}

TEST_F(StreamBatchTest, TruncatedOrExtendedBatchIsDataLoss) {
  const Bytes sealed = Seal("sensors", 5, {ToBytes("hello"), CompressibleBytes(7, 200, 0.3)});
  for (size_t n = 0; n < sealed.size(); ++n) {
    SCOPED_TRACE("first " + std::to_string(n) + " bytes");
    ASSERT_TRUE(
        HasCode(VerifyStreamBatch(ByteView(sealed).first(n)).status(), StatusCode::kDataLoss));
  }
  for (size_t extra : {1, 16, 1000}) {
    SCOPED_TRACE(std::to_string(extra) + " bytes appended");
    Bytes longer = sealed;
    longer.resize(sealed.size() + extra, 0);
    EXPECT_TRUE(HasCode(VerifyStreamBatch(longer).status(), StatusCode::kDataLoss));
  }
}

// Whoever holds a signing key can sign any bytes: the reader learns who
// signed and decides whether to trust that key (the hub accepts only the
// agent's own key). A re-signed batch opens if its content is intact, and
// the AEAD still refuses one whose header or ciphertext was changed.
TEST_F(StreamBatchTest, BatchResignedByAnotherKeyReportsThatSigner) {
  const std::vector<Bytes> records = {ToBytes("hello"), ToBytes("world")};
  const Bytes sealed = Seal("sensors", 10, records);
  const sodium::SigningKeyPair other = sodium::GenerateSigningKeyPair();

  Bytes resigned = sealed;
  Resign(resigned, other);
  Result<StreamBatchHeader> h = VerifyStreamBatch(resigned);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->signer, other.public_key);
  EXPECT_NE(h->signer, keyset_->signing_key().public_key);
  EXPECT_EQ(h->stream, "sensors");
  EXPECT_EQ(h->first_offset, 10u);
  Result<std::vector<StreamRecord>> opened = OpenStreamBatch(resigned, key_.key.key);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  ExpectRecords(*opened, 10, records);

  const struct {
    const char* what;
    size_t at;
  } kChanges[] = {
      {"first offset", kFirstAt},
      {"key id", kKeyIdAt},
      {"wrapped key", kWrappedAt + 40},
      {"nonce", kNonceAt},
      {"stream name", kNameAt},
      {"ciphertext", kNameAt + 7 + 2},
      {"tag", sealed.size() - kTrailerBytes - 1},
  };
  for (const auto& c : kChanges) {
    SCOPED_TRACE(c.what);
    Bytes forged = sealed;
    forged[c.at] ^= 0x01;
    Resign(forged, other);
    ASSERT_TRUE(VerifyStreamBatch(forged).ok()) << "a valid signature by another key";
    Result<std::vector<StreamRecord>> r = OpenStreamBatch(forged, key_.key.key);
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
    EXPECT_THAT(r.status().message(), HasSubstr("AEAD tag does not verify"));
  }
}

TEST_F(StreamBatchTest, WrongDataKeyIsDataLoss) {
  const Bytes sealed = Seal("sensors", 0, {ToBytes("secret")});
  const Keyset::NewDataKey other = keyset_->MakeDataKey();
  Result<std::vector<StreamRecord>> r = OpenStreamBatch(sealed, other.key.key);
  EXPECT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
  EXPECT_THAT(r.status().message(),
              HasSubstr("stream sensors batch at offset 0: AEAD tag does not verify"));
  // Another tenant's keyset cannot unwrap the key the batch carries.
  Result<StreamBatchHeader> h = VerifyStreamBatch(sealed);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_TRUE(HasCode(Keyset::Generate()->UnwrapDataKey(h->key_id, h->wrapped_key).status(),
                      StatusCode::kDataLoss));
}

TEST_F(StreamBatchTest, SealingLimitsAreInvalidArgument) {
  const std::vector<ByteView> one = {AsBytes("x")};
  // One buffer viewed twice: over the 64 MiB limit without allocating it twice.
  const Bytes half(kMaxStreamBatchPlainBytes / 2, 'h');
  const std::vector<ByteView> too_big = {half, half};
  const std::vector<ByteView> too_many(kMaxStreamBatchRecords + 1);
  StreamBatchKey short_wrapped;
  short_wrapped.key = DataKey{key_.key.id, key_.key.key.Clone()};
  short_wrapped.wrapped = Bytes(key_.wrapped.begin(), key_.wrapped.end() - 1);
  const struct {
    const char* what;
    std::string stream;
    uint64_t first;
    std::vector<ByteView> records;
    const StreamBatchKey* key;
    const char* message;
  } kCases[] = {
      {"empty batch", "s", 0, {}, &key_, "at least one record"},
      {"too many records", "s", 0, too_many, &key_, "at most 1048576 records"},
      {"record bytes over the limit", "s", 0, too_big, &key_, "exceeds the limit of 67108864"},
      {"empty stream name", "", 0, one, &key_, "stream name must be 1 to 255 bytes"},
      {"stream name too long", std::string(kMaxStreamNameBytes + 1, 'n'), 0, one, &key_,
       "stream name must be 1 to 255 bytes"},
      {"offsets overflow", "s", UINT64_MAX, one, &key_, "offsets overflow"},
      {"offsets overflow by one", "s", UINT64_MAX - 1, {one[0], one[0]}, &key_, "offsets overflow"},
      {"wrapped key of the wrong size", "s", 0, one, &short_wrapped,
       "wrapped data key must be 96 bytes"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    Result<Bytes> r = SealStreamBatch(c.stream, c.first, c.records, *c.key, keyset_->signing_key());
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kInvalidArgument));
    EXPECT_THAT(r.status().message(), HasSubstr(c.message));
  }
  // Just inside the limits.
  EXPECT_TRUE(SealStreamBatch("s", UINT64_MAX - 1, one, key_, keyset_->signing_key()).ok());
}

// ---------------------------------------------------------------------------
// Golden sample (docs/format/stream-batch.md, "Worked example"; inputs in
// tests/golden/README.md)

std::string GoldenPath(const std::string& name) {
  const char* src = std::getenv("FERRY_SOURCE_DIR");
  if (src != nullptr && *src != '\0') return std::string(src) + "/tests/golden/" + name;
  const std::string here = __FILE__;  // tests/snapshot/stream_batch_test.cc
  return here.substr(0, here.rfind('/')) + "/../golden/" + name;
}

bool UpdatingGoldens() {
  const char* v = std::getenv("FERRY_UPDATE_GOLDEN");
  return v != nullptr && std::string(v) == "1";
}

template <size_t N>
std::array<uint8_t, N> SeqArray(uint8_t first) {
  std::array<uint8_t, N> a;
  std::iota(a.begin(), a.end(), first);
  return a;
}

const auto kAgentSigningSeed = SeqArray<32>(0x20);  // 202122..3f
const auto kDataKeyBytes = SeqArray<32>(0x40);      // 404142..5f
const auto kBatchNonce = SeqArray<12>(0x90);        // 909192..9b
const KeyId kDataKeyId = SeqArray<16>(0xa0);        // a0a1a2..af
constexpr char kPassphrase[] = "ferry golden passphrase";
constexpr char kGoldenStream[] = "sensors";
constexpr uint64_t kGoldenFirst = 1000;

const std::vector<Bytes>& GoldenRecords() {
  static const std::vector<Bytes> records = {
      ToBytes("hello"), Bytes(),
      ToBytes("The quick brown fox jumps over the lazy dog. "
              "The quick brown fox jumps over the lazy dog. ")};
  return records;
}

sodium::SigningKeyPair AgentKey() {
  Result<sodium::SigningKeyPair> kp = sodium::SigningKeyPairFromSeed(kAgentSigningSeed);
  EXPECT_TRUE(kp.ok()) << kp.status().ToString();
  return kp.ok() ? std::move(*kp) : sodium::SigningKeyPair{};
}

SecretBytes GoldenDataKey() { return SecretBytes(kDataKeyBytes); }

// The golden batch as the page describes it, encoded field by field.
SpecBatch GoldenSpec() {
  SpecBatch s;
  s.suite = evp::AeadSuite::kAes256Gcm;
  s.flags = 0x01;
  s.stream = kGoldenStream;
  s.first_offset = kGoldenFirst;
  s.record_count = static_cast<uint32_t>(GoldenRecords().size());
  s.plain_len = RecordBytes(GoldenRecords());
  s.key_id = kDataKeyId;
  s.wrapped = ReadFileOrDie(GoldenPath("data-key.wrapped"));
  s.nonce = kBatchNonce;
  s.payload = Lz4(Frame(GoldenRecords()));
  return s;
}

TEST(GoldenStreamBatch, RebuildsByteForByte) {
  StreamBatchKey key;
  key.key = DataKey{kDataKeyId, GoldenDataKey()};
  key.wrapped = ReadFileOrDie(GoldenPath("data-key.wrapped"));
  StreamBatchSealOptions options;
  options.suite = evp::AeadSuite::kAes256Gcm;
  options.nonce_for_test = &kBatchNonce;
  Result<Bytes> sealed = SealStreamBatch(kGoldenStream, kGoldenFirst, Views(GoldenRecords()), key,
                                         AgentKey(), options);
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();

  // The field-by-field encoder written from the page agrees.
  const SpecBatch spec = GoldenSpec();
  ASSERT_FALSE(spec.payload.empty()) << "the golden records must be LZ4-compressible";
  EXPECT_EQ(HexEncode(*sealed), HexEncode(spec.Encode(GoldenDataKey(), AgentKey())));

  if (UpdatingGoldens()) {
    WriteFileOrDie(GoldenPath("stream-batch.bin"), *sealed);
    std::printf("[golden] wrote %s (%zu bytes)\n", GoldenPath("stream-batch.bin").c_str(),
                sealed->size());
    return;
  }
  EXPECT_EQ(HexEncode(ReadFileOrDie(GoldenPath("stream-batch.bin"))), HexEncode(*sealed))
      << "If the format changed on purpose, bump its version, update "
         "docs/format/stream-batch.md and regenerate (tests/golden/README.md).";
}

TEST(GoldenStreamBatch, DecodesToTheFixedRecords) {
  const Bytes golden = ReadFileOrDie(GoldenPath("stream-batch.bin"));
  ASSERT_EQ(golden.size(), 336u);
  Result<StreamBatchHeader> h = VerifyStreamBatch(golden);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->version, 1);
  EXPECT_EQ(h->suite, evp::AeadSuite::kAes256Gcm);
  EXPECT_TRUE(h->lz4);
  EXPECT_EQ(h->stream, kGoldenStream);
  EXPECT_EQ(h->first_offset, kGoldenFirst);
  EXPECT_EQ(h->record_count, 3u);
  EXPECT_EQ(h->end_offset(), 1003u);
  EXPECT_EQ(h->plain_len, 107u);
  EXPECT_EQ(h->key_id, kDataKeyId);
  EXPECT_TRUE(h->wrapped_key == ReadFileOrDie(GoldenPath("data-key.wrapped")));
  EXPECT_EQ(HexEncode(h->signer), HexEncode(AgentKey().public_key));

  // The tenant keyset (passphrase, then the wrapped key in the batch) opens it.
  Result<std::unique_ptr<Keyset>> keyset =
      Keyset::Parse(ReadFileOrDie(GoldenPath("tenant-keyset.bin")), "tenant-keyset.bin");
  ASSERT_TRUE(keyset.ok()) << keyset.status().ToString();
  ASSERT_TRUE((*keyset)->Unlock(kPassphrase).ok());
  Result<SecretBytes> data_key = (*keyset)->UnwrapDataKey(h->key_id, h->wrapped_key);
  ASSERT_TRUE(data_key.ok()) << data_key.status().ToString();
  EXPECT_EQ(HexEncode(data_key->view()), HexEncode(kDataKeyBytes));
  Result<std::vector<StreamRecord>> records = OpenStreamBatch(golden, *data_key);
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  ExpectRecords(*records, kGoldenFirst, GoldenRecords());
}

// Every documented check (the page's error table), applied to the golden
// batch. `resign`: the damaged bytes are signed again with the agent key
// (only a signing key holder can do that); cases made by `make` are written
// with the data key (only a key holder can do that).
TEST(GoldenStreamBatch, DamageIsRejected) {
  const Bytes golden = ReadFileOrDie(GoldenPath("stream-batch.bin"));
  ASSERT_EQ(golden.size(), 336u);
  // Undamaged, it opens (so each refusal below is the damage's doing).
  ASSERT_TRUE(OpenStreamBatch(golden, GoldenDataKey()).ok());
  const size_t payload = golden.size() - kNameAt - 7 - kTagBytes - kTrailerBytes;  // 73
  auto set_u32 = [](size_t at, uint32_t v) {
    return [at, v](Bytes& b) { StoreU32(b.data() + at, v); };
  };
  auto spec = [](std::function<void(SpecBatch&)> edit) {
    return [edit](Bytes& b) {
      SpecBatch s = GoldenSpec();
      edit(s);
      b = s.Encode(GoldenDataKey(), AgentKey());
    };
  };
  struct Case {
    const char* what;
    std::function<void(Bytes&)> damage;
    bool resign;
    bool verifies;  // VerifyStreamBatch accepts it; OpenStreamBatch refuses
    std::string message;
  };
  const std::vector<Case> cases = {
      {"shorter than the minimum", [](Bytes& b) { b.resize(256); }, false, false,
       "stream batch of 256 bytes is too short"},
      {"version 2", [](Bytes& b) { b[0] = 2; }, true, false, "unknown version 2"},
      {"suite 0", [](Bytes& b) { b[1] = 0; }, true, false, "unknown cipher suite 0"},
      {"suite 3", [](Bytes& b) { b[1] = 3; }, true, false, "unknown cipher suite 3"},
      {"reserved flag bit", [](Bytes& b) { b[2] |= 0x02; }, true, false, "reserved flag bits set"},
      {"empty stream name", [](Bytes& b) { b[kNameLenAt] = 0; }, true, false, "empty stream name"},
      {"name running past the end", [](Bytes& b) { b[kNameLenAt] = 255; }, true, false,
       "stream batch of 336 bytes is too short for its header"},
      {"no records", set_u32(kCountAt, 0), true, false, "claims 0 records"},
      {"too many records", set_u32(kCountAt, (1u << 20) + 1), true, false,
       "claims 1048577 records"},
      {"offsets overflow", [](Bytes& b) { StoreU64(b.data() + kFirstAt, UINT64_MAX - 1); }, true,
       false, "stream batch offsets overflow"},
      {"record bytes over 64 MiB", set_u32(kPlainLenAt, (64u << 20) + 1), true, false,
       "claims 67108865 bytes for 3 records"},
      {"record bytes below 4 per record", set_u32(kPlainLenAt, 11), true, false,
       "claims 11 bytes for 3 records"},
      {"compressed payload not shorter than its record bytes",
       set_u32(kPlainLenAt, static_cast<uint32_t>(payload)), true, false,
       "compressed length 73 is inconsistent with its record bytes 73"},
      {"LZ4 flag cleared", [](Bytes& b) { b[2] = 0; }, true, false,
       "payload length 73 differs from its record bytes 107"},
      {"first offset changed", [](Bytes& b) { b[kFirstAt] ^= 1; }, false, false,
       "stream batch signature does not verify"},
      {"ciphertext changed", [](Bytes& b) { b[kNameAt + 7] ^= 1; }, false, false,
       "stream batch signature does not verify"},
      {"truncated by one byte", [](Bytes& b) { b.pop_back(); }, false, false,
       "stream batch signature does not verify"},
      {"one byte appended", [](Bytes& b) { b.push_back(0); }, false, false,
       "stream batch signature does not verify"},
      {"signer changed", [](Bytes& b) { b[b.size() - 96] ^= 1; }, false, false,
       "stream batch signature does not verify"},
      {"signature changed", [](Bytes& b) { b[b.size() - 1] ^= 1; }, false, false,
       "stream batch signature does not verify"},
      {"first offset changed, re-signed", [](Bytes& b) { b[kFirstAt] ^= 1; }, true, true,
       "stream sensors batch at offset 1001: AEAD tag does not verify"},
      {"nonce changed, re-signed", [](Bytes& b) { b[kNonceAt] ^= 1; }, true, true,
       "stream sensors batch at offset 1000: AEAD tag does not verify"},
      {"wrapped key changed, re-signed", [](Bytes& b) { b[kWrappedAt] ^= 1; }, true, true,
       "AEAD tag does not verify"},
      {"ciphertext changed, re-signed", [](Bytes& b) { b[kNameAt + 7] ^= 1; }, true, true,
       "AEAD tag does not verify"},
      {"tag changed, re-signed", [](Bytes& b) { b[b.size() - 97] ^= 1; }, true, true,
       "AEAD tag does not verify"},
      {"LZ4 block that decompresses to fewer bytes", spec([](SpecBatch& s) { s.plain_len += 1; }),
       false, true, "stream sensors batch at offset 1000: LZ4 payload is damaged"},
      {"record length running past the record bytes", spec([](SpecBatch& s) {
         Bytes plain = Frame(GoldenRecords());
         plain[13] += 1;  // record 2's length: 91 of 90 bytes
         s.flags = 0;
         s.payload = plain;
       }),
       false, true, "stream sensors batch at offset 1000: record 2 overruns the batch"},
      {"bytes after the last record", spec([](SpecBatch& s) {
         Bytes plain = Frame(GoldenRecords());
         PutU32(plain, 0);
         s.flags = 0;
         s.plain_len += 4;
         s.payload = plain;
       }),
       false, true, "stream sensors batch at offset 1000: 4 bytes follow the last record"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Bytes damaged = golden;
    c.damage(damaged);
    if (c.resign) Resign(damaged, AgentKey());
    Result<StreamBatchHeader> h = VerifyStreamBatch(damaged);
    if (c.verifies) {
      EXPECT_TRUE(h.ok()) << h.status().ToString();
    } else {
      EXPECT_TRUE(HasCode(h.status(), StatusCode::kDataLoss));
      EXPECT_THAT(h.status().message(), HasSubstr(c.message));
    }
    Result<std::vector<StreamRecord>> r = OpenStreamBatch(damaged, GoldenDataKey());
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
    EXPECT_THAT(r.status().message(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace ferry::snapshot
