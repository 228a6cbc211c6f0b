// CipherState: the Noise Protocol Framework's (revision 34, section 5.1)
// cipher object with the ChaChaPoly cipher of section 12.3: a 32-byte key k
// and a 64-bit counter n, encrypting with ChaCha20-Poly1305 IETF under the
// 96-bit nonce 0x00000000 || little-endian(n). Used inside the handshake
// (SymmetricState) and, after HandshakeState::Split(), as the link's
// transport cipher: each transport message is one EncryptWithAd output.
//
// Format: docs/format/link-handshake.md ("Transport messages").
// Thread-safety: thread-compatible; one CipherState per direction.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/bytes.h"
#include "core/secret_bytes.h"
#include "core/status.h"

namespace ferry::mirror::noise {

// The largest Noise message (handshake or transport), in bytes (spec 3).
inline constexpr size_t kMaxMessageSize = 65535;
// The ChaChaPoly authentication tag.
inline constexpr size_t kTagSize = 16;
// The largest transport payload: kMaxMessageSize - kTagSize.
inline constexpr size_t kMaxPayloadSize = kMaxMessageSize - kTagSize;
// The cipher key.
inline constexpr size_t kKeySize = 32;

class CipherState {
 public:
  // No key: EncryptWithAd/DecryptWithAd pass bytes through (spec 5.1).
  CipherState() = default;
  // InitializeKey(key): `key` must be 32 bytes (else aborts: a caller bug).
  // The nonce starts at 0.
  explicit CipherState(SecretBytes key);

  CipherState(CipherState&&) noexcept = default;
  CipherState& operator=(CipherState&&) noexcept = default;
  CipherState(const CipherState&) = delete;  // two copies would reuse nonces
  CipherState& operator=(const CipherState&) = delete;

  bool has_key() const { return !key_.empty(); }
  // The nonce the next EncryptWithAd/DecryptWithAd uses.
  uint64_t nonce() const { return nonce_; }

  // Appends ciphertext || 16-byte tag to `out` (just the plaintext when there
  // is no key) and increments the nonce. Errors, with `out` and the nonce
  // unchanged: kInvalidArgument if the output would exceed kMaxMessageSize
  // (a payload over 65519 bytes with a key); kResourceExhausted when the
  // nonce has reached 2^64-1, which the spec reserves (the session must end).
  // Precondition: `ad` and `plaintext` do not point into `out`.
  Status EncryptWithAd(ByteView ad, ByteView plaintext, Bytes& out);

  // Replaces `out` with the plaintext of `ciphertext` and increments the
  // nonce (no key: copies the bytes). On any failure `out` is cleared and
  // the nonce does NOT advance: kDataLoss if the ciphertext is shorter than
  // its tag or does not authenticate under this key, nonce and `ad` (a
  // damaged, replayed, reordered or foreign message); kInvalidArgument if
  // it exceeds kMaxMessageSize; kResourceExhausted at nonce 2^64-1.
  // A transport reader must end the session on any error.
  // Precondition: `ad` and `ciphertext` do not point into `out`.
  Status DecryptWithAd(ByteView ad, ByteView ciphertext, Bytes& out);

  // REKEY (spec 4.2, 11.3): the key becomes the first 32 bytes of
  // ENCRYPT(k, 2^64-1, empty ad, 32 zero bytes); the nonce is unchanged.
  // Both sides must rekey at the same point of the stream. kFailedPrecondition
  // without a key.
  Status Rekey();

  // SetNonce (spec 5.1), for tests of nonce exhaustion.
  void SetNonceForTest(uint64_t nonce) { nonce_ = nonce; }

 private:
  SecretBytes key_;  // empty, or 32 bytes
  uint64_t nonce_ = 0;
};

}  // namespace ferry::mirror::noise
