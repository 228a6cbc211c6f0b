// OpenSSL libcrypto (EVP) wrappers for the bulk data path: HMAC-SHA-256 chunk
// ids, SHA-256 pack checksums, and the chunk AEADs (AES-256-GCM, suite 1;
// ChaCha20-Poly1305, suite 2). EVP picks the CPU's SHA-NI / AES-NI / ARMv8
// crypto paths; see docs/adr/0001-openssl-for-bulk-crypto.md for the figures.
//
// Thread-safety: the free functions are thread-safe. HmacSha256 and
// Sha256Hasher objects are thread-compatible (use one per thread, or share a
// const HmacSha256 whose Compute() is const and thread-safe).
#pragma once

#include <array>
#include <cstdint>

#include "core/bytes.h"
#include "core/secret_bytes.h"
#include "core/status.h"

typedef struct evp_mac_st EVP_MAC;
typedef struct evp_mac_ctx_st EVP_MAC_CTX;
typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace ferry::evp {

using Digest256 = std::array<uint8_t, 32>;

enum class AeadSuite : uint8_t {
  kAes256Gcm = 1,
  kChaCha20Poly1305 = 2,
};
inline constexpr size_t kAeadKeySize = 32;
inline constexpr size_t kAeadNonceSize = 12;
inline constexpr size_t kAeadTagSize = 16;

// True when the CPU has AES instructions OpenSSL uses (x86 AES-NI+PCLMUL or
// ARMv8 AES); the default suite is chosen from this.
bool CpuHasAesInstructions();
AeadSuite DefaultSuite();
bool IsKnownSuite(uint8_t suite);

// HMAC-SHA-256 under a fixed key.
class HmacSha256 {
 public:
  // key: any length (Ferry uses 32 bytes). The key is copied into wiped memory.
  explicit HmacSha256(ByteView key);
  ~HmacSha256();
  HmacSha256(const HmacSha256&) = delete;
  HmacSha256& operator=(const HmacSha256&) = delete;

  // Thread-safe.
  Digest256 Compute(ByteView data) const;

 private:
  SecretBytes key_;
  EVP_MAC* mac_ = nullptr;
  EVP_MAC_CTX* keyed_ = nullptr;  // initialized with key_, copied per Compute
};

Digest256 Sha256(ByteView data);

class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;
  void Update(ByteView data);
  Digest256 Finish();

 private:
  EVP_MD_CTX* ctx_;
};

// Encrypts `plaintext` and appends ciphertext || 16-byte tag to `out`.
// key: 32 bytes; nonce: 12 bytes. kInvalidArgument on bad sizes or suite.
Status AeadSeal(AeadSuite suite, ByteView key, ByteView nonce, ByteView aad, ByteView plaintext,
                Bytes& out);

// Decrypts `ciphertext_and_tag` into `out` (resized to the plaintext size).
// kDataLoss when the tag does not verify; `out` is then cleared.
Status AeadOpen(AeadSuite suite, ByteView key, ByteView nonce, ByteView aad,
                ByteView ciphertext_and_tag, Bytes& out);

}  // namespace ferry::evp
