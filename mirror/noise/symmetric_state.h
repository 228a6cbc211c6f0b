// SymmetricState: the Noise Protocol Framework's (revision 34, section 5.2)
// chaining key ck, handshake hash h and CipherState, with HASH = BLAKE2b-512
// (HASHLEN 64, BLOCKLEN 128; spec 12.8), HMAC-BLAKE2b per RFC 2104 and HKDF as
// spec 4.3 defines it. HandshakeState drives it; nothing else should.
//
// Thread-safety: thread-compatible.
#pragma once

#include <cstddef>
#include <string_view>
#include <utility>

#include "core/bytes.h"
#include "core/secret_bytes.h"
#include "core/status.h"
#include "mirror/noise/cipher_state.h"

namespace ferry::mirror::noise {

inline constexpr size_t kHashLen = 64;    // BLAKE2b-512 output
inline constexpr size_t kBlockLen = 128;  // BLAKE2b block

// HMAC-HASH(key, data) per RFC 2104 with HASH = BLAKE2b-512 and B = 128
// (a key over 128 bytes is hashed first). This is the generic HMAC
// construction, not BLAKE2b's keyed mode. Writes 64 bytes to `out64`
// (precondition: out64.size() == 64; it may overlap the key or the data).
// Exposed for its known-answer test.
void HmacBlake2b(ByteView key, ByteView data, MutableByteView out64);

// HKDF(chaining_key, input_key_material, num_outputs) of spec 4.3, for 2 or 3
// outputs of 64 bytes each: temp_key = HMAC(ck, ikm); output1 =
// HMAC(temp_key, 0x01); output_i = HMAC(temp_key, output_{i-1} || i).
// Precondition: outputs is 2 or 3 (else aborts).
struct HkdfOutputs {
  SecretBytes out1, out2, out3;  // out3 is empty when 2 outputs were asked for
};
HkdfOutputs Hkdf(ByteView chaining_key, ByteView input_key_material, int outputs);

class SymmetricState {
 public:
  // InitializeSymmetric(protocol_name): h = the name zero-padded to 64 bytes
  // (or its hash if longer), ck = h, no cipher key.
  explicit SymmetricState(std::string_view protocol_name);

  // ck, k = HKDF(ck, input_key_material, 2); k truncated to 32 bytes; n = 0.
  void MixKey(ByteView input_key_material);
  // h = HASH(h || data).
  void MixHash(ByteView data);
  // Appends EncryptWithAd(h, plaintext) to `out`, then mixes that ciphertext
  // into h. Errors as CipherState::EncryptWithAd.
  Status EncryptAndHash(ByteView plaintext, Bytes& out);
  // Replaces `out` with DecryptWithAd(h, ciphertext), then mixes the
  // ciphertext into h. Errors as CipherState::DecryptWithAd (h unchanged).
  Status DecryptAndHash(ByteView ciphertext, Bytes& out);
  // Two CipherStates from HKDF(ck, empty, 2): first for initiator→responder.
  // Wipes ck: call once, at the end of the handshake.
  std::pair<CipherState, CipherState> Split();

  bool has_key() const { return cipher_.has_key(); }
  const Bytes& handshake_hash() const { return h_; }

 private:
  SecretBytes ck_;  // 64 bytes
  Bytes h_;         // 64 bytes; not secret (it is the channel binding)
  CipherState cipher_;
};

}  // namespace ferry::mirror::noise
