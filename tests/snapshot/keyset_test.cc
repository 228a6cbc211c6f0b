#include "snapshot/keyset.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "core/bytes.h"
#include "core/env.h"
#include "core/sodium.h"
#include "snapshot/keyset_format.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

namespace kf = keyset_format;
using ::ferry::testing::SeededBytes;
using ::ferry::testing::TempDir;
using ::testing::HasSubstr;

using ::ferry::testing::HasCode;

// Cheap Argon2id so that tests stay fast; the format allows it.
const sodium::Argon2Params kFastArgon2{/*opslimit=*/1, /*memlimit=*/8u << 20};
constexpr char kPassphrase[] = "correct horse battery staple";

// Recomputes the trailing BLAKE2b checksum after a deliberate edit, so that
// the check under test is the one behind the checksum.
void FixChecksum(Bytes& file) {
  const size_t body = file.size() - kf::kChecksumSize;
  const auto sum = sodium::Blake2b256(ByteView(file.data(), body));
  std::copy(sum.begin(), sum.end(), file.begin() + static_cast<std::ptrdiff_t>(body));
}

std::unique_ptr<Keyset> ParseOrDie(ByteView bytes, const std::string& origin = "test keyset") {
  Result<std::unique_ptr<Keyset>> ks = Keyset::Parse(bytes, origin);
  EXPECT_TRUE(ks.ok()) << ks.status().ToString();
  return ks.ok() ? std::move(*ks) : nullptr;
}

class KeysetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tenant_ = Keyset::Generate();
    Result<Bytes> file = tenant_->SerializeTenant(kPassphrase, kFastArgon2);
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    tenant_file_ = std::move(*file);
    agent_file_ = tenant_->SerializeAgent();
  }

  std::unique_ptr<Keyset> tenant_;
  Bytes tenant_file_;
  Bytes agent_file_;
};

TEST_F(KeysetTest, GeneratedKeysetIsAnUnlockedTenantKeyset) {
  EXPECT_EQ(tenant_->kind(), Keyset::Kind::kTenant);
  EXPECT_TRUE(tenant_->unlocked());
  EXPECT_NE(Keyset::Generate()->id(), tenant_->id()) << "each keyset is new";
}

TEST_F(KeysetTest, TenantFileRoundTripsAndUnlocks) {
  EXPECT_EQ(tenant_file_.size(), kf::kTenantFileSize);
  std::unique_ptr<Keyset> parsed = ParseOrDie(tenant_file_, "keys/tenant.key");
  ASSERT_NE(parsed, nullptr);
  EXPECT_EQ(parsed->kind(), Keyset::Kind::kTenant);
  EXPECT_EQ(parsed->origin(), "keys/tenant.key");
  EXPECT_FALSE(parsed->unlocked()) << "the private key stays sealed until Unlock";
  EXPECT_EQ(parsed->id(), tenant_->id());
  EXPECT_EQ(parsed->tenant_public_key(), tenant_->tenant_public_key());
  EXPECT_EQ(parsed->signing_key().public_key, tenant_->signing_key().public_key);
  EXPECT_EQ(parsed->gear_table(), tenant_->gear_table());
  const Bytes sample = SeededBytes(1, 1000);
  EXPECT_EQ(parsed->ChunkIdOf(sample), tenant_->ChunkIdOf(sample));

  Status s = parsed->Unlock(kPassphrase);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(parsed->unlocked());
  EXPECT_TRUE(parsed->Unlock("anything: already unlocked").ok());

  // Both directions: a key wrapped by either one is opened by the other.
  for (const Keyset* maker : {tenant_.get(), parsed.get()}) {
    const Keyset* opener = maker == tenant_.get() ? parsed.get() : tenant_.get();
    const Keyset::NewDataKey k = maker->MakeDataKey();
    Result<SecretBytes> key = opener->UnwrapDataKey(k.key.id, k.wrapped);
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    EXPECT_EQ(Bytes(key->view().begin(), key->view().end()),
              Bytes(k.key.key.view().begin(), k.key.key.view().end()));
  }

  // An unlocked parsed keyset can be written again, under a new passphrase.
  Result<Bytes> again = parsed->SerializeTenant("another passphrase", kFastArgon2);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  std::unique_ptr<Keyset> reparsed = ParseOrDie(*again);
  ASSERT_NE(reparsed, nullptr);
  EXPECT_TRUE(reparsed->Unlock("another passphrase").ok());
  EXPECT_EQ(reparsed->id(), tenant_->id());
}

