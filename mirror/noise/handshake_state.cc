#include "mirror/noise/handshake_state.h"

#include <algorithm>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace ferry::mirror::noise {

enum class internal::Token { kE, kS, kEE, kES, kSE, kSS };

namespace {

using internal::Token;

// One pattern of spec 7.4/7.5: which static keys are pre-messages, and the
// tokens of each message (even indices from the initiator).
struct PatternSpec {
  bool initiator_static_premessage;
  bool responder_static_premessage;
  std::span<const std::span<const Token>> messages;
};

using enum Token;
constexpr Token kNN1[] = {kE};
constexpr Token kNN2[] = {kE, kEE};
constexpr std::span<const Token> kNNMessages[] = {kNN1, kNN2};

// KK: -> s  <- s  ...  -> e, es, ss  <- e, ee, se
constexpr Token kKK1[] = {kE, kES, kSS};
constexpr Token kKK2[] = {kE, kEE, kSE};
constexpr std::span<const Token> kKKMessages[] = {kKK1, kKK2};

// IK: <- s  ...  -> e, es, s, ss  <- e, ee, se
constexpr Token kIK1[] = {kE, kES, kS, kSS};
constexpr Token kIK2[] = {kE, kEE, kSE};
constexpr std::span<const Token> kIKMessages[] = {kIK1, kIK2};

// XX: -> e  <- e, ee, s, es  -> s, se
constexpr Token kXX1[] = {kE};
constexpr Token kXX2[] = {kE, kEE, kS, kES};
constexpr Token kXX3[] = {kS, kSE};
constexpr std::span<const Token> kXXMessages[] = {kXX1, kXX2, kXX3};

PatternSpec Spec(Pattern p) {
  switch (p) {
    case Pattern::kNN:
      return {false, false, kNNMessages};
    case Pattern::kKK:
      return {true, true, kKKMessages};
    case Pattern::kIK:
      return {false, true, kIKMessages};
    case Pattern::kXX:
      return {false, false, kXXMessages};
  }
  return {false, false, kNNMessages};  // unreachable: every enumerator is handled
}

// Whether a side sends a static key during the handshake (an `s` token).
bool SendsStatic(const PatternSpec& spec, bool initiator) {
  for (size_t i = initiator ? 0 : 1; i < spec.messages.size(); i += 2) {
    for (Token t : spec.messages[i]) {
      if (t == kS) return true;
    }
  }
  return false;
}

Status CheckKeyPair(const KeyPair& kp, std::string_view what) {
  if (kp.private_key.size() != kDhLen) {
    return InvalidArgumentError(std::string(what) + ": private key must be 32 bytes");
  }
  if (sodium::X25519PublicKey(kp.private_key) != kp.public_key) {
    return InvalidArgumentError(std::string(what) + ": public key does not match the private key");
  }
  return OkStatus();
}

}  // namespace

KeyPair GenerateKeyPair() {
  sodium::BoxKeyPair kp = sodium::GenerateBoxKeyPair();
  return KeyPair{kp.public_key, std::move(kp.secret_key)};
}

Result<KeyPair> KeyPairFromPrivate(ByteView private32) {
  if (private32.size() != kDhLen) {
    return InvalidArgumentError("noise: an X25519 private key is 32 bytes, not " +
                                std::to_string(private32.size()));
  }
  KeyPair kp{sodium::PublicKey{}, SecretBytes(private32)};
  kp.public_key = sodium::X25519PublicKey(kp.private_key);
  return kp;
}

std::string ProtocolName(Pattern p) {
  const char* name = "XX";
  switch (p) {
    case Pattern::kNN:
      name = "NN";
      break;
    case Pattern::kKK:
      name = "KK";
      break;
    case Pattern::kIK:
      name = "IK";
      break;
    case Pattern::kXX:
      name = "XX";
      break;
  }
  return std::string("Noise_") + name + "_25519_ChaChaPoly_BLAKE2b";
}

