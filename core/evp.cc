#include "core/evp.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <memory>

namespace ferry::evp {
namespace {

[[noreturn]] void Fatal(const char* what) {
  std::fprintf(stderr, "fatal: OpenSSL: %s\n", what);
  std::abort();
}

// Fetched once: EVP_*_fetch takes a lock and a hash-table lookup per call.
const EVP_CIPHER* FetchedCipher(AeadSuite suite) {
  static const EVP_CIPHER* gcm = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  static const EVP_CIPHER* chacha = EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr);
  switch (suite) {
    case AeadSuite::kAes256Gcm:
      return gcm;
    case AeadSuite::kChaCha20Poly1305:
      return chacha;
  }
  return nullptr;
}

const EVP_MD* FetchedSha256() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  if (md == nullptr) Fatal("SHA256 unavailable");
  return md;
}

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

// One context per thread, reset per message: allocation-free steady state.
EVP_CIPHER_CTX* ThreadCipherCtx() {
  thread_local CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) Fatal("EVP_CIPHER_CTX_new");
  EVP_CIPHER_CTX_reset(ctx.get());
  return ctx.get();
}

Status CheckAeadArgs(AeadSuite suite, ByteView key, ByteView nonce) {
  if (!IsKnownSuite(static_cast<uint8_t>(suite)) || FetchedCipher(suite) == nullptr) {
    return InvalidArgumentError("unknown or unavailable AEAD suite " +
                                std::to_string(static_cast<int>(suite)));
  }
  if (key.size() != kAeadKeySize) return InvalidArgumentError("AEAD key must be 32 bytes");
  if (nonce.size() != kAeadNonceSize) return InvalidArgumentError("AEAD nonce must be 12 bytes");
  return OkStatus();
}

}  // namespace

bool CpuHasAesInstructions() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned int eax, ebx, ecx, edx;
  __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(1), "c"(0));
  const bool aesni = (ecx >> 25) & 1;
  const bool pclmul = (ecx >> 1) & 1;
  return aesni && pclmul;
#elif defined(__aarch64__)
  return true;  // ARMv8 servers and boards Ferry targets ship the crypto extension.
#else
  return false;
#endif
}

AeadSuite DefaultSuite() {
  static const AeadSuite suite =
      CpuHasAesInstructions() ? AeadSuite::kAes256Gcm : AeadSuite::kChaCha20Poly1305;
  return suite;
}

bool IsKnownSuite(uint8_t suite) {
  return suite == static_cast<uint8_t>(AeadSuite::kAes256Gcm) ||
         suite == static_cast<uint8_t>(AeadSuite::kChaCha20Poly1305);
}

HmacSha256::HmacSha256(ByteView key) : key_(key) {
  mac_ = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac_ == nullptr) Fatal("HMAC unavailable");
  // Keyed once. Every Compute copies this context: initializing one per
  // call looked SHA-256 up by name and ran the key schedule (two more
  // compression-function calls) again for every chunk.
  keyed_ = EVP_MAC_CTX_new(mac_);
  char digest_name[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end(),
  };
  if (keyed_ == nullptr || EVP_MAC_init(keyed_, key_.data(), key_.size(), params) != 1) {
    Fatal("HMAC-SHA-256 init");
  }
}

HmacSha256::~HmacSha256() {
  EVP_MAC_CTX_free(keyed_);
  EVP_MAC_free(mac_);
}

Digest256 HmacSha256::Compute(ByteView data) const {
  // Duplicating only reads `keyed_`: concurrent calls are safe.
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(keyed_);
  if (ctx == nullptr) Fatal("EVP_MAC_CTX_dup");
  Digest256 out;
  size_t out_len = 0;
  if (EVP_MAC_update(ctx, data.data(), data.size()) != 1 ||
      EVP_MAC_final(ctx, out.data(), &out_len, out.size()) != 1 || out_len != out.size()) {
    EVP_MAC_CTX_free(ctx);
    Fatal("HMAC-SHA-256 failed");
  }
  EVP_MAC_CTX_free(ctx);
  return out;
}

