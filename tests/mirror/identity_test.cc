#include "mirror/identity.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "tests/testing/test_util.h"

namespace ferry::mirror {
namespace {

// RFC 7748 section 6.1: Alice's X25519 key pair.
constexpr char kAlicePrivateHex[] =
    "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
constexpr char kAlicePublicHex[] =
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
// Computed independently (Python: hashlib.blake2b(b"ferry fingerprint v1" +
// pk, digest_size=32).digest()[:20], base64.b32encode, lowercase, grouped).
constexpr char kAliceFingerprint[] = "fry1:65lr-ndm5-edaa-cexf-cs3q-gstu-xopr-ncqc";
// The key file of Alice's key pair (docs/format/link-transport.md).
constexpr char kAliceKeyFileHex[] =
    "4649444b0101000077076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    "8a8a4681f9f387538f7f47777eb264761a2d95114317d79f17de7d247bb5392e";

StaticIdentity Alice() {
  auto id = StaticIdentity::FromPrivateKey(HexDecode(kAlicePrivateHex).value());
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  return std::move(id).value();
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 07777;
}

TEST(StaticIdentity, PublicKeyIsDerivedFromPrivateKey) {
  StaticIdentity alice = Alice();
  EXPECT_EQ(HexEncode(alice.public_key()), kAlicePublicHex);
}

TEST(StaticIdentity, FingerprintMatchesIndependentComputation) {
  EXPECT_EQ(Alice().fingerprint(), kAliceFingerprint);
}

TEST(StaticIdentity, KeyFileRebuildsByteForByte) {
  EXPECT_EQ(HexEncode(Alice().Serialize()), kAliceKeyFileHex);
  auto parsed = StaticIdentity::Parse(HexDecode(kAliceKeyFileHex).value(), "alice.key");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->public_key(), Alice().public_key());
}

TEST(StaticIdentity, LoadOrCreateCreatesPrivateFileThenLoadsTheSameKey) {
  testing::TempDir dir;
  const std::string path = dir.Sub("identity.key");
  auto created = StaticIdentity::LoadOrCreate(*Env::Default(), path);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(ModeOf(path), 0600u);
  auto loaded = StaticIdentity::LoadOrCreate(*Env::Default(), path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->public_key(), created->public_key());
  EXPECT_TRUE(
      sodium::ConstantTimeEqual(loaded->private_key().view(), created->private_key().view()));
  auto again = StaticIdentity::Load(*Env::Default(), path);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->fingerprint(), created->fingerprint());
}

TEST(StaticIdentity, MissingFileIsNotFound) {
  testing::TempDir dir;
  auto r = StaticIdentity::Load(*Env::Default(), dir.Sub("nope.key"));
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
}

TEST(StaticIdentity, GroupOrOtherAccessibleFileIsRefused) {
  for (mode_t mode : {0640, 0604, 0620, 0660, 0644}) {
    SCOPED_TRACE(mode);
    testing::TempDir dir;
    const std::string path = dir.Sub("identity.key");
    ASSERT_TRUE(Alice().Save(*Env::Default(), path).ok());
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto r = StaticIdentity::Load(*Env::Default(), path);
    EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(r.status().message().find("chmod 600"), std::string::npos) << r.status().message();
    auto r2 = StaticIdentity::LoadOrCreate(*Env::Default(), path);
    EXPECT_EQ(r2.status().code(), StatusCode::kFailedPrecondition);
  }
}

TEST(StaticIdentity, DamageIsRejected) {
  const Bytes good = HexDecode(kAliceKeyFileHex).value();
  struct Case {
    const char* name;
    std::function<void(Bytes&)> damage;
    StatusCode code;
    const char* message;
  };
  auto fix_checksum = [](Bytes& b) {
    sodium::Hash256 h = sodium::Blake2b256(ByteView(b).first(72));
    std::copy(h.begin(), h.end(), b.begin() + 72);
  };
  const Case cases[] = {
      {"bad magic", [](Bytes& b) { b[0] = 'X'; }, StatusCode::kInvalidArgument, "bad magic"},
      {"too short", [](Bytes& b) { b.resize(5); }, StatusCode::kInvalidArgument, "bad magic"},
      {"version 2", [](Bytes& b) { b[4] = 2; }, StatusCode::kInvalidArgument, "version 2"},
      {"key type 7", [](Bytes& b) { b[5] = 7; }, StatusCode::kInvalidArgument, "key type 7"},
      {"truncated", [](Bytes& b) { b.pop_back(); }, StatusCode::kDataLoss, "103 bytes"},
      {"extended", [](Bytes& b) { b.push_back(0); }, StatusCode::kDataLoss, "105 bytes"},
      {"reserved", [](Bytes& b) { b[7] = 1; }, StatusCode::kDataLoss, "reserved"},
      {"private key bit", [](Bytes& b) { b[10] ^= 1; }, StatusCode::kDataLoss, "checksum"},
      {"checksum bit", [](Bytes& b) { b[100] ^= 0x80; }, StatusCode::kDataLoss, "checksum"},
      {"public key swapped",
       [&](Bytes& b) {
         b[45] ^= 1;
         fix_checksum(b);
       },
       StatusCode::kDataLoss, "does not match"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Bytes bytes = good;
    c.damage(bytes);
    auto r = StaticIdentity::Parse(bytes, "id.key");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), c.code) << r.status().ToString();
    EXPECT_NE(r.status().message().find(c.message), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("id.key"), std::string::npos);
  }
}