TEST_F(KeysetTest, SerializingTwiceUsesFreshSaltAndNonce) {
  Result<Bytes> again = tenant_->SerializeTenant(kPassphrase, kFastArgon2);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*again, tenant_file_);
  EXPECT_EQ(Bytes(again->begin(), again->begin() + kf::kOffOpsLimit),
            Bytes(tenant_file_.begin(), tenant_file_.begin() + kf::kOffOpsLimit))
      << "the keys themselves are the same";
}

TEST_F(KeysetTest, WrongPassphraseIsPermissionDenied) {
  std::unique_ptr<Keyset> parsed = ParseOrDie(tenant_file_, "my.keyset");
  ASSERT_NE(parsed, nullptr);
  for (const char* wrong : {"", "correct horse battery stapl", "Correct horse battery staple"}) {
    SCOPED_TRACE(std::string("passphrase '") + wrong + "'");
    Status s = parsed->Unlock(wrong);
    EXPECT_TRUE(HasCode(s, StatusCode::kPermissionDenied));
    EXPECT_THAT(s.message(), HasSubstr("wrong passphrase"));
    EXPECT_THAT(s.message(), HasSubstr("my.keyset")) << "the message names the file";
    EXPECT_FALSE(parsed->unlocked());
  }
  EXPECT_TRUE(parsed->Unlock(kPassphrase).ok()) << "a failed attempt does not spoil the keyset";
}

TEST_F(KeysetTest, LockedTenantKeysetCannotUnwrapOrBeWritten) {
  std::unique_ptr<Keyset> parsed = ParseOrDie(tenant_file_);
  ASSERT_NE(parsed, nullptr);
  const Keyset::NewDataKey k = tenant_->MakeDataKey();
  EXPECT_TRUE(HasCode(parsed->UnwrapDataKey(k.key.id, k.wrapped).status(),
                      StatusCode::kFailedPrecondition));
  EXPECT_TRUE(HasCode(parsed->SerializeTenant(kPassphrase, kFastArgon2).status(),
                      StatusCode::kFailedPrecondition));
}

TEST_F(KeysetTest, AgentFileSharesIdentityButCannotDecrypt) {
  EXPECT_EQ(agent_file_.size(), kf::kAgentFileSize);
  std::unique_ptr<Keyset> agent = ParseOrDie(agent_file_, "agent.key");
  ASSERT_NE(agent, nullptr);
  EXPECT_EQ(agent->kind(), Keyset::Kind::kAgent);
  EXPECT_FALSE(agent->unlocked());
  EXPECT_EQ(agent->id(), tenant_->id());
  EXPECT_EQ(agent->tenant_public_key(), tenant_->tenant_public_key());
  EXPECT_EQ(agent->gear_table(), tenant_->gear_table()) << "same chunk boundaries: dedup works";
  for (uint64_t seed : {1, 2, 3}) {
    const Bytes sample = SeededBytes(seed, 5000);
    EXPECT_EQ(agent->ChunkIdOf(sample), tenant_->ChunkIdOf(sample));
  }

  const Keyset::NewDataKey k = tenant_->MakeDataKey();
  Result<SecretBytes> unwrapped = agent->UnwrapDataKey(k.key.id, k.wrapped);
  EXPECT_TRUE(HasCode(unwrapped.status(), StatusCode::kFailedPrecondition));
  EXPECT_THAT(unwrapped.status().message(), HasSubstr("agent key file"));
  EXPECT_TRUE(HasCode(agent->Unlock(kPassphrase), StatusCode::kFailedPrecondition));
  EXPECT_TRUE(HasCode(agent->SerializeTenant(kPassphrase, kFastArgon2).status(),
                      StatusCode::kFailedPrecondition));
}