Digest256 Sha256(ByteView data) {
  Sha256Hasher h;
  h.Update(data);
  return h.Finish();
}

Sha256Hasher::Sha256Hasher() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, FetchedSha256(), nullptr) != 1) {
    Fatal("SHA-256 init");
  }
}

Sha256Hasher::~Sha256Hasher() { EVP_MD_CTX_free(ctx_); }

void Sha256Hasher::Update(ByteView data) {
  if (EVP_DigestUpdate(ctx_, data.data(), data.size()) != 1) Fatal("SHA-256 update");
}

Digest256 Sha256Hasher::Finish() {
  Digest256 out;
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_, out.data(), &len) != 1 || len != out.size()) {
    Fatal("SHA-256 final");
  }
  return out;
}

Status AeadSeal(AeadSuite suite, ByteView key, ByteView nonce, ByteView aad, ByteView plaintext,
                Bytes& out) {
  RETURN_IF_ERROR(CheckAeadArgs(suite, key, nonce));
  if (plaintext.size() > INT_MAX || aad.size() > INT_MAX) {
    return InvalidArgumentError("AEAD input too large");
  }
  EVP_CIPHER_CTX* ctx = ThreadCipherCtx();
  const size_t start = out.size();
  out.resize(start + plaintext.size() + kAeadTagSize);
  int len = 0;
  // The default IV length of both ciphers is 12 bytes, so no IVLEN ctrl is needed.
  if (EVP_EncryptInit_ex2(ctx, FetchedCipher(suite), key.data(), nonce.data(), nullptr) != 1 ||
      (!aad.empty() &&
       EVP_EncryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) ||
      EVP_EncryptUpdate(ctx, out.data() + start, &len, plaintext.data(),
                        static_cast<int>(plaintext.size())) != 1) {
    out.resize(start);
    return InternalError("AEAD encrypt failed");
  }
  int final_len = 0;
  if (EVP_EncryptFinal_ex(ctx, out.data() + start + len, &final_len) != 1 ||
      static_cast<size_t>(len + final_len) != plaintext.size() ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kAeadTagSize,
                          out.data() + start + plaintext.size()) != 1) {
    out.resize(start);
    return InternalError("AEAD finalise failed");
  }
  return OkStatus();
}

Status AeadOpen(AeadSuite suite, ByteView key, ByteView nonce, ByteView aad,
                ByteView ciphertext_and_tag, Bytes& out) {
  RETURN_IF_ERROR(CheckAeadArgs(suite, key, nonce));
  if (ciphertext_and_tag.size() < kAeadTagSize) {
    return DataLossError("AEAD ciphertext shorter than its tag");
  }
  if (ciphertext_and_tag.size() > INT_MAX || aad.size() > INT_MAX) {
    return InvalidArgumentError("AEAD input too large");
  }
  const size_t ct_len = ciphertext_and_tag.size() - kAeadTagSize;
  EVP_CIPHER_CTX* ctx = ThreadCipherCtx();
  out.resize(ct_len);
  int len = 0;
  uint8_t tag[kAeadTagSize];
  std::copy(ciphertext_and_tag.begin() + static_cast<std::ptrdiff_t>(ct_len),
            ciphertext_and_tag.end(), tag);
  if (EVP_DecryptInit_ex2(ctx, FetchedCipher(suite), key.data(), nonce.data(), nullptr) != 1 ||
      (!aad.empty() &&
       EVP_DecryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) ||
      EVP_DecryptUpdate(ctx, out.data(), &len, ciphertext_and_tag.data(),
                        static_cast<int>(ct_len)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kAeadTagSize, tag) != 1) {
    out.clear();
    return InternalError("AEAD decrypt failed");
  }
  int final_len = 0;
  if (EVP_DecryptFinal_ex(ctx, out.data() + len, &final_len) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    out.clear();
    return DataLossError("AEAD tag does not verify");
  }
  return OkStatus();
}

}  // namespace ferry::evp