TEST(StaticIdentity, OversizedFileIsRefusedBeforeReading) {
  testing::TempDir dir;
  const std::string path = dir.Sub("big.key");
  testing::WriteFileOrDie(path, Bytes(8192, 0), 0600);
  auto r = StaticIdentity::Load(*Env::Default(), path);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
}

TEST(StaticIdentity, FromPrivateKeyRejectsWrongSize) {
  EXPECT_EQ(StaticIdentity::FromPrivateKey(Bytes(31)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(Fingerprint, ParseAcceptsCaseDashesAndSpaces) {
  const FingerprintDigest expected = FingerprintDigestOf(Alice().public_key());
  for (const char* text : {
           "fry1:65lr-ndm5-edaa-cexf-cs3q-gstu-xopr-ncqc",
           "FRY1:65LR-NDM5-EDAA-CEXF-CS3Q-GSTU-XOPR-NCQC",
           "fry1:65lrndm5edaacexfcs3qgstuxoprncqc",
           "  fry1:65lr ndm5 edaa cexf cs3q gstu xopr ncqc",
           "Fry1:65Lr-ndm5edaa-CEXF-cs3q-gstu-xoprncqc",
       }) {
    SCOPED_TRACE(text);
    auto r = ParseFingerprint(text);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, expected);
  }
}

TEST(Fingerprint, ParseRejectsMalformedText) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"", "not a Ferry key fingerprint"},
      {"65lr-ndm5-edaa-cexf-cs3q-gstu-xopr-ncqc", "must start with fry1:"},
      {"fry2:65lr-ndm5-edaa-cexf-cs3q-gstu-xopr-ncqc", "must start with fry1:"},
      {"fry1:65lr-ndm5-edaa-cexf-cs3q-gstu-xopr-ncq", "31 base32 digits"},
      {"fry1:65lr-ndm5-edaa-cexf-cs3q-gstu-xopr-ncqcq", "more than 32"},
      {"fry1:65lr-ndm5-edaa-cexf-cs3q-gstu-xopr-ncq1", "'1'"},
      {"fry1:05lr-ndm5-edaa-cexf-cs3q-gstu-xopr-ncqc", "'0'"},
      {"fry1:65lr_ndm5-edaa-cexf-cs3q-gstu-xopr-ncqc", "'_'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto r = ParseFingerprint(c.text);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.message), std::string::npos) << r.status().message();
  }
}

TEST(Fingerprint, FormatParseRoundTripsForRandomKeys) {
  for (int i = 0; i < 50; ++i) {
    StaticIdentity id = StaticIdentity::Generate();
    const std::string text = id.fingerprint();
    EXPECT_EQ(text.size(), 5u + 32u + 7u);
    auto parsed = ParseFingerprint(text);
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(FormatFingerprint(*parsed), text);
    EXPECT_TRUE(FingerprintMatches(*parsed, id.public_key()));
  }
}

TEST(Fingerprint, MatchesOnlyItsKey) {
  StaticIdentity a = StaticIdentity::Generate();
  StaticIdentity b = StaticIdentity::Generate();
  EXPECT_TRUE(FingerprintMatches(FingerprintDigestOf(a.public_key()), a.public_key()));
  EXPECT_FALSE(FingerprintMatches(FingerprintDigestOf(a.public_key()), b.public_key()));
  sodium::PublicKey flipped = a.public_key();
  flipped[31] ^= 1;
  EXPECT_FALSE(FingerprintMatches(FingerprintDigestOf(a.public_key()), flipped));
}

}  // namespace
}  // namespace ferry::mirror
