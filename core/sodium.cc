#include "core/sodium.h"

#include <sodium.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace ferry::sodium {

static_assert(crypto_box_SEALBYTES == kSealedBoxOverhead);
static_assert(crypto_box_PUBLICKEYBYTES == kX25519KeySize);
static_assert(crypto_sign_PUBLICKEYBYTES == kEd25519PublicKeySize);
static_assert(crypto_sign_SEEDBYTES == kEd25519SeedSize);
static_assert(crypto_sign_BYTES == kEd25519SignatureSize);
static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == kXChaChaNonceSize);
static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == kXChaChaTagSize);
static_assert(crypto_pwhash_SALTBYTES == kArgon2SaltSize);
static_assert(crypto_generichash_BYTES_MAX == kBlake2b512Size);
static_assert(crypto_scalarmult_BYTES == kX25519KeySize);
static_assert(crypto_scalarmult_SCALARBYTES == kX25519KeySize);
static_assert(crypto_aead_chacha20poly1305_ietf_KEYBYTES == kChaChaPolyKeySize);
static_assert(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == kChaChaPolyNonceSize);
static_assert(crypto_aead_chacha20poly1305_ietf_ABYTES == kChaChaPolyTagSize);

void InitSodium() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (sodium_init() < 0) {
      std::fprintf(stderr, "fatal: libsodium failed to initialise\n");
      std::abort();
    }
  });
}

void RandomBytes(MutableByteView out) {
  InitSodium();
  randombytes_buf(out.data(), out.size());
}

SecretBytes RandomSecret(size_t size) {
  SecretBytes s(size);
  RandomBytes(s.mutable_view());
  return s;
}

Hash256 Blake2b256(ByteView data, ByteView key) {
  InitSodium();
  Hash256 out;
  if (crypto_generichash(out.data(), out.size(), data.data(), data.size(),
                         key.empty() ? nullptr : key.data(), key.size()) != 0) {
    // Only a key over 64 bytes fails, and then `out` is never written: stop
    // rather than return uninitialised bytes as a hash.
    std::fprintf(stderr, "fatal: BLAKE2b key of %zu bytes (at most 64)\n", key.size());
    std::abort();
  }
  return out;
}

static_assert(sizeof(crypto_generichash_state) <= 384);

Blake2bHasher::Blake2bHasher() {
  InitSodium();
  crypto_generichash_init(reinterpret_cast<crypto_generichash_state*>(state_), nullptr, 0, 32);
}

void Blake2bHasher::Update(ByteView data) {
  crypto_generichash_update(reinterpret_cast<crypto_generichash_state*>(state_), data.data(),
                            data.size());
}

Hash256 Blake2bHasher::Finish() {
  Hash256 out;
  crypto_generichash_final(reinterpret_cast<crypto_generichash_state*>(state_), out.data(),
                           out.size());
  return out;
}

BoxKeyPair GenerateBoxKeyPair() {
  InitSodium();
  BoxKeyPair kp{PublicKey{}, SecretBytes(crypto_box_SECRETKEYBYTES)};
  crypto_box_keypair(kp.public_key.data(), kp.secret_key.data());
  return kp;
}

PublicKey X25519PublicKey(const SecretBytes& secret_key) {
  InitSodium();
  PublicKey pk{};
  if (secret_key.size() == crypto_scalarmult_SCALARBYTES) {
    crypto_scalarmult_base(pk.data(), secret_key.data());
  }
  return pk;
}

Bytes SealToPublicKey(const PublicKey& recipient, ByteView plaintext) {
  InitSodium();
  Bytes out(plaintext.size() + crypto_box_SEALBYTES);
  crypto_box_seal(out.data(), plaintext.data(), plaintext.size(), recipient.data());
  return out;
}

Result<SecretBytes> OpenSealed(const PublicKey& recipient_pk, const SecretBytes& recipient_sk,
                               ByteView sealed) {
  InitSodium();
  if (recipient_sk.size() != crypto_box_SECRETKEYBYTES) {
    return InvalidArgumentError("sealed box: secret key has the wrong size");
  }
  if (sealed.size() < crypto_box_SEALBYTES) {
    return DataLossError("sealed box is shorter than its overhead");
  }
  SecretBytes out(sealed.size() - crypto_box_SEALBYTES);
  if (crypto_box_seal_open(out.data(), sealed.data(), sealed.size(), recipient_pk.data(),
                           recipient_sk.data()) != 0) {
    return DataLossError("sealed box does not open with this key");
  }
  return out;
}

