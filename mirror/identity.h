// StaticIdentity: a Ferry process's long-term X25519 key pair (the Noise
// static key of the link), kept in a small key file, and the fingerprint
// that people compare, pin and type.
//
// Key file: 104 bytes, magic "FIDK", version 1, mode 0600; a file readable
// or writable by group or others is refused. Fingerprint: "fry1:" + 32
// lowercase base32 characters (160 bits of BLAKE2b-256("ferry fingerprint
// v1" || public key)) in groups of four. Both are specified in
// docs/format/link-transport.md ("Identity key file", "Fingerprints").
//
// Errors: kNotFound (no file, Load), kFailedPrecondition (file mode allows
// group/other access), kInvalidArgument (not an identity file: magic,
// version, key type; a malformed fingerprint), kDataLoss (a damaged file:
// size, reserved bytes, checksum, a public key that does not match the
// private key), kResourceExhausted (a file over 4 KiB), and the Env's I/O
// errors.
// Thread-safety: const methods are thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/bytes.h"
#include "core/env.h"
#include "core/secret_bytes.h"
#include "core/sodium.h"
#include "core/status.h"

namespace ferry::mirror {

// The 20 bytes a fingerprint encodes.
using FingerprintDigest = std::array<uint8_t, 20>;

class StaticIdentity {
 public:
  // A fresh random key pair (not saved).
  static StaticIdentity Generate();
  // The identity of a 32-byte X25519 private key; kInvalidArgument for
  // another size.
  static Result<StaticIdentity> FromPrivateKey(ByteView private_key);

  // Reads `path` (see the file comment for the checks and their errors).
  static Result<StaticIdentity> Load(Env& env, const std::string& path);
  // Loads `path`, or, if it does not exist, generates a key pair and writes
  // it there atomically with mode 0600 (WriteFileAtomic; the directory must
  // exist). Two processes must not create the same path concurrently: each
  // daemon holds its data-dir lock first.
  static Result<StaticIdentity> LoadOrCreate(Env& env, const std::string& path);

  // Writes the key file atomically with mode 0600, replacing `path`.
  Status Save(Env& env, const std::string& path) const;
  // The key file's bytes.
  Bytes Serialize() const;
  // Parses key file bytes; `origin` (a path) names the file in errors.
  static Result<StaticIdentity> Parse(ByteView file_bytes, const std::string& origin);

  StaticIdentity(StaticIdentity&&) noexcept = default;
  StaticIdentity& operator=(StaticIdentity&&) noexcept = default;
  StaticIdentity(const StaticIdentity&) = delete;
  StaticIdentity& operator=(const StaticIdentity&) = delete;
  // An explicit copy (the private key is copied into a new SecretBytes).
  StaticIdentity Clone() const;

  const sodium::PublicKey& public_key() const { return public_key_; }
  const SecretBytes& private_key() const { return private_key_; }
  // Fingerprint(public_key()).
  std::string fingerprint() const;

 private:
  StaticIdentity(const sodium::PublicKey& public_key, SecretBytes private_key)
      : public_key_(public_key), private_key_(std::move(private_key)) {}

  sodium::PublicKey public_key_{};
  SecretBytes private_key_;  // 32 bytes
};

// The first 20 bytes of BLAKE2b-256("ferry fingerprint v1" || public_key).
FingerprintDigest FingerprintDigestOf(const sodium::PublicKey& public_key);

// "fry1:" + lowercase RFC 4648 base32 of the digest (32 characters, no
// padding) in eight dash-separated groups of four, e.g.
// "fry1:mzxw-6ytb-oi5c-a3dp-nvsg-k4tb-mfzg-s3lf".
std::string FormatFingerprint(const FingerprintDigest& digest);
inline std::string Fingerprint(const sodium::PublicKey& public_key) {
  return FormatFingerprint(FingerprintDigestOf(public_key));
}

// Accepts what FormatFingerprint writes, in any case, with or without the
// dashes, and with surrounding or interior spaces; the "fry1:" prefix is
// required (it names the fingerprint version). kInvalidArgument otherwise,
// saying what is wrong.
Result<FingerprintDigest> ParseFingerprint(std::string_view text);

// Whether `public_key` has the fingerprint `pinned`, compared in constant
// time.
bool FingerprintMatches(const FingerprintDigest& pinned, const sodium::PublicKey& public_key);

}  // namespace ferry::mirror
