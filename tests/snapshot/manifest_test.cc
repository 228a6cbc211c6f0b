#include "snapshot/manifest.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "core/bytes.h"
#include "core/sodium.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

using ::ferry::testing::SeededBytes;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

using ::ferry::testing::HasCode;

// Envelope layout (docs/format/manifest.md): magic "FMAN", version, signature
// algorithm, 2 reserved, u32 body length, body, signer public key (32),
// Ed25519 signature (64) over the context string (with its NUL) followed by
// everything before the signature.
constexpr size_t kHeader = 12;
constexpr char kContext[] = "ferry manifest signature v1";

std::string Str(const Bytes& b) { return std::string(b.begin(), b.end()); }

pb::Manifest ValidBody() {
  pb::Manifest m;
  m.set_format_version(kManifestFormatVersion);
  m.set_created_unix_ns(1700000000123456789);
  m.set_keyset_id(Str(SeededBytes(1, 16)));
  m.set_hostname("edge-7");
  m.set_ferry_version("0.1.0");
  (*m.mutable_labels())["site"] = "north";
  m.mutable_refs()->set_count(3);
  m.mutable_refs()->set_sealed_bytes(12345);
  m.mutable_refs()->set_digest(Str(SeededBytes(2, 32)));
  pb::Dataset* d = m.add_datasets();
  d->set_name("volume");
  d->set_kind(pb::DATASET_KIND_VOLUME);
  pb::ChunkRef* r = d->add_root();
  r->set_id(Str(SeededBytes(3, 32)));
  r->set_size(812);
  d->mutable_stats()->set_files(2);
  return m;
}

// Signs arbitrary body bytes the way SignManifest does, bypassing its
// validation: what a holder of a signing key could send us.
Bytes RawEnvelope(const std::string& body, const sodium::SigningKeyPair& key) {
  Bytes out = ToBytes("FMAN");
  PutU8(out, 1);
  PutU8(out, 1);
  PutU16(out, 0);
  PutU32(out, static_cast<uint32_t>(body.size()));
  PutBytes(out, AsBytes(body));
  PutBytes(out, key.public_key);
  Bytes msg(kContext, kContext + sizeof(kContext));
  PutBytes(msg, out);
  PutBytes(out, sodium::Sign(key, msg));
  return out;
}

class ManifestTest : public ::testing::Test {
 protected:
  ManifestTest() : key_(sodium::GenerateSigningKeyPair()) {}

  Bytes SignOrDie(const pb::Manifest& body) {
    Result<Bytes> env = SignManifest(body, key_);
    EXPECT_TRUE(env.ok()) << env.status().ToString();
    return env.ok() ? *env : Bytes();
  }

  sodium::SigningKeyPair key_;
};

TEST_F(ManifestTest, SignedManifestParsesBack) {
  const pb::Manifest body = ValidBody();
  const Bytes envelope = SignOrDie(body);
  Result<ParsedManifest> m = ParseManifest(envelope, "snap-1");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(MessageDifferencer::Equals(m->body, body)) << m->body.DebugString();
  EXPECT_EQ(m->signer, key_.public_key);
  EXPECT_EQ(m->envelope, envelope);
}

TEST_F(ManifestTest, SnapshotIdIsBlake2bOfTheWholeEnvelope) {
  const Bytes envelope = SignOrDie(ValidBody());
  Result<ParsedManifest> m = ParseManifest(envelope, "x");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->id, sodium::Blake2b256(envelope));
  EXPECT_EQ(SnapshotIdOf(envelope), m->id);

  pb::Manifest later = ValidBody();
  later.set_created_unix_ns(later.created_unix_ns() + 1);
  EXPECT_NE(SnapshotIdOf(SignOrDie(later)), m->id);
  const sodium::SigningKeyPair other = sodium::GenerateSigningKeyPair();
  Result<Bytes> by_other = SignManifest(ValidBody(), other);
  ASSERT_TRUE(by_other.ok());
  EXPECT_NE(SnapshotIdOf(*by_other), m->id) << "the signer is part of the id";
}

TEST_F(ManifestTest, OptionalFieldsMayBeAbsent) {
  pb::Manifest body = ValidBody();
  body.clear_labels();
  body.clear_hostname();
  body.clear_ferry_version();
  body.clear_created_unix_ns();
  body.mutable_datasets(0)->clear_stats();
  body.set_parent(Str(SeededBytes(4, 32)));
  Result<ParsedManifest> m = ParseManifest(SignOrDie(body), "x");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(MessageDifferencer::Equals(m->body, body));
}

