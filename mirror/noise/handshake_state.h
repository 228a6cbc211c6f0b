// HandshakeState: the Noise Protocol Framework's (revision 34, section 5.3)
// handshake for Noise_{NN,KK,IK,XX}_25519_ChaChaPoly_BLAKE2b, on libsodium
// primitives (X25519, ChaCha20-Poly1305 IETF, BLAKE2b-512). Ferry's link uses
// Noise_XX with the prologue "ferry-link-v1"; the byte layout of every
// message is in docs/format/link-handshake.md.
//
// Usage: Create() one state per side, then alternate WriteMessage on the side
// whose turn it is (IsMyTurn) and ReadMessage on the other until both are
// IsFinished(); then Split() gives the transport ciphers. Check the peer's
// static key (remote_static()) against the pinned or enrolled key before
// trusting anything the peer says: Noise authenticates that the peer holds
// the private key of remote_static(), not who that key belongs to.
//
// Failure is final: after any error from ReadMessage, or an error from
// WriteMessage other than those for a call that changed nothing (payload too
// large, not our turn), the handshake is unusable: every later call returns
// kFailedPrecondition and remote_static() is nullopt. The caller closes the
// connection.
//
// Not implemented: psk modifiers (e.g. XXpsk3), one-way patterns, fallback.
//
// Thread-safety: thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/bytes.h"
#include "core/secret_bytes.h"
#include "core/sodium.h"
#include "core/status.h"
#include "mirror/noise/cipher_state.h"
#include "mirror/noise/symmetric_state.h"

namespace ferry::mirror::noise {

inline constexpr size_t kDhLen = 32;  // X25519 public key and shared secret

// An X25519 key pair: the 32-byte private scalar and its public key.
struct KeyPair {
  sodium::PublicKey public_key;
  SecretBytes private_key;  // 32 bytes
};
// A fresh key pair from libsodium's RNG.
KeyPair GenerateKeyPair();
// The key pair of a 32-byte private key; kInvalidArgument for another size.
Result<KeyPair> KeyPairFromPrivate(ByteView private32);

namespace internal {
// A handshake pattern token (defined in handshake_state.cc).
enum class Token;
}  // namespace internal

enum class Pattern { kNN, kKK, kIK, kXX };
// "Noise_XX_25519_ChaChaPoly_BLAKE2b" etc.
std::string ProtocolName(Pattern p);

struct HandshakeConfig {
  // The handshake pattern. Default XX (Ferry's link).
  Pattern pattern = Pattern::kXX;
  // true for the side that sends the first message.
  bool initiator = true;
  // Bytes both sides must agree on, mixed into the handshake hash (default
  // empty; Ferry's link uses "ferry-link-v1"). A mismatch fails the first
  // message that carries an authentication tag.
  Bytes prologue;
  // Our static key pair. Required for XX and KK (both sides) and IK (both
  // sides); must be absent for NN.
  std::optional<KeyPair> local_static;
  // The peer's static public key, known in advance: required for the IK
  // initiator and for KK (both sides); must be absent otherwise (XX learns it
  // during the handshake: compare remote_static() afterwards to pin it).
  std::optional<sodium::PublicKey> remote_static;
  // Our ephemeral key pair instead of a fresh random one: test vectors only.
  std::optional<KeyPair> local_ephemeral_for_test;
};

class HandshakeState {
 private:
  struct PrivateTag {
    explicit PrivateTag() = default;
  };

 public:
  // Initialize (spec 5.3): protocol name, prologue, pre-message keys.
  // kInvalidArgument if a key the pattern needs for this role is missing, a
  // key it does not use is given, a private key is not 32 bytes or does not
  // match its public key, or a known remote key has small order.
  static Result<std::unique_ptr<HandshakeState>> Create(HandshakeConfig config);

  // For Create() only: PrivateTag cannot be named outside this class.
  HandshakeState(PrivateTag, HandshakeConfig config);
  HandshakeState(const HandshakeState&) = delete;
  HandshakeState& operator=(const HandshakeState&) = delete;

  // Appends the next handshake message to `out`: its tokens, then `payload`
  // (encrypted once a key exists). Errors: kFailedPrecondition if it is not
  // our turn, the handshake is finished or it has failed; kInvalidArgument
  // if the message would exceed kMaxMessageSize (nothing changes; the
  // handshake stays usable); kDataLoss if a DH with the peer's key gives
  // the all-zero secret (small-order point; the handshake fails).
  // Precondition: `payload` does not point into `out`.
  Status WriteMessage(ByteView payload, Bytes& out);

  // Processes the peer's next handshake message and replaces `payload` with
  // its payload. Every error leaves the handshake failed: kFailedPrecondition
  // if it is not the peer's turn, the handshake is finished or has failed; kInvalidArgument if
  // `message` exceeds kMaxMessageSize; kDataLoss if it is too short for its tokens, does not
  // authenticate (damage, wrong prologue, a peer without the expected
  // static key), or carries a small-order key. `payload` is cleared on error.
  // Precondition: `payload` does not alias `message`.
  Status ReadMessage(ByteView message, Bytes& payload);

  // All messages of the pattern were written or read successfully.
  bool IsFinished() const;
  // We write the next message (false when finished or failed).
  bool IsMyTurn() const;
  // A call failed and the handshake is unusable.
  bool HasFailed() const { return failed_; }

  // After the last message: the transport ciphers oriented for this side,
  // and the handshake hash (a channel binding both sides share).
  struct TransportCiphers {
    CipherState send;
    CipherState receive;
    Bytes handshake_hash;
  };
  // kFailedPrecondition before IsFinished(), or if called twice (one pair of
  // ciphers per handshake, so nonces are never reused).
  Result<TransportCiphers> Split();

  // The peer's static key: the configured one (IK initiator, KK), or the
  // one received once the message that carries it was fully accepted (XX:
  // after message 2 for the initiator, message 3 for the responder; IK
  // responder: message 1). nullopt before that, for NN, and once the
  // handshake has failed.
  std::optional<sodium::PublicKey> remote_static() const { return failed_ ? std::nullopt : rs_; }
  // h: the hash of everything so far; after the last message, the
  // handshake hash.
  const Bytes& handshake_hash() const { return symmetric_.handshake_hash(); }

 private:
  Status Dh(const KeyPair& local, const std::optional<sodium::PublicKey>& remote);
  Status DhToken(internal::Token t);
  Status Fail(Status status);

  const Pattern pattern_;
  const bool initiator_;
  SymmetricState symmetric_;
  std::optional<KeyPair> s_;
  std::optional<KeyPair> e_;
  std::optional<KeyPair> e_for_test_;
  // The peer's keys. rs_ is set while its message is being read; a failure
  // in the rest of that message fails the handshake, and remote_static()
  // hides it then.
  std::optional<sodium::PublicKey> rs_;
  std::optional<sodium::PublicKey> re_;
  size_t message_index_ = 0;  // the next message of the pattern
  bool failed_ = false;
  bool split_ = false;
};

}  // namespace ferry::mirror::noise
