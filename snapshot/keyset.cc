#include "snapshot/keyset.h"

#include <algorithm>
#include <cstring>

#include "snapshot/keyset_format.h"

namespace ferry::snapshot {

namespace kf = keyset_format;

namespace {

constexpr uint64_t kMaxMemLimit = 4ull << 30;

// The range a keyset file may carry (and so the range we agree to write).
bool ValidArgon2Params(const sodium::Argon2Params& p) {
  return p.opslimit >= 1 && p.opslimit <= 64 && p.memlimit >= (8u << 10) &&
         p.memlimit <= kMaxMemLimit;
}

}  // namespace

void Keyset::DeriveFromKeys() {
  const auto digest = sodium::Blake2b256(tenant_public_key_);
  std::copy(digest.begin(), digest.begin() + 16, id_.begin());
  chunk_id_hasher_ = std::make_unique<evp::HmacSha256>(chunk_id_key_.view());
  gear_table_ = GearTableFromKey(chunk_id_key_.view());
}

std::unique_ptr<Keyset> Keyset::Generate() {
  std::unique_ptr<Keyset> ks(new Keyset());
  ks->kind_ = Kind::kTenant;
  ks->origin_ = "new keyset";
  sodium::BoxKeyPair box = sodium::GenerateBoxKeyPair();
  ks->tenant_public_key_ = box.public_key;
  ks->private_key_ = std::move(box.secret_key);
  ks->chunk_id_key_ = sodium::RandomSecret(32);
  ks->signing_key_ = sodium::GenerateSigningKeyPair();
  ks->DeriveFromKeys();
  return ks;
}

Result<std::unique_ptr<Keyset>> Keyset::Load(Env& env, const std::string& path) {
  ASSIGN_OR_RETURN(Bytes bytes, env.ReadFile(path, 4096));
  return Parse(bytes, path);
}

Result<std::unique_ptr<Keyset>> Keyset::Parse(ByteView b, const std::string& origin) {
  if (b.size() < 8 || std::memcmp(b.data(), kf::kMagic, 4) != 0) {
    return InvalidArgumentError(origin + " is not a Ferry keyset (bad magic)");
  }
  if (b[kf::kOffVersion] != kf::kVersion) {
    return InvalidArgumentError(origin + ": unsupported keyset version " +
                                std::to_string(b[kf::kOffVersion]));
  }
  const uint8_t kind = b[kf::kOffKind];
  size_t expected = 0;
  if (kind == kf::kKindTenant) {
    expected = kf::kTenantFileSize;
  } else if (kind == kf::kKindAgent) {
    expected = kf::kAgentFileSize;
  } else {
    return InvalidArgumentError(origin + ": unknown keyset kind " + std::to_string(kind));
  }
  if (b.size() != expected) {
    return DataLossError(origin + ": keyset file is " + std::to_string(b.size()) +
                         " bytes, expected " + std::to_string(expected));
  }
  const size_t body = expected - kf::kChecksumSize;
  const auto sum = sodium::Blake2b256(b.subspan(0, body));
  if (!std::equal(sum.begin(), sum.end(), b.begin() + static_cast<std::ptrdiff_t>(body))) {
    return DataLossError(origin + ": keyset checksum mismatch (file damaged)");
  }
  if (b[kf::kOffReserved] != 0 || b[kf::kOffReserved + 1] != 0) {
    return DataLossError(origin + ": reserved keyset bytes are not zero");
  }
  std::unique_ptr<Keyset> ks(new Keyset());
  ks->kind_ = static_cast<Kind>(kind);
  ks->origin_ = origin;
  std::copy_n(b.begin() + kf::kOffTenantPublicKey, 32, ks->tenant_public_key_.begin());
  ks->chunk_id_key_ = SecretBytes(b.data() + kf::kOffChunkIdKey, 32);
  ASSIGN_OR_RETURN(ks->signing_key_,
                   sodium::SigningKeyPairFromSeed(b.subspan(kf::kOffSigningSeed, 32)));
  if (kind == kf::kKindTenant) {
    ks->argon2_.opslimit = LoadU64(b.data() + kf::kOffOpsLimit);
    ks->argon2_.memlimit = LoadU64(b.data() + kf::kOffMemLimit);
    if (!ValidArgon2Params(ks->argon2_)) {
      return DataLossError(origin + ": Argon2id parameters out of range");
    }
    std::copy_n(b.begin() + kf::kOffSalt, 16, ks->salt_.begin());
    std::copy_n(b.begin() + kf::kOffNonce, 24, ks->nonce_.begin());
    ks->sealed_header_.assign(b.begin(), b.begin() + kf::kOffSealedPrivateKey);
    ks->sealed_private_key_.assign(b.begin() + kf::kOffSealedPrivateKey,
                                   b.begin() + kf::kOffSealedPrivateKey +
                                       static_cast<std::ptrdiff_t>(kf::kSealedPrivateKeySize));
  }
  ks->DeriveFromKeys();
  return ks;
}

Status Keyset::Unlock(std::string_view passphrase) {
  if (kind_ != Kind::kTenant) {
    return FailedPreconditionError(origin_ +
                                   " is an agent key file: it can add snapshots but not read "
                                   "them; use the tenant keyset");
  }
  if (private_key_.has_value()) return OkStatus();
  ASSIGN_OR_RETURN(SecretBytes wrapping_key,
                   sodium::DeriveKeyFromPassphrase(passphrase, salt_, argon2_));
  // The associated data is every byte before the sealed key (header, public
  // key, chunk-id key, signing seed, Argon2id parameters, salt, nonce): a
  // change to any of them makes the private key fail to open.
  Result<SecretBytes> pk =
      sodium::XChaChaOpen(wrapping_key, nonce_, sealed_header_, sealed_private_key_);
  if (!pk.ok()) {
    return PermissionDeniedError("wrong passphrase for " + origin_);
  }
  // The private key must match the public key in the file.
  if (sodium::X25519PublicKey(*pk) != tenant_public_key_) {
    return DataLossError(origin_ + ": private key does not match the public key");
  }
  private_key_ = std::move(*pk);
  return OkStatus();
}

Result<Bytes> Keyset::SerializeTenant(std::string_view passphrase,
                                      const sodium::Argon2Params& params) const {
  if (kind_ != Kind::kTenant || !private_key_) {
    return FailedPreconditionError("only an unlocked tenant keyset can be written");
  }
  if (!ValidArgon2Params(params)) {
    return InvalidArgumentError("Argon2id parameters out of range (1..64 passes, 8 KiB..4 GiB)");
  }
  Bytes out;
  PutBytes(out, ByteView(kf::kMagic, 4));
  PutU8(out, kf::kVersion);
  PutU8(out, kf::kKindTenant);
  PutU16(out, 0);
  PutBytes(out, tenant_public_key_);
  PutBytes(out, chunk_id_key_.view());
  PutBytes(out, sodium::SigningSeed(signing_key_).view());
  PutU64(out, params.opslimit);
  PutU64(out, params.memlimit);
  const auto salt = sodium::RandomArray<16>();
  const auto nonce = sodium::RandomArray<24>();
  PutBytes(out, salt);
  PutBytes(out, nonce);
  ASSIGN_OR_RETURN(SecretBytes wrapping_key,
                   sodium::DeriveKeyFromPassphrase(passphrase, salt, params));
  PutBytes(out, sodium::XChaChaSeal(wrapping_key, nonce, /*aad=*/out, private_key_->view()));
  const auto sum = sodium::Blake2b256(out);
  PutBytes(out, sum);
  return out;
}

Bytes Keyset::SerializeAgent() const {
  Bytes out;
  PutBytes(out, ByteView(kf::kMagic, 4));
  PutU8(out, kf::kVersion);
  PutU8(out, kf::kKindAgent);
  PutU16(out, 0);
  PutBytes(out, tenant_public_key_);
  PutBytes(out, chunk_id_key_.view());
  const sodium::SigningKeyPair agent_signing = sodium::GenerateSigningKeyPair();
  PutBytes(out, sodium::SigningSeed(agent_signing).view());
  const auto sum = sodium::Blake2b256(out);
  PutBytes(out, sum);
  return out;
}

Keyset::NewDataKey Keyset::MakeDataKey() const {
  NewDataKey k;
  k.key.id = sodium::RandomArray<16>();
  k.key.key = sodium::RandomSecret(32);
  SecretBytes plain(48);
  std::copy(k.key.id.begin(), k.key.id.end(), plain.data());
  std::copy(k.key.key.data(), k.key.key.data() + 32, plain.data() + 16);
  k.wrapped = sodium::SealToPublicKey(tenant_public_key_, plain.view());
  return k;
}

Result<SecretBytes> Keyset::UnwrapDataKey(const KeyId& id, ByteView wrapped) const {
  if (!private_key_) {
    return FailedPreconditionError(kind_ == Kind::kAgent
                                       ? origin_ + " is an agent key file and cannot decrypt"
                                       : origin_ + " is locked (passphrase needed)");
  }
  if (wrapped.size() != kWrappedDataKeySize) {
    return DataLossError("wrapped data key has " + std::to_string(wrapped.size()) +
                         " bytes, expected " + std::to_string(kWrappedDataKeySize));
  }
  ASSIGN_OR_RETURN(SecretBytes plain,
                   sodium::OpenSealed(tenant_public_key_, *private_key_, wrapped));
  if (!std::equal(id.begin(), id.end(), plain.data())) {
    return DataLossError("wrapped data key " + HexEncode(id) + " names another key");
  }
  return SecretBytes(plain.data() + 16, 32);
}

}  // namespace ferry::snapshot