SigningKeyPair GenerateSigningKeyPair() {
  InitSodium();
  SigningKeyPair kp{PublicKey{}, SecretBytes(crypto_sign_SECRETKEYBYTES)};
  crypto_sign_keypair(kp.public_key.data(), kp.secret_key.data());
  return kp;
}

Result<SigningKeyPair> SigningKeyPairFromSeed(ByteView seed32) {
  InitSodium();
  if (seed32.size() != crypto_sign_SEEDBYTES) {
    return InvalidArgumentError("signing seed must be 32 bytes");
  }
  SigningKeyPair kp{PublicKey{}, SecretBytes(crypto_sign_SECRETKEYBYTES)};
  crypto_sign_seed_keypair(kp.public_key.data(), kp.secret_key.data(), seed32.data());
  return kp;
}

SecretBytes SigningSeed(const SigningKeyPair& kp) {
  // libsodium's 64-byte secret key is seed || public key.
  return SecretBytes(kp.secret_key.data(), crypto_sign_SEEDBYTES);
}

Signature Sign(const SigningKeyPair& kp, ByteView message) {
  InitSodium();
  Signature sig;
  crypto_sign_detached(sig.data(), nullptr, message.data(), message.size(), kp.secret_key.data());
  return sig;
}

bool VerifySignature(const PublicKey& public_key, ByteView message, const Signature& signature) {
  InitSodium();
  return crypto_sign_verify_detached(signature.data(), message.data(), message.size(),
                                     public_key.data()) == 0;
}

