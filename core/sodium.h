// libsodium wrappers: everything that is not the bulk data path.
//
// X25519 sealed boxes (wrapping data keys to the tenant public key), Ed25519
// signatures (manifests), BLAKE2b (snapshot ids, fingerprints), Argon2id
// (passphrases), XChaCha20-Poly1305 (sealing the tenant private key), the
// random number generator, and the three primitives of the link's Noise
// handshake (X25519 DH, ChaCha20-Poly1305 IETF, BLAKE2b-512; mirror/noise/).
// All functions call InitSodium() themselves; calling it up front only moves
// the one-time cost.
//
// Secret keys live in SecretBytes and are wiped when dropped.
// Thread-safety: every function is thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string_view>

#include "core/bytes.h"
#include "core/secret_bytes.h"
#include "core/status.h"

namespace ferry::sodium {

inline constexpr size_t kX25519KeySize = 32;
inline constexpr size_t kSealedBoxOverhead = 48;  // crypto_box_SEALBYTES
inline constexpr size_t kEd25519PublicKeySize = 32;
inline constexpr size_t kEd25519SeedSize = 32;
inline constexpr size_t kEd25519SignatureSize = 64;
inline constexpr size_t kXChaChaKeySize = 32;
inline constexpr size_t kXChaChaNonceSize = 24;
inline constexpr size_t kXChaChaTagSize = 16;
inline constexpr size_t kArgon2SaltSize = 16;

using PublicKey = std::array<uint8_t, 32>;
using Signature = std::array<uint8_t, 64>;
using Hash256 = std::array<uint8_t, 32>;

// Initialises libsodium once; aborts the process if the library cannot start
// (no randomness source): nothing safe can be done without it.
void InitSodium();

void RandomBytes(MutableByteView out);
template <size_t N>
std::array<uint8_t, N> RandomArray() {
  std::array<uint8_t, N> out;
  RandomBytes(out);
  return out;
}
SecretBytes RandomSecret(size_t size);

// BLAKE2b with a 32-byte output. Optional key (0 or 16..64 bytes); a key
// over 64 bytes is a caller bug and aborts.
Hash256 Blake2b256(ByteView data, ByteView key = {});

// Incremental BLAKE2b-256.
class Blake2bHasher {
 public:
  Blake2bHasher();
  void Update(ByteView data);
  Hash256 Finish();

 private:
  alignas(64) unsigned char state_[384];
};

// X25519 key pair for sealed boxes.
struct BoxKeyPair {
  PublicKey public_key;
  SecretBytes secret_key;  // 32 bytes
};
BoxKeyPair GenerateBoxKeyPair();
// The X25519 public key of a 32-byte secret key.
PublicKey X25519PublicKey(const SecretBytes& secret_key);

// crypto_box_seal: anonymous encryption to `recipient`. Output is
// plaintext.size() + 48 bytes.
Bytes SealToPublicKey(const PublicKey& recipient, ByteView plaintext);
// Opens a sealed box. kDataLoss if it does not authenticate (wrong key or
// damaged bytes).
Result<SecretBytes> OpenSealed(const PublicKey& recipient_pk, const SecretBytes& recipient_sk,
                               ByteView sealed);

// Ed25519.
struct SigningKeyPair {
  PublicKey public_key;
  SecretBytes secret_key;  // 64 bytes (seed || public key), libsodium layout
};
SigningKeyPair GenerateSigningKeyPair();
Result<SigningKeyPair> SigningKeyPairFromSeed(ByteView seed32);
// The 32-byte seed of a signing key (what key files store).
SecretBytes SigningSeed(const SigningKeyPair& kp);
Signature Sign(const SigningKeyPair& kp, ByteView message);
bool VerifySignature(const PublicKey& public_key, ByteView message, const Signature& signature);

// Argon2id (crypto_pwhash) → 32-byte key.
struct Argon2Params {
  // 16 passes over 16 MiB: RFC 9106's procedure within a 32 MiB peak RSS
  // for restore and verify (docs/adr/0005).
  uint64_t opslimit = 16;
  uint64_t memlimit = 16ull << 20;
};
Result<SecretBytes> DeriveKeyFromPassphrase(std::string_view passphrase, ByteView salt16,
                                            const Argon2Params& params);

// XChaCha20-Poly1305 (IETF). Output = ciphertext || 16-byte tag.
// Precondition: a 32-byte key and a 24-byte nonce; other sizes abort.
Bytes XChaChaSeal(const SecretBytes& key, ByteView nonce24, ByteView aad, ByteView plaintext);
// kDataLoss when the ciphertext does not authenticate.
Result<SecretBytes> XChaChaOpen(const SecretBytes& key, ByteView nonce24, ByteView aad,
                                ByteView ciphertext);

// ---- Noise primitives (mirror/noise/, docs/format/link-handshake.md) ----
inline constexpr size_t kBlake2b512Size = 64;
inline constexpr size_t kChaChaPolyKeySize = 32;
inline constexpr size_t kChaChaPolyNonceSize = 12;
inline constexpr size_t kChaChaPolyTagSize = 16;

// Unkeyed BLAKE2b with a 64-byte output (BLAKE2b-512) over the concatenation
// of `parts`, written to `out64` (so that a digest that is key material can
// land directly in a SecretBytes); `out64` may overlap the parts (h = HASH(h
// || data)). Precondition: out64.size() == 64 (else aborts).
void Blake2b512(std::initializer_list<ByteView> parts, MutableByteView out64);

// X25519 Diffie-Hellman (crypto_scalarmult): the 32-byte shared secret of
// `secret_key` (32 bytes) and `public_key`. kInvalidArgument if the secret key
// is not 32 bytes, or if the public key has small order (libsodium refuses it
// and any all-zero result).
Result<SecretBytes> X25519SharedSecret(const SecretBytes& secret_key, const PublicKey& public_key);

// ChaCha20-Poly1305 IETF (RFC 8439, 96-bit nonce). Appends ciphertext || 16-byte
// tag to `out`. Precondition: a 32-byte key and a 12-byte nonce (other sizes
// abort); `plaintext` does not point into `out`.
void ChaChaPolyIetfSeal(const SecretBytes& key, ByteView nonce12, ByteView aad, ByteView plaintext,
                        Bytes& out);
// Replaces `out` with the plaintext. kDataLoss (and `out` cleared) when the
// ciphertext is shorter than its tag or does not authenticate. Same
// preconditions as ChaChaPolyIetfSeal (`ciphertext` does not point into `out`).
Status ChaChaPolyIetfOpen(const SecretBytes& key, ByteView nonce12, ByteView aad,
                          ByteView ciphertext, Bytes& out);

// Constant-time comparison of equal-length buffers (false if lengths differ).
bool ConstantTimeEqual(ByteView a, ByteView b);

// Standard base64 (RFC 4648 section 4, with padding), via libsodium.
std::string Base64Encode(ByteView data);

}  // namespace ferry::sodium
