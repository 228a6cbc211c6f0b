#include "mirror/transport/link_connection.h"

#include <string>
#include <utility>

#include "mirror/identity.h"
#include "mirror/transport/internal/link_session.h"

namespace ferry::mirror::transport {

Status ValidateLinkOptions(const LinkOptions& options) {
  if (options.max_frame_bytes == 0 || options.max_frame_bytes > kMaxFrameBytesLimit) {
    return InvalidArgumentError("max_frame_bytes must be between 1 and " +
                                std::to_string(kMaxFrameBytesLimit));
  }
  if (options.ping_interval.count() <= 0 || options.idle_timeout.count() <= 0 ||
      options.close_timeout.count() <= 0) {
    return InvalidArgumentError("ping_interval, idle_timeout and close_timeout must be positive");
  }
  if (options.send_queue_frames == 0 || options.send_queue_bytes == 0 ||
      options.receive_queue_frames == 0 || options.receive_queue_bytes == 0) {
    return InvalidArgumentError("link queue bounds must be positive");
  }
  return OkStatus();
}

LinkConnection::LinkConnection(PrivateTag, std::shared_ptr<internal::LinkSession> session,
                               bool peer_enrolled, std::unique_ptr<internal::ClientRuntime> runtime)
    : runtime_(std::move(runtime)), session_(std::move(session)), peer_enrolled_(peer_enrolled) {}

std::shared_ptr<LinkConnection> LinkConnection::Create(
    std::shared_ptr<internal::LinkSession> session, bool peer_enrolled,
    std::unique_ptr<internal::ClientRuntime> runtime) {
  return std::make_shared<LinkConnection>(PrivateTag(), std::move(session), peer_enrolled,
                                          std::move(runtime));
}

LinkConnection::~LinkConnection() {
  session_->Close(OkStatus());
  // A client connection owns its I/O thread: it finishes once the close
  // (bounded by close_timeout) is done.
  runtime_.reset();
}

Status LinkConnection::SendFrame(ByteView frame) { return session_->SendFrame(frame); }

Result<Bytes> LinkConnection::ReceiveFrame(std::chrono::milliseconds timeout) {
  return session_->ReceiveFrame(timeout);
}

void LinkConnection::Close(const Status& reason) { session_->Close(reason); }

const sodium::PublicKey& LinkConnection::peer_key() const { return session_->peer_key(); }

std::string LinkConnection::peer_fingerprint() const { return Fingerprint(session_->peer_key()); }

const Bytes& LinkConnection::handshake_hash() const { return session_->handshake_hash(); }

const std::string& LinkConnection::remote_endpoint() const { return session_->remote_endpoint(); }

LinkCounters LinkConnection::counters() const { return session_->counters(); }

Status LinkConnection::status() const { return session_->status(); }

Status LinkConnection::SendRecordForTest(ByteView record) {
  return session_->SendRecordForTest(record);
}

}  // namespace ferry::mirror::transport