TEST_F(ManifestTest, EveryFlippedByteIsDataLoss) {
  const Bytes envelope = SignOrDie(ValidBody());
  for (size_t i = 0; i < envelope.size(); ++i) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}}) {
      SCOPED_TRACE("byte " + std::to_string(i) + " of " + std::to_string(envelope.size()) + " ^ " +
                   std::to_string(mask));
      Bytes bad = envelope;
      bad[i] ^= mask;
      Result<ParsedManifest> m = ParseManifest(bad, "damaged-manifest");
      ASSERT_TRUE(HasCode(m.status(), StatusCode::kDataLoss));
      EXPECT_THAT(m.status().message(), HasSubstr("damaged-manifest"));
    }
  }
}

TEST_F(ManifestTest, EveryTruncationIsDataLoss) {
  const Bytes envelope = SignOrDie(ValidBody());
  for (size_t len = 0; len < envelope.size(); ++len) {
    SCOPED_TRACE("length " + std::to_string(len));
    ASSERT_TRUE(
        HasCode(ParseManifest(Bytes(envelope.begin(), envelope.begin() + len), "t").status(),
                StatusCode::kDataLoss));
  }
  Bytes longer = envelope;
  longer.push_back(0);
  EXPECT_TRUE(HasCode(ParseManifest(longer, "t").status(), StatusCode::kDataLoss));
}

TEST_F(ManifestTest, LyingBodyLengthIsDataLoss) {
  const Bytes envelope = SignOrDie(ValidBody());
  const uint32_t body_len = LoadU32(envelope.data() + 8);
  ASSERT_EQ(envelope.size(), kHeader + body_len + 96);
  for (uint32_t lie :
       {body_len + 1, body_len - 1, 0u, uint32_t{kMaxManifestBodySize + 1}, ~uint32_t{0}}) {
    SCOPED_TRACE("body_len " + std::to_string(lie));
    Bytes bad = envelope;
    StoreU32(bad.data() + 8, lie);
    Result<ParsedManifest> m = ParseManifest(bad, "t");
    ASSERT_TRUE(HasCode(m.status(), StatusCode::kDataLoss));
    EXPECT_THAT(m.status().message(), HasSubstr("body length"));
  }
}

TEST_F(ManifestTest, HeaderFieldsAreCheckedWithAReason) {
  const Bytes envelope = SignOrDie(ValidBody());
  const struct {
    size_t offset;
    uint8_t value;
    const char* message;
  } kCases[] = {
      {0, 'X', "bad magic"},
      {4, 2, "unsupported version"},
      {5, 2, "unknown signature algorithm"},
      {6, 1, "reserved"},
      {7, 1, "reserved"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.message);
    Bytes bad = envelope;
    bad[c.offset] = c.value;
    Result<ParsedManifest> m = ParseManifest(bad, "t");
    ASSERT_TRUE(HasCode(m.status(), StatusCode::kDataLoss));
    EXPECT_THAT(m.status().message(), HasSubstr(c.message));
  }
}

TEST_F(ManifestTest, SubstitutedSignerIsRejected) {
  Bytes envelope = SignOrDie(ValidBody());
  const sodium::SigningKeyPair other = sodium::GenerateSigningKeyPair();
  const size_t signer_off = envelope.size() - 96;
  std::copy(other.public_key.begin(), other.public_key.end(),
            envelope.begin() + static_cast<std::ptrdiff_t>(signer_off));
  Result<ParsedManifest> m = ParseManifest(envelope, "t");
  EXPECT_TRUE(HasCode(m.status(), StatusCode::kDataLoss));
  EXPECT_THAT(m.status().message(), HasSubstr("signature does not verify"));
}

TEST_F(ManifestTest, SignatureWithoutTheDomainContextDoesNotVerify) {
  const Bytes good = SignOrDie(ValidBody());
  Bytes bad(good.begin(), good.end() - 64);
  PutBytes(bad, sodium::Sign(key_, bad));  // signs the bytes alone, no context string
  Result<ParsedManifest> m = ParseManifest(bad, "t");
  EXPECT_TRUE(HasCode(m.status(), StatusCode::kDataLoss));
  EXPECT_THAT(m.status().message(), HasSubstr("signature"));
  std::string serialized;
  ASSERT_TRUE(ValidBody().SerializeToString(&serialized));
  EXPECT_TRUE(ParseManifest(RawEnvelope(serialized, key_), "t").ok())
      << "the test's own signer matches the format, so the failure above is the context";
}