TEST_F(KeysetTest, DataKeysMadeByAnAgentOpenOnlyWithTheUnlockedTenantKeyset) {
  // The write-only property: what an agent seals, the agent cannot read back.
  std::unique_ptr<Keyset> agent = ParseOrDie(agent_file_);
  std::unique_ptr<Keyset> tenant = ParseOrDie(tenant_file_);
  ASSERT_NE(agent, nullptr);
  ASSERT_NE(tenant, nullptr);
  const Keyset::NewDataKey k = agent->MakeDataKey();
  EXPECT_EQ(k.wrapped.size(), kWrappedDataKeySize);
  EXPECT_EQ(k.key.key.size(), 32u);

  EXPECT_TRUE(
      HasCode(agent->UnwrapDataKey(k.key.id, k.wrapped).status(), StatusCode::kFailedPrecondition));
  EXPECT_TRUE(
      HasCode(tenant->UnwrapDataKey(k.key.id, k.wrapped).status(), StatusCode::kFailedPrecondition))
      << "still locked";
  ASSERT_TRUE(tenant->Unlock(kPassphrase).ok());
  Result<SecretBytes> key = tenant->UnwrapDataKey(k.key.id, k.wrapped);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(Bytes(key->view().begin(), key->view().end()),
            Bytes(k.key.key.view().begin(), k.key.key.view().end()));
}

TEST_F(KeysetTest, UnwrapRefusesDamagedOrMislabelledKeys) {
  const Keyset::NewDataKey k = tenant_->MakeDataKey();
  KeyId other_id = k.key.id;
  other_id[0] ^= 1;
  Bytes flipped = k.wrapped;
  flipped[flipped.size() / 2] ^= 0x10;
  const Keyset::NewDataKey foreign = Keyset::Generate()->MakeDataKey();
  const struct {
    const char* name;
    KeyId id;
    Bytes wrapped;
  } kCases[] = {
      {"names another key", other_id, k.wrapped},
      {"one byte short", k.key.id, Bytes(k.wrapped.begin(), k.wrapped.end() - 1)},
      {"one byte long", k.key.id,
       [&] {
         Bytes b = k.wrapped;
         b.push_back(0);
         return b;
       }()},
      {"empty", k.key.id, Bytes()},
      {"flipped byte", k.key.id, flipped},
      {"wrapped to another tenant", foreign.key.id, foreign.wrapped},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    EXPECT_TRUE(HasCode(tenant_->UnwrapDataKey(c.id, c.wrapped).status(), StatusCode::kDataLoss));
  }
}

TEST_F(KeysetTest, TwoAgentFilesHaveDifferentSigningKeys) {
  std::unique_ptr<Keyset> a = ParseOrDie(agent_file_);
  std::unique_ptr<Keyset> b = ParseOrDie(tenant_->SerializeAgent());
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a->signing_key().public_key, b->signing_key().public_key);
  EXPECT_NE(a->signing_key().public_key, tenant_->signing_key().public_key);
  EXPECT_NE(b->signing_key().public_key, tenant_->signing_key().public_key);
  EXPECT_EQ(a->id(), b->id());
}

TEST_F(KeysetTest, EveryFlippedByteIsRefused) {
  for (const auto& [name, file] : {std::pair<const char*, const Bytes&>{"tenant", tenant_file_},
                                   std::pair<const char*, const Bytes&>{"agent", agent_file_}}) {
    for (size_t i = 0; i < file.size(); ++i) {
      for (uint8_t mask : {uint8_t{0x01}, uint8_t{0xff}}) {
        SCOPED_TRACE(std::string(name) + " byte " + std::to_string(i) + " ^ " +
                     std::to_string(mask));
        Bytes bad = file;
        bad[i] ^= mask;
        Result<std::unique_ptr<Keyset>> ks = Keyset::Parse(bad, "damaged");
        ASSERT_FALSE(ks.ok()) << "a damaged keyset was accepted";
        const StatusCode code = ks.status().code();
        EXPECT_TRUE(code == StatusCode::kDataLoss || code == StatusCode::kInvalidArgument)
            << ks.status().ToString();
        EXPECT_THAT(ks.status().message(), HasSubstr("damaged")) << "the message names the file";
      }
    }
  }
}

