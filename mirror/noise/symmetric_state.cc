#include "mirror/noise/symmetric_state.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/sodium.h"

namespace ferry::mirror::noise {
namespace {

static_assert(kHashLen == sodium::kBlake2b512Size);

// HMAC over data1 || data2 (HKDF's later outputs hash output_{i-1} || i).
void Hmac(ByteView key, ByteView data1, ByteView data2, MutableByteView out64) {
  // K0: the key zero-padded to the block size, or its hash when longer
  // (RFC 2104 section 2).
  SecretBytes k0(kBlockLen);
  if (key.size() > kBlockLen) {
    sodium::Blake2b512({key}, k0.mutable_view().first(kHashLen));
  } else if (!key.empty()) {
    std::memcpy(k0.data(), key.data(), key.size());
  }
  SecretBytes pad(kBlockLen);
  // inner = H((K0 ^ ipad) || data)
  for (size_t i = 0; i < kBlockLen; ++i) pad.data()[i] = static_cast<uint8_t>(k0.data()[i] ^ 0x36);
  SecretBytes inner(kHashLen);
  sodium::Blake2b512({pad.view(), data1, data2}, inner.mutable_view());
  // out = H((K0 ^ opad) || inner). `out64` is written only here, after the
  // key and data were last read, so it may overlap them.
  for (size_t i = 0; i < kBlockLen; ++i) pad.data()[i] = static_cast<uint8_t>(k0.data()[i] ^ 0x5c);
  sodium::Blake2b512({pad.view(), inner.view()}, out64);
}

// HKDF outputs are HASHLEN (64) bytes; a cipher key takes the first 32
// (spec 5.2: "If HASHLEN is 64, then truncates temp_k to 32 bytes").
CipherState CipherFromHkdfOutput(const SecretBytes& output) {
  return CipherState(SecretBytes(output.data(), kKeySize));
}

}  // namespace

void HmacBlake2b(ByteView key, ByteView data, MutableByteView out64) { Hmac(key, data, {}, out64); }

HkdfOutputs Hkdf(ByteView chaining_key, ByteView input_key_material, int outputs) {
  if (outputs != 2 && outputs != 3) {
    std::fprintf(stderr, "fatal: noise HKDF with %d outputs (2 or 3)\n", outputs);
    std::abort();
  }
  SecretBytes temp_key(kHashLen);
  Hmac(chaining_key, input_key_material, {}, temp_key.mutable_view());
  HkdfOutputs out{SecretBytes(kHashLen), SecretBytes(kHashLen), SecretBytes()};
  static constexpr uint8_t kOne[1] = {0x01};
  static constexpr uint8_t kTwo[1] = {0x02};
  static constexpr uint8_t kThree[1] = {0x03};
  Hmac(temp_key.view(), kOne, {}, out.out1.mutable_view());
  Hmac(temp_key.view(), out.out1.view(), kTwo, out.out2.mutable_view());
  if (outputs == 3) {
    out.out3 = SecretBytes(kHashLen);
    Hmac(temp_key.view(), out.out2.view(), kThree, out.out3.mutable_view());
  }
  return out;
}

SymmetricState::SymmetricState(std::string_view protocol_name) : ck_(kHashLen), h_(kHashLen, 0) {
  if (protocol_name.size() <= kHashLen) {
    std::memcpy(h_.data(), protocol_name.data(), protocol_name.size());
  } else {
    sodium::Blake2b512({AsBytes(protocol_name)}, h_);
  }
  std::memcpy(ck_.data(), h_.data(), kHashLen);
}

void SymmetricState::MixKey(ByteView input_key_material) {
  HkdfOutputs out = Hkdf(ck_.view(), input_key_material, 2);
  ck_ = std::move(out.out1);
  cipher_ = CipherFromHkdfOutput(out.out2);
}

void SymmetricState::MixHash(ByteView data) { sodium::Blake2b512({h_, data}, h_); }

Status SymmetricState::EncryptAndHash(ByteView plaintext, Bytes& out) {
  const size_t start = out.size();
  RETURN_IF_ERROR(cipher_.EncryptWithAd(h_, plaintext, out));
  MixHash(ByteView(out).subspan(start));
  return OkStatus();
}

Status SymmetricState::DecryptAndHash(ByteView ciphertext, Bytes& out) {
  RETURN_IF_ERROR(cipher_.DecryptWithAd(h_, ciphertext, out));
  MixHash(ciphertext);
  return OkStatus();
}

std::pair<CipherState, CipherState> SymmetricState::Split() {
  HkdfOutputs out = Hkdf(ck_.view(), {}, 2);
  ck_ = SecretBytes();  // wiped: no further keys come from this handshake
  return {CipherFromHkdfOutput(out.out1), CipherFromHkdfOutput(out.out2)};
}

}  // namespace ferry::mirror::noise