TEST_F(ManifestTest, InvalidBodiesAreRejectedBySignAndParse) {
  using Mutate = std::function<void(pb::Manifest&)>;
  const struct {
    const char* name;
    Mutate mutate;
    const char* message;
  } kCases[] = {
      {"format_version 0", [](pb::Manifest& m) { m.set_format_version(0); }, "format_version"},
      {"format_version 2", [](pb::Manifest& m) { m.set_format_version(2); }, "format_version"},
      {"no keyset_id", [](pb::Manifest& m) { m.clear_keyset_id(); }, "keyset_id"},
      {"keyset_id 15 bytes", [](pb::Manifest& m) { m.set_keyset_id(std::string(15, 'k')); },
       "keyset_id"},
      {"keyset_id 17 bytes", [](pb::Manifest& m) { m.set_keyset_id(std::string(17, 'k')); },
       "keyset_id"},
      {"parent 31 bytes", [](pb::Manifest& m) { m.set_parent(std::string(31, 'p')); }, "parent"},
      {"no refs digest", [](pb::Manifest& m) { m.clear_refs(); }, "refs.digest"},
      {"refs digest 33 bytes",
       [](pb::Manifest& m) { m.mutable_refs()->set_digest(std::string(33, 'd')); }, "refs.digest"},
      {"no datasets", [](pb::Manifest& m) { m.clear_datasets(); }, "no datasets"},
      {"dataset without a name", [](pb::Manifest& m) { m.mutable_datasets(0)->clear_name(); },
       "without a name"},
      {"dataset kind unspecified",
       [](pb::Manifest& m) { m.mutable_datasets(0)->set_kind(pb::DATASET_KIND_UNSPECIFIED); },
       "unknown kind"},
      {"dataset kind 7",
       [](pb::Manifest& m) { m.mutable_datasets(0)->set_kind(static_cast<pb::DatasetKind>(7)); },
       "unknown kind"},
      {"dataset without a root", [](pb::Manifest& m) { m.mutable_datasets(0)->clear_root(); },
       "has no root"},
      {"root chunk id 31 bytes",
       [](pb::Manifest& m) {
         m.mutable_datasets(0)->mutable_root(0)->set_id(std::string(31, 'r'));
       },
       "not 32 bytes"},
      {"root chunk over the size limit",
       [](pb::Manifest& m) { m.mutable_datasets(0)->mutable_root(0)->set_size(kMaxChunkSize + 1); },
       "too large"},
      {"second dataset invalid",
       [](pb::Manifest& m) {
         pb::Dataset* d = m.add_datasets();
         *d = m.datasets(0);
         d->set_name("second");
         d->clear_root();
       },
       "'second' has no root"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    pb::Manifest body = ValidBody();
    c.mutate(body);

    Result<Bytes> signed_env = SignManifest(body, key_);
    ASSERT_FALSE(signed_env.ok()) << "SignManifest accepted an invalid body";
    EXPECT_THAT(signed_env.status().message(), HasSubstr(c.message));

    std::string serialized;
    ASSERT_TRUE(body.SerializeToString(&serialized));
    Result<ParsedManifest> m = ParseManifest(RawEnvelope(serialized, key_), "hostile");
    ASSERT_TRUE(HasCode(m.status(), StatusCode::kDataLoss));
    EXPECT_THAT(m.status().message(), HasSubstr(c.message));
    EXPECT_THAT(m.status().message(), HasSubstr("hostile"));
  }
}

TEST_F(ManifestTest, SignedBodyThatIsNotAProtobufIsDataLoss) {
  Result<ParsedManifest> m = ParseManifest(RawEnvelope(std::string(40, '\xff'), key_), "t");
  EXPECT_TRUE(HasCode(m.status(), StatusCode::kDataLoss));
  EXPECT_THAT(m.status().message(), HasSubstr("not a valid protobuf"));

  Result<ParsedManifest> empty = ParseManifest(RawEnvelope("", key_), "t");
  EXPECT_TRUE(HasCode(empty.status(), StatusCode::kDataLoss)) << "an empty body has no fields";
}

TEST_F(ManifestTest, OversizedBodyIsRefusedBySign) {
  pb::Manifest body = ValidBody();
  (*body.mutable_labels())["huge"] = std::string(kMaxManifestBodySize, 'x');
  EXPECT_TRUE(HasCode(SignManifest(body, key_).status(), StatusCode::kResourceExhausted));
}

}  // namespace
}  // namespace ferry::snapshot
