#include "mirror/link/link_channel.h"

#include <utility>

namespace ferry::mirror {

LinkChannel::LinkChannel(std::shared_ptr<transport::LinkConnection> connection,
                         uint64_t max_frame_bytes)
    : connection_(std::move(connection)), max_frame_bytes_(max_frame_bytes) {}

Status LinkChannel::Send(const linkpb::Envelope& envelope) {
  std::lock_guard lock(send_mu_);
  ASSIGN_OR_RETURN(size_t size, EncodeEnvelopeInto(envelope, max_frame_bytes_, send_buffer_));
  Status sent = connection_->SendFrame(ByteView(send_buffer_.data(), size));
  // Keep the buffer for the next frame unless a rare large one grew it.
  if (send_buffer_.size() > kKeptBufferBytes) Bytes().swap(send_buffer_);
  return sent;
}

Result<linkpb::Envelope> LinkChannel::Receive(std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(Bytes frame, connection_->ReceiveFrame(timeout));
  return DecodeEnvelope(frame, max_frame_bytes_);
}

void LinkChannel::Close(const Status& reason) { connection_->Close(reason); }

}  // namespace ferry::mirror