Result<std::unique_ptr<HandshakeState>> HandshakeState::Create(HandshakeConfig config) {
  const PatternSpec spec = Spec(config.pattern);
  const bool initiator = config.initiator;
  const std::string where =
      ProtocolName(config.pattern) + (initiator ? " initiator" : " responder");

  const bool needs_local_static =
      SendsStatic(spec, initiator) ||
      (initiator ? spec.initiator_static_premessage : spec.responder_static_premessage);
  const bool knows_remote_static =
      initiator ? spec.responder_static_premessage : spec.initiator_static_premessage;
  if (needs_local_static && !config.local_static) {
    return InvalidArgumentError(where + " needs a local static key pair");
  }
  if (!needs_local_static && config.local_static) {
    return InvalidArgumentError(where + " does not use a local static key pair");
  }
  if (knows_remote_static && !config.remote_static) {
    return InvalidArgumentError(where + " needs the peer's static public key in advance");
  }
  if (!knows_remote_static && config.remote_static) {
    // Refused rather than ignored: a caller might believe it pins the key.
    return InvalidArgumentError(where +
                                " learns the peer's static key during the handshake; compare "
                                "remote_static() afterwards instead of configuring it");
  }
  if (config.local_static) RETURN_IF_ERROR(CheckKeyPair(*config.local_static, where));
  if (config.local_ephemeral_for_test) {
    RETURN_IF_ERROR(CheckKeyPair(*config.local_ephemeral_for_test, where));
  }
  if (config.remote_static) {
    // A small-order key would give an all-zero DH: refuse it here, so that a
    // DH failure later can only come from the peer's bytes.
    Result<SecretBytes> dh =
        sodium::X25519SharedSecret(config.local_static->private_key, *config.remote_static);
    if (!dh.ok()) {
      return InvalidArgumentError(where + ": the peer's static key has small order");
    }
  }
  return std::make_unique<HandshakeState>(PrivateTag(), std::move(config));
}

HandshakeState::HandshakeState(PrivateTag, HandshakeConfig config)
    : pattern_(config.pattern),
      initiator_(config.initiator),
      symmetric_(ProtocolName(config.pattern)),
      s_(std::move(config.local_static)),
      e_for_test_(std::move(config.local_ephemeral_for_test)),
      rs_(config.remote_static) {
  symmetric_.MixHash(config.prologue);
  // Pre-messages (spec 7.1): the initiator's key first, then the responder's.
  const PatternSpec spec = Spec(pattern_);
  if (spec.initiator_static_premessage) {
    symmetric_.MixHash(initiator_ ? s_->public_key : *rs_);
  }
  if (spec.responder_static_premessage) {
    symmetric_.MixHash(initiator_ ? *rs_ : s_->public_key);
  }
}

bool HandshakeState::IsFinished() const {
  return !failed_ && message_index_ == Spec(pattern_).messages.size();
}

bool HandshakeState::IsMyTurn() const {
  return !failed_ && !IsFinished() && ((message_index_ % 2 == 0) == initiator_);
}

Status HandshakeState::Fail(Status status) {
  failed_ = true;
  return status;
}

Status HandshakeState::Dh(const KeyPair& local, const std::optional<sodium::PublicKey>& remote) {
  if (!remote) {
    // Create() guarantees the keys each token needs, and `e` precedes every
    // DH with re in all four patterns.
    return InternalError("noise: DH with a missing peer key");
  }
  Result<SecretBytes> shared = sodium::X25519SharedSecret(local.private_key, *remote);
  if (!shared.ok()) {
    return DataLossError("noise: the peer's key has small order (all-zero X25519 secret)");
  }
  symmetric_.MixKey(shared->view());
  return OkStatus();
}

// The four DH tokens, the same whichever side writes the message (spec 5.3):
// ES and SE swap which local key meets which remote one by role.
Status HandshakeState::DhToken(internal::Token t) {
  using enum internal::Token;
  switch (t) {
    case kEE:
      return Dh(*e_, re_);
    case kES:
      return initiator_ ? Dh(*e_, rs_) : Dh(*s_, re_);
    case kSE:
      return initiator_ ? Dh(*s_, re_) : Dh(*e_, rs_);
    case kSS:
      return Dh(*s_, rs_);
    default:
      return InternalError("noise: not a DH token");
  }
}