TEST_F(KeysetTest, EveryTruncationIsRefused) {
  for (const Bytes* file : {&tenant_file_, &agent_file_}) {
    for (size_t len = 0; len < file->size(); ++len) {
      SCOPED_TRACE("length " + std::to_string(len) + " of " + std::to_string(file->size()));
      Result<std::unique_ptr<Keyset>> ks = Keyset::Parse(ByteView(file->data(), len), "short");
      ASSERT_FALSE(ks.ok());
      const StatusCode code = ks.status().code();
      EXPECT_TRUE(code == StatusCode::kDataLoss || code == StatusCode::kInvalidArgument)
          << ks.status().ToString();
    }
    Bytes longer = *file;
    longer.push_back(0);
    EXPECT_TRUE(HasCode(Keyset::Parse(longer, "long").status(), StatusCode::kDataLoss));
  }
}

TEST_F(KeysetTest, ForeignBytesAreNotAFerryKeyset) {
  Bytes bad_magic = tenant_file_;
  bad_magic[0] = 'X';
  FixChecksum(bad_magic);
  const struct {
    const char* name;
    Bytes bytes;
  } kCases[] = {
      {"bad magic", bad_magic},
      {"empty file", Bytes()},
      {"text", ToBytes("-----BEGIN OPENSSH PRIVATE KEY-----\n")},
      {"random bytes", SeededBytes(9, kf::kTenantFileSize)},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    Result<std::unique_ptr<Keyset>> ks = Keyset::Parse(c.bytes, "some.file");
    EXPECT_TRUE(HasCode(ks.status(), StatusCode::kInvalidArgument));
    EXPECT_THAT(ks.status().message(), HasSubstr("not a Ferry keyset"));
    EXPECT_THAT(ks.status().message(), HasSubstr("some.file"));
  }
}

