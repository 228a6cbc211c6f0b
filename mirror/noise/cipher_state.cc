#include "mirror/noise/cipher_state.h"

#include <sodium.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <utility>

#include "core/sodium.h"

namespace ferry::mirror::noise {
namespace {

static_assert(kTagSize == sodium::kChaChaPolyTagSize);
static_assert(kKeySize == sodium::kChaChaPolyKeySize);

// 2^64-1 is reserved (spec 5.1): it is never used for a message, only by Rekey.
constexpr uint64_t kReservedNonce = std::numeric_limits<uint64_t>::max();

// Spec 12.3: 32 bits of zeros followed by the little-endian 64-bit counter.
std::array<uint8_t, 12> NonceBytes(uint64_t n) {
  std::array<uint8_t, 12> nonce{};
  StoreU64(nonce.data() + 4, n);
  return nonce;
}

}  // namespace

CipherState::CipherState(SecretBytes key) : key_(std::move(key)) {
  if (key_.size() != kKeySize) {
    std::fprintf(stderr, "fatal: noise CipherState key of %zu bytes (need 32)\n", key_.size());
    std::abort();
  }
}

Status CipherState::EncryptWithAd(ByteView ad, ByteView plaintext, Bytes& out) {
  const size_t overhead = has_key() ? kTagSize : 0;
  if (plaintext.size() > kMaxMessageSize - overhead) {
    return InvalidArgumentError("noise: plaintext of " + std::to_string(plaintext.size()) +
                                " bytes exceeds the " + std::to_string(kMaxMessageSize - overhead) +
                                "-byte limit of one message");
  }
  if (!has_key()) {
    PutBytes(out, plaintext);
    return OkStatus();
  }
  if (nonce_ == kReservedNonce) {
    return ResourceExhaustedError("noise: send nonce exhausted (2^64-1 messages)");
  }
  sodium::ChaChaPolyIetfSeal(key_, NonceBytes(nonce_), ad, plaintext, out);
  ++nonce_;
  return OkStatus();
}

Status CipherState::DecryptWithAd(ByteView ad, ByteView ciphertext, Bytes& out) {
  out.clear();
  if (ciphertext.size() > kMaxMessageSize) {
    return InvalidArgumentError("noise: message of " + std::to_string(ciphertext.size()) +
                                " bytes exceeds the 65535-byte limit");
  }
  if (!has_key()) {
    out.assign(ciphertext.begin(), ciphertext.end());
    return OkStatus();
  }
  if (nonce_ == kReservedNonce) {
    return ResourceExhaustedError("noise: receive nonce exhausted (2^64-1 messages)");
  }
  Status s = sodium::ChaChaPolyIetfOpen(key_, NonceBytes(nonce_), ad, ciphertext, out);
  if (!s.ok()) {
    // The counter stays put: the message was not accepted.
    return DataLossError("noise: message with nonce " + std::to_string(nonce_) + " (" +
                         std::to_string(ciphertext.size()) +
                         " bytes) does not authenticate: damaged, replayed, reordered or not "
                         "from this session");
  }
  ++nonce_;
  return OkStatus();
}

Status CipherState::Rekey() {
  if (!has_key()) return FailedPreconditionError("noise: rekey without a key");
  static constexpr std::array<uint8_t, kKeySize> kZeros{};
  Bytes out;
  sodium::ChaChaPolyIetfSeal(key_, NonceBytes(kReservedNonce), {}, kZeros, out);
  key_ = SecretBytes(out.data(), kKeySize);
  sodium_memzero(out.data(), out.size());  // held the new key
  return OkStatus();
}

}  // namespace ferry::mirror::noise
