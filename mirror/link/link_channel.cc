#include "mirror/link/link_channel.h"

#include <utility>

namespace ferry::mirror {

LinkChannel::LinkChannel(std::shared_ptr<transport::LinkConnection> connection,
                         uint64_t max_frame_bytes)
    : connection_(std::move(connection)), max_frame_bytes_(max_frame_bytes) {}

Status LinkChannel::Send(const linkpb::Envelope& envelope) {
  ASSIGN_OR_RETURN(Bytes frame, EncodeEnvelope(envelope, max_frame_bytes_));
  return connection_->SendFrame(frame);
}

Result<linkpb::Envelope> LinkChannel::Receive(std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(Bytes frame, connection_->ReceiveFrame(timeout));
  return DecodeEnvelope(frame, max_frame_bytes_);
}

void LinkChannel::Close(const Status& reason) { connection_->Close(reason); }

}  // namespace ferry::mirror
