// FrameChannel: how the replication state machines talk to the far side —
// whole link Envelopes, in order, both ways. A LinkConnection (transport/)
// is one; InMemoryChannel is another (tests, and a process talking to itself).
//
// Errors: kUnavailable when the channel is closed or cut (retry with a new
// session), kDeadlineExceeded on a receive timeout, kDataLoss /
// kInvalidArgument for a malformed frame.
// Thread-safety: Send and Receive may be called from different threads;
// each of them from one thread at a time.
#pragma once

#include <chrono>

#include "core/status.h"
#include "proto/link.pb.h"

namespace ferry::mirror {

namespace linkpb = ::ferry::link::v1;

class FrameChannel {
 public:
  virtual ~FrameChannel() = default;
  virtual Status Send(const linkpb::Envelope& envelope) = 0;
  virtual Result<linkpb::Envelope> Receive(std::chrono::milliseconds timeout) = 0;
  // Ends the session; both sides' later calls fail with kUnavailable.
  virtual void Close(const Status& reason) = 0;
};

}  // namespace ferry::mirror