Result<SecretBytes> DeriveKeyFromPassphrase(std::string_view passphrase, ByteView salt16,
                                            const Argon2Params& params) {
  InitSodium();
  if (salt16.size() != crypto_pwhash_SALTBYTES) {
    return InvalidArgumentError("argon2id salt must be 16 bytes");
  }
  if (params.opslimit < crypto_pwhash_OPSLIMIT_MIN ||
      params.opslimit > crypto_pwhash_OPSLIMIT_MAX ||
      params.memlimit < crypto_pwhash_MEMLIMIT_MIN || params.memlimit > (4ull << 30)) {
    return InvalidArgumentError("argon2id parameters out of range (opslimit " +
                                std::to_string(params.opslimit) + ", memlimit " +
                                std::to_string(params.memlimit) + ")");
  }
  SecretBytes key(32);
  if (crypto_pwhash(key.data(), key.size(), passphrase.data(), passphrase.size(), salt16.data(),
                    params.opslimit, static_cast<size_t>(params.memlimit),
                    crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return ResourceExhaustedError("argon2id: out of memory deriving the passphrase key");
  }
  return key;
}

Bytes XChaChaSeal(const SecretBytes& key, ByteView nonce24, ByteView aad, ByteView plaintext) {
  InitSodium();
  // libsodium reads exactly 32 + 24 bytes: a shorter buffer would be read past its end.
  if (key.size() != kXChaChaKeySize || nonce24.size() != kXChaChaNonceSize) {
    std::fprintf(stderr, "fatal: XChaChaSeal: key of %zu bytes, nonce of %zu (need 32 and 24)\n",
                 key.size(), nonce24.size());
    std::abort();
  }
  Bytes out(plaintext.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long out_len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(out.data(), &out_len, plaintext.data(),
                                             plaintext.size(), aad.data(), aad.size(), nullptr,
                                             nonce24.data(), key.data());
  out.resize(out_len);
  return out;
}

Result<SecretBytes> XChaChaOpen(const SecretBytes& key, ByteView nonce24, ByteView aad,
                                ByteView ciphertext) {
  InitSodium();
  if (key.size() != kXChaChaKeySize || nonce24.size() != kXChaChaNonceSize) {
    return InvalidArgumentError("xchacha20-poly1305: bad key or nonce size");
  }
  if (ciphertext.size() < crypto_aead_xchacha20poly1305_ietf_ABYTES) {
    return DataLossError("xchacha20-poly1305: ciphertext shorter than its tag");
  }
  SecretBytes out(ciphertext.size() - crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long out_len = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(out.data(), &out_len, nullptr, ciphertext.data(),
                                                 ciphertext.size(), aad.data(), aad.size(),
                                                 nonce24.data(), key.data()) != 0) {
    return DataLossError("xchacha20-poly1305: ciphertext does not authenticate");
  }
  return out;
}

void Blake2b512(std::initializer_list<ByteView> parts, MutableByteView out64) {
  InitSodium();
  if (out64.size() != kBlake2b512Size) {
    std::fprintf(stderr, "fatal: Blake2b512 into %zu bytes (need 64)\n", out64.size());
    std::abort();
  }
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, kBlake2b512Size);
  for (ByteView part : parts) crypto_generichash_update(&state, part.data(), part.size());
  crypto_generichash_final(&state, out64.data(), out64.size());
  sodium_memzero(&state, sizeof(state));  // the input may be key material (HMAC)
}

Result<SecretBytes> X25519SharedSecret(const SecretBytes& secret_key, const PublicKey& public_key) {
  InitSodium();
  if (secret_key.size() != crypto_scalarmult_SCALARBYTES) {
    return InvalidArgumentError("x25519: secret key must be 32 bytes");
  }
  SecretBytes shared(crypto_scalarmult_BYTES);
  // libsodium returns -1 for a small-order public key and for an all-zero
  // result: the peer could otherwise force a shared secret it knows.
  if (crypto_scalarmult(shared.data(), secret_key.data(), public_key.data()) != 0) {
    return InvalidArgumentError("x25519: public key of small order (all-zero shared secret)");
  }
  return shared;
}

namespace {
void CheckChaChaPolySizes(const char* what, const SecretBytes& key, ByteView nonce12) {
  // libsodium reads exactly 32 + 12 bytes: a shorter buffer would be read past its end.
  if (key.size() != kChaChaPolyKeySize || nonce12.size() != kChaChaPolyNonceSize) {
    std::fprintf(stderr, "fatal: %s: key of %zu bytes, nonce of %zu (need 32 and 12)\n", what,
                 key.size(), nonce12.size());
    std::abort();
  }
}
}  // namespace

void ChaChaPolyIetfSeal(const SecretBytes& key, ByteView nonce12, ByteView aad, ByteView plaintext,
                        Bytes& out) {
  InitSodium();
  CheckChaChaPolySizes("ChaChaPolyIetfSeal", key, nonce12);
  const size_t start = out.size();
  out.resize(start + plaintext.size() + kChaChaPolyTagSize);
  unsigned long long out_len = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(out.data() + start, &out_len, plaintext.data(),
                                            plaintext.size(), aad.data(), aad.size(), nullptr,
                                            nonce12.data(), key.data());
  out.resize(start + static_cast<size_t>(out_len));
}

Status ChaChaPolyIetfOpen(const SecretBytes& key, ByteView nonce12, ByteView aad,
                          ByteView ciphertext, Bytes& out) {
  InitSodium();
  CheckChaChaPolySizes("ChaChaPolyIetfOpen", key, nonce12);
  out.clear();
  if (ciphertext.size() < kChaChaPolyTagSize) {
    return DataLossError("chacha20-poly1305: ciphertext shorter than its tag");
  }
  out.resize(ciphertext.size() - kChaChaPolyTagSize);
  unsigned long long out_len = 0;
  if (crypto_aead_chacha20poly1305_ietf_decrypt(out.data(), &out_len, nullptr, ciphertext.data(),
                                                ciphertext.size(), aad.data(), aad.size(),
                                                nonce12.data(), key.data()) != 0) {
    out.clear();
    return DataLossError("chacha20-poly1305: ciphertext does not authenticate");
  }
  out.resize(static_cast<size_t>(out_len));
  return OkStatus();
}

bool ConstantTimeEqual(ByteView a, ByteView b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Base64Encode(ByteView data) {
  const size_t len = sodium_base64_encoded_len(data.size(), sodium_base64_VARIANT_ORIGINAL);
  std::string out(len, '\0');
  sodium_bin2base64(out.data(), len, data.data(), data.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(len - 1);  // the encoded length counts the terminating NUL
  return out;
}

}  // namespace ferry::sodium
