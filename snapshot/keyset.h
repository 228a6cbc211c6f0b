// Keyset: the tenant's keys as one object, loaded from a keyset file.
//
// A tenant keyset (kind kTenant) holds the chunk-id key, the tenant X25519
// key pair (private half sealed with a passphrase via Argon2id) and a signing
// key. An agent key file (kind kAgent) holds the chunk-id key, the tenant
// public key and the agent's own signing key: enough to add snapshots, not to
// read anything. Format: docs/format/keyset.md.
//
// Errors: kNotFound (no file), kDataLoss (damaged file), kInvalidArgument
// (not a keyset), kPermissionDenied (wrong passphrase), kFailedPrecondition
// (an operation needs the private key and the keyset is locked or an agent file).
// Thread-safety: const methods are thread-safe; Unlock is not.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "core/env.h"
#include "core/evp.h"
#include "core/secret_bytes.h"
#include "core/sodium.h"
#include "snapshot/chunker.h"
#include "snapshot/sealed_chunk.h"

namespace ferry::snapshot {

using KeysetId = std::array<uint8_t, 16>;

class Keyset {
 public:
  enum class Kind : uint8_t { kTenant = 1, kAgent = 2 };

  // A new tenant keyset, unlocked.
  static std::unique_ptr<Keyset> Generate();
  static Result<std::unique_ptr<Keyset>> Parse(ByteView file_bytes, const std::string& origin);
  static Result<std::unique_ptr<Keyset>> Load(Env& env, const std::string& path);

  // Serializes a tenant keyset, sealing the private key with `passphrase`.
  // kFailedPrecondition unless this is an unlocked tenant keyset.
  Result<Bytes> SerializeTenant(std::string_view passphrase,
                                const sodium::Argon2Params& params) const;
  // Serializes the write-only agent key file derived from this keyset, with a
  // fresh signing key for the agent.
  Bytes SerializeAgent() const;

  // Opens the private key. kPermissionDenied on a wrong passphrase.
  Status Unlock(std::string_view passphrase);

  Kind kind() const { return kind_; }
  bool unlocked() const { return private_key_.has_value(); }
  const std::string& origin() const { return origin_; }

  // 16 bytes naming the tenant keyset (BLAKE2b-256 of the tenant public key, truncated).
  const KeysetId& id() const { return id_; }
  const sodium::PublicKey& tenant_public_key() const { return tenant_public_key_; }
  const evp::HmacSha256& chunk_id_hasher() const { return *chunk_id_hasher_; }
  ChunkId ChunkIdOf(ByteView plaintext) const { return chunk_id_hasher_->Compute(plaintext); }
  const GearTable& gear_table() const { return gear_table_; }
  const sodium::SigningKeyPair& signing_key() const { return signing_key_; }

  // A fresh data key and its wrapped form (sealed to the tenant public key).
  struct NewDataKey {
    DataKey key;
    Bytes wrapped;
  };
  NewDataKey MakeDataKey() const;
  // Unwraps a data key; kFailedPrecondition without the private key, kDataLoss
  // if the wrapped bytes do not open or name another key.
  Result<SecretBytes> UnwrapDataKey(const KeyId& id, ByteView wrapped) const;

  static std::string KindName(Kind k) {
    return k == Kind::kTenant ? "tenant keyset" : "agent key file";
  }

 private:
  Keyset() = default;
  void DeriveFromKeys();

  Kind kind_ = Kind::kTenant;
  std::string origin_;
  KeysetId id_{};
  sodium::PublicKey tenant_public_key_{};
  SecretBytes chunk_id_key_;
  std::unique_ptr<evp::HmacSha256> chunk_id_hasher_;
  GearTable gear_table_{};
  sodium::SigningKeyPair signing_key_;
  // Tenant keysets: the sealed private key and how to unseal it.
  sodium::Argon2Params argon2_;
  std::array<uint8_t, 16> salt_{};
  std::array<uint8_t, 24> nonce_{};
  Bytes sealed_header_;  // bytes [0, 160): the associated data of the sealed key
  Bytes sealed_private_key_;
  std::optional<SecretBytes> private_key_;
};

// Wrapped data key size: sealed box of key id (16) || key (32).
inline constexpr size_t kWrappedDataKeySize = 16 + 32 + sodium::kSealedBoxOverhead;

}  // namespace ferry::snapshot
