// LinkConnection: one authenticated, encrypted link session with a peer,
// as the replication engine sees it: whole frames (serialized Envelopes)
// in order, both ways, with blocking calls. LinkServer hands one to the
// application per accepted session; LinkClient::Connect returns one.
//
// Behind it, the session lives on its own strand of an io_context: one
// WebSocket write in flight, a bounded outbound queue (SendFrame blocks
// while it is full), a bounded inbound queue (the session stops reading
// from the socket while it is full, which pushes back on the peer through
// TCP), WebSocket pings and an idle timeout. Wire format:
// docs/format/link-transport.md.
//
// How a session ends, and what the calls return afterwards (the "terminal
// status"; every later SendFrame returns it, and ReceiveFrame returns it
// once the frames received before the end are consumed):
//   - the peer closed the link, or the connection was lost: kUnavailable;
//   - this side called Close(): kUnavailable "link closed by this side"
//     (frames not yet received are dropped);
//   - a transport message did not decrypt, or a malformed record:
//     kDataLoss; a frame longer than max_frame_bytes announced by the peer:
//     kResourceExhausted (both close the WebSocket at once);
//   - nothing heard from the peer (no message, no pong) for idle_timeout:
//     kUnavailable "idle timeout";
//   - the LinkServer stopped: kUnavailable.
// One log line says why each session ended.
//
// Thread-safety: thread-safe. SendFrame may be called from several threads
// (frames go out whole, in the order the calls got the send lock);
// ReceiveFrame likewise.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/bytes.h"
#include "core/sodium.h"
#include "core/status.h"
#include "mirror/transport/record_format.h"

namespace ferry::mirror::transport {

namespace internal {
class LinkSession;
class ClientRuntime;
}  // namespace internal

// Tunables of a link session (both roles). Durations in milliseconds.
struct LinkOptions {
  // Largest frame this side sends or accepts; a peer announcing a longer
  // one ends the session with kResourceExhausted. Default 8 MiB; at most
  // 2^32-1. The upper layer advertises it (HelloAck.max_frame_bytes).
  size_t max_frame_bytes = kDefaultMaxFrameBytes;
  // A WebSocket ping goes out this often. Default 15 s.
  std::chrono::milliseconds ping_interval{15'000};
  // The session ends when nothing (a message, a ping or a pong) arrived for
  // this long while it was reading. Default 60 s.
  std::chrono::milliseconds idle_timeout{60'000};
  // Bound on a graceful close: flushing queued frames plus the WebSocket
  // closing handshake; then the socket is closed regardless. Default 5 s.
  std::chrono::milliseconds close_timeout{5'000};
  // Outbound queue bound: SendFrame blocks while this many frames, or
  // frames of this many bytes in total, are waiting (a frame larger than
  // the byte bound still goes through an empty queue). Default 4 / 16 MiB.
  size_t send_queue_frames = 4;
  size_t send_queue_bytes = size_t{16} << 20;
  // Inbound queue bound: the session stops reading while this many
  // received frames (or bytes) wait for ReceiveFrame. Default 4 / 16 MiB.
  size_t receive_queue_frames = 4;
  size_t receive_queue_bytes = size_t{16} << 20;
};

// kInvalidArgument for zero or out-of-range values.
Status ValidateLinkOptions(const LinkOptions& options);

// Traffic of one session. Wire bytes are the WebSocket message payloads
// (Noise handshake and transport messages, tags included), without
// WebSocket, TCP and HTTP framing. Frames are counted once written to the
// socket (sent) or fully received and authenticated.
struct LinkCounters {
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t frames_sent = 0;
  uint64_t frames_received = 0;
};

class LinkConnection {
 private:
  struct PrivateTag {
    explicit PrivateTag() = default;
  };

 public:
  // Closes the session (as Close()). A client connection also waits, up to
  // close_timeout, for its I/O thread to finish.
  ~LinkConnection();
  LinkConnection(const LinkConnection&) = delete;
  LinkConnection& operator=(const LinkConnection&) = delete;

  // Queues one frame (a serialized Envelope) for sending, blocking while
  // the outbound queue is full. OK means queued, not delivered. Errors:
  // kResourceExhausted for a frame over max_frame_bytes (the session stays
  // up); the terminal status once the session has ended.
  Status SendFrame(ByteView frame);

  // The next frame, waiting up to `timeout`. kDeadlineExceeded when none
  // arrived in time (the session stays up); the terminal status once the
  // session has ended and the frames received before are consumed.
  Result<Bytes> ReceiveFrame(std::chrono::milliseconds timeout);

  // Ends the session: frames already queued by SendFrame are still sent,
  // then the WebSocket is closed (normal closure) within close_timeout.
  // Returns at once. Later calls return kUnavailable "link closed by this
  // side" (with `reason` appended when it is not OK). Idempotent.
  void Close(const Status& reason = OkStatus());

  // The peer's static public key, authenticated by the Noise handshake.
  const sodium::PublicKey& peer_key() const;
  // Fingerprint(peer_key()).
  std::string peer_fingerprint() const;
  // Server side: whether the authorizer knew the peer's key. A client
  // connection is always enrolled (the hub matched the pinned key).
  bool peer_enrolled() const { return peer_enrolled_; }
  // The Noise handshake hash: a value both sides share and nobody else can
  // choose, to bind an application message (e.g. enrollment) to this
  // session.
  const Bytes& handshake_hash() const;
  // "127.0.0.1:53412"
  const std::string& remote_endpoint() const;
  LinkCounters counters() const;
  // The status the session ended with; OK while it is up.
  Status status() const;

  // Encrypts and sends `record` as it is, as one transport message, so that
  // tests can hand the peer malformed records. Not for production use.
  Status SendRecordForTest(ByteView record);

  // For LinkServer and LinkClient.
  LinkConnection(PrivateTag, std::shared_ptr<internal::LinkSession> session, bool peer_enrolled,
                 std::unique_ptr<internal::ClientRuntime> runtime);
  static std::shared_ptr<LinkConnection> Create(
      std::shared_ptr<internal::LinkSession> session, bool peer_enrolled,
      std::unique_ptr<internal::ClientRuntime> runtime = nullptr);

 private:
  // Destroyed in reverse order: the session reference goes before the
  // client runtime (the io_context outlives the session's sockets anyway,
  // see internal/link_session.h).
  std::unique_ptr<internal::ClientRuntime> runtime_;
  std::shared_ptr<internal::LinkSession> session_;
  const bool peer_enrolled_;
};

}  // namespace ferry::mirror::transport
