// LinkChannel: a LinkConnection (the encrypted transport) seen as a
// FrameChannel (what the replication engine talks over): each Envelope is
// serialized into one frame and parsed back on the far side with the checks
// of envelope_codec.h.
//
// A frame that does not parse as an Envelope makes Receive return the
// kDataLoss / kResourceExhausted of DecodeEnvelope; the caller ends the
// session (ServeSession first tells the peer with an Error frame).
// Thread-safety: as LinkConnection (thread-safe).
#pragma once

#include <memory>
#include <mutex>

#include "mirror/replication/envelope_codec.h"
#include "mirror/replication/frame_channel.h"
#include "mirror/transport/link_connection.h"

namespace ferry::mirror {

class LinkChannel final : public FrameChannel {
 public:
  // `max_frame_bytes`: the largest Envelope sent or accepted (the
  // connection's own LinkOptions::max_frame_bytes must be at least this).
  explicit LinkChannel(std::shared_ptr<transport::LinkConnection> connection,
                       uint64_t max_frame_bytes = kDefaultMaxFrameBytes);

  Status Send(const linkpb::Envelope& envelope) override;
  Result<linkpb::Envelope> Receive(std::chrono::milliseconds timeout) override;
  void Close(const Status& reason) override;

  transport::LinkConnection& connection() { return *connection_; }

 private:
  static constexpr size_t kKeptBufferBytes = size_t{2} << 20;

  std::shared_ptr<transport::LinkConnection> connection_;
  const uint64_t max_frame_bytes_;
  std::mutex send_mu_;
  Bytes send_buffer_;  // reused for every frame sent (see EncodeEnvelopeInto)
};

}  // namespace ferry::mirror