TEST_F(KeysetTest, HeaderFieldsAreCheckedBehindTheChecksum) {
  auto edited = [](Bytes b, size_t off, uint8_t v) {
    b[off] = v;
    FixChecksum(b);
    return b;
  };
  auto with_u64 = [](Bytes b, size_t off, uint64_t v) {
    StoreU64(b.data() + off, v);
    FixChecksum(b);
    return b;
  };
  const struct {
    const char* name;
    Bytes bytes;
    StatusCode code;
    const char* message;
  } kCases[] = {
      {"version 2", edited(tenant_file_, kf::kOffVersion, 2), StatusCode::kInvalidArgument,
       "unsupported keyset version"},
      {"kind 0", edited(tenant_file_, kf::kOffKind, 0), StatusCode::kInvalidArgument,
       "unknown keyset kind"},
      {"kind 3", edited(agent_file_, kf::kOffKind, 3), StatusCode::kInvalidArgument,
       "unknown keyset kind"},
      {"tenant bytes labelled agent", edited(tenant_file_, kf::kOffKind, kf::kKindAgent),
       StatusCode::kDataLoss, "expected"},
      {"reserved byte", edited(tenant_file_, kf::kOffReserved, 1), StatusCode::kDataLoss,
       "reserved"},
      {"reserved byte (agent)", edited(agent_file_, kf::kOffReserved + 1, 1), StatusCode::kDataLoss,
       "reserved"},
      {"opslimit 0", with_u64(tenant_file_, kf::kOffOpsLimit, 0), StatusCode::kDataLoss,
       "Argon2id parameters"},
      {"opslimit 65", with_u64(tenant_file_, kf::kOffOpsLimit, 65), StatusCode::kDataLoss,
       "Argon2id parameters"},
      {"memlimit below 8 KiB", with_u64(tenant_file_, kf::kOffMemLimit, 8191),
       StatusCode::kDataLoss, "Argon2id parameters"},
      {"memlimit above 4 GiB", with_u64(tenant_file_, kf::kOffMemLimit, (4ull << 30) + 1),
       StatusCode::kDataLoss, "Argon2id parameters"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    Result<std::unique_ptr<Keyset>> ks = Keyset::Parse(c.bytes, "edited");
    EXPECT_TRUE(HasCode(ks.status(), c.code));
    EXPECT_THAT(ks.status().message(), HasSubstr(c.message));
  }
}

TEST_F(KeysetTest, SwappedPublicKeyDoesNotUnlockEvenWithAValidChecksum) {
  // Someone who rewrites the public key (and the checksum) must not get a
  // keyset whose wrapped keys go to their key while it still "unlocks".
  Bytes edited = tenant_file_;
  const auto other = sodium::GenerateBoxKeyPair();
  std::copy(other.public_key.begin(), other.public_key.end(),
            edited.begin() + kf::kOffTenantPublicKey);
  FixChecksum(edited);
  std::unique_ptr<Keyset> ks = ParseOrDie(edited);
  ASSERT_NE(ks, nullptr);
  EXPECT_FALSE(ks->Unlock(kPassphrase).ok());
  EXPECT_FALSE(ks->unlocked());
}

TEST_F(KeysetTest, NoHeaderEditWithAValidChecksumStillUnlocks) {
  // Every byte before the sealed private key is its associated data: a file
  // whose chunk-id key, signing key or parameters were swapped (and whose
  // checksum was recomputed) must not unlock as if it were intact.
  const struct {
    const char* field;
    size_t offset;
    uint8_t mask;
  } kEdits[] = {
      {"tenant public key", kf::kOffTenantPublicKey + 5, 0x01},
      {"chunk-id key", kf::kOffChunkIdKey + 7, 0x01},
      {"signing seed", kf::kOffSigningSeed + 31, 0x80},
      {"opslimit (1 -> 3, still valid)", kf::kOffOpsLimit, 0x02},
      {"memlimit (+1 byte, still valid)", kf::kOffMemLimit, 0x01},
      {"salt", kf::kOffSalt + 15, 0x01},
      {"nonce", kf::kOffNonce, 0x01},
      {"sealed private key", kf::kOffSealedPrivateKey + 40, 0x01},
  };
  for (const auto& e : kEdits) {
    SCOPED_TRACE(e.field);
    Bytes edited = tenant_file_;
    edited[e.offset] ^= e.mask;
    FixChecksum(edited);
    std::unique_ptr<Keyset> ks = ParseOrDie(edited);
    ASSERT_NE(ks, nullptr);
    EXPECT_FALSE(ks->Unlock(kPassphrase).ok());
    EXPECT_FALSE(ks->unlocked());
  }
}

TEST_F(KeysetTest, SerializeRefusesArgon2ParametersAFileCannotCarry) {
  const struct {
    const char* what;
    sodium::Argon2Params params;
  } kCases[] = {
      {"opslimit 0", {0, 8u << 20}},
      {"opslimit 65", {65, 8u << 20}},
      {"memlimit below 8 KiB", {1, 8191}},
      {"memlimit above 4 GiB", {1, (4ull << 30) + 1}},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    EXPECT_TRUE(HasCode(tenant_->SerializeTenant(kPassphrase, c.params).status(),
                        StatusCode::kInvalidArgument));
  }
}

TEST_F(KeysetTest, LoadReadsAFileAndReportsAMissingOne) {
  TempDir dir;
  const std::string path = dir.Sub("tenant.keyset");
  ::ferry::testing::WriteFileOrDie(path, tenant_file_, 0600);
  Result<std::unique_ptr<Keyset>> ks = Keyset::Load(*Env::Default(), path);
  ASSERT_TRUE(ks.ok()) << ks.status().ToString();
  EXPECT_EQ((*ks)->origin(), path);
  EXPECT_EQ((*ks)->id(), tenant_->id());
  EXPECT_TRUE(
      HasCode(Keyset::Load(*Env::Default(), dir.Sub("absent")).status(), StatusCode::kNotFound));
}

}  // namespace
}  // namespace ferry::snapshot