Status HandshakeState::WriteMessage(ByteView payload, Bytes& out) {
  if (failed_) return FailedPreconditionError("noise: the handshake has failed");
  if (IsFinished()) return FailedPreconditionError("noise: the handshake is finished");
  if (!IsMyTurn()) {
    return FailedPreconditionError("noise: message " + std::to_string(message_index_ + 1) +
                                   " is the peer's to send");
  }
  const std::span<const Token> tokens = Spec(pattern_).messages[message_index_];

  // The size is known before anything changes: refuse it up front, so that
  // the handshake stays usable with a smaller payload.
  bool keyed = symmetric_.has_key();
  size_t size = 0;
  for (Token t : tokens) {
    if (t == kE) size += kDhLen;
    if (t == kS) size += kDhLen + (keyed ? kTagSize : 0);
    if (t == kEE || t == kES || t == kSE || t == kSS) keyed = true;
  }
  size += payload.size() + (keyed ? kTagSize : 0);
  if (size > kMaxMessageSize) {
    return InvalidArgumentError("noise: handshake message " + std::to_string(message_index_ + 1) +
                                " would be " + std::to_string(size) + " bytes (at most 65535)");
  }

  const size_t start = out.size();
  auto write_token = [&](Token t) -> Status {
    switch (t) {
      case kE:
        if (e_for_test_) {
          e_ = std::move(e_for_test_);
          e_for_test_.reset();
        } else {
          e_ = GenerateKeyPair();
        }
        PutBytes(out, e_->public_key);
        symmetric_.MixHash(e_->public_key);
        return OkStatus();
      case kS:
        return symmetric_.EncryptAndHash(s_->public_key, out);
      case kEE:
      case kES:
      case kSE:
      case kSS:
        return DhToken(t);
    }
    return InternalError("noise: unknown token");
  };
  for (Token t : tokens) {
    Status st = write_token(t);
    if (!st.ok()) {
      out.resize(start);
      return Fail(
          st.WithContext("writing handshake message " + std::to_string(message_index_ + 1)));
    }
  }
  Status st = symmetric_.EncryptAndHash(payload, out);
  if (!st.ok()) {
    out.resize(start);
    return Fail(st);
  }
  ++message_index_;
  return OkStatus();
}

Status HandshakeState::ReadMessage(ByteView message, Bytes& payload) {
  payload.clear();
  if (failed_) return FailedPreconditionError("noise: the handshake has failed");
  if (IsFinished()) return Fail(FailedPreconditionError("noise: the handshake is finished"));
  if (IsMyTurn()) {
    return Fail(FailedPreconditionError("noise: message " + std::to_string(message_index_ + 1) +
                                        " is ours to send, not the peer's"));
  }
  const std::string where = "noise: handshake message " + std::to_string(message_index_ + 1) +
                            " (" + std::to_string(message.size()) + " bytes)";
  if (message.size() > kMaxMessageSize) {
    return Fail(InvalidArgumentError(where + " exceeds 65535 bytes"));
  }
  const std::span<const Token> tokens = Spec(pattern_).messages[message_index_];

  ByteReader reader(message);
  auto read_token = [&](Token t) -> Status {
    switch (t) {
      case kE: {
        sodium::PublicKey re;
        if (!reader.ReadArray(re)) return DataLossError("too short for the ephemeral key");
        re_ = re;
        symmetric_.MixHash(re);
        return OkStatus();
      }
      case kS: {
        const size_t len = kDhLen + (symmetric_.has_key() ? kTagSize : 0);
        ByteView encrypted;
        if (!reader.ReadView(len, encrypted)) return DataLossError("too short for the static key");
        Bytes plain;
        if (!symmetric_.DecryptAndHash(encrypted, plain).ok()) {
          return DataLossError("the static key does not authenticate");
        }
        sodium::PublicKey rs;
        std::copy(plain.begin(), plain.end(), rs.begin());
        rs_ = rs;
        return OkStatus();
      }
      case kEE:
      case kES:
      case kSE:
      case kSS:
        return DhToken(t);
    }
    return InternalError("unknown token");
  };
  for (Token t : tokens) {
    Status st = read_token(t);
    if (!st.ok()) return Fail(st.WithContext(where));
  }
  ByteView rest = reader.Rest();
  if (symmetric_.has_key() && rest.size() < kTagSize) {
    return Fail(DataLossError(where + ": too short for the payload's tag"));
  }
  if (!symmetric_.DecryptAndHash(rest, payload).ok()) {
    payload.clear();
    return Fail(DataLossError(where + ": does not authenticate (damaged, a different prologue, "
                                      "or a peer without the expected keys)"));
  }
  ++message_index_;
  return OkStatus();
}

Result<HandshakeState::TransportCiphers> HandshakeState::Split() {
  if (failed_) return FailedPreconditionError("noise: the handshake has failed");
  if (!IsFinished()) return FailedPreconditionError("noise: split before the handshake finished");
  if (split_) return FailedPreconditionError("noise: the transport ciphers were already taken");
  split_ = true;
  auto [c1, c2] = symmetric_.Split();
  // c1 carries initiator → responder traffic (spec 5.2).
  if (initiator_) {
    return TransportCiphers{std::move(c1), std::move(c2), symmetric_.handshake_hash()};
  }
  return TransportCiphers{std::move(c2), std::move(c1), symmetric_.handshake_hash()};
}

}  // namespace ferry::mirror::noise
