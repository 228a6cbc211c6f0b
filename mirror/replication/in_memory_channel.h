// InMemoryChannel: two connected FrameChannels in one process. Frames are
// encoded to bytes and decoded on the other side (so size limits and the
// codec are exercised), and the pair can be cut after a given number of
// frames to test resumption.
//
// Thread-safety: thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>

#include "mirror/replication/envelope_codec.h"

namespace ferry::mirror {

class InMemoryChannel final : public FrameChannel {
 public:
  // Two ends of one link.
  static std::pair<std::unique_ptr<InMemoryChannel>, std::unique_ptr<InMemoryChannel>> CreatePair(
      uint64_t max_frame_bytes = kDefaultMaxFrameBytes);

  Status Send(const linkpb::Envelope& envelope) override;
  Result<linkpb::Envelope> Receive(std::chrono::milliseconds timeout) override;
  void Close(const Status& reason) override;

  // Cuts the link (both directions) when this end has sent `frames` more
  // frames: the frame that would exceed it and every frame still in flight
  // are lost, and every later call on either end fails with kUnavailable.
  // (Close() is orderly instead: frames sent before it are delivered.)
  void CutAfterSends(uint64_t frames);
  uint64_t frames_sent() const;
  uint64_t bytes_sent() const;

 private:
  struct Shared;
  InMemoryChannel(std::shared_ptr<Shared> shared, int side, uint64_t max_frame_bytes)
      : shared_(std::move(shared)), side_(side), max_frame_bytes_(max_frame_bytes) {}
  std::shared_ptr<Shared> shared_;
  int side_;
  uint64_t max_frame_bytes_;
};

}  // namespace ferry::mirror
