#include "mirror/replication/in_memory_channel.h"

namespace ferry::mirror {

struct InMemoryChannel::Shared {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Bytes> queues[2];  // queues[i]: frames for side i
  Status closed;                // non-OK once closed or cut
  uint64_t sent[2] = {0, 0};
  uint64_t bytes[2] = {0, 0};
  uint64_t cut_after[2] = {UINT64_MAX, UINT64_MAX};
};

std::pair<std::unique_ptr<InMemoryChannel>, std::unique_ptr<InMemoryChannel>>
InMemoryChannel::CreatePair(uint64_t max_frame_bytes) {
  auto shared = std::make_shared<Shared>();
  return {std::unique_ptr<InMemoryChannel>(new InMemoryChannel(shared, 0, max_frame_bytes)),
          std::unique_ptr<InMemoryChannel>(new InMemoryChannel(shared, 1, max_frame_bytes))};
}

Status InMemoryChannel::Send(const linkpb::Envelope& envelope) {
  ASSIGN_OR_RETURN(Bytes frame, EncodeEnvelope(envelope, max_frame_bytes_));
  std::lock_guard<std::mutex> lock(shared_->mu);
  if (!shared_->closed.ok()) return shared_->closed;
  if (shared_->sent[side_] >= shared_->cut_after[side_]) {
    // A cut loses everything in flight, both ways.
    shared_->closed = UnavailableError("link cut (test)");
    shared_->queues[0].clear();
    shared_->queues[1].clear();
    shared_->cv.notify_all();
    return shared_->closed;
  }
  ++shared_->sent[side_];
  shared_->bytes[side_] += frame.size();
  shared_->queues[1 - side_].push_back(std::move(frame));
  shared_->cv.notify_all();
  return OkStatus();
}

Result<linkpb::Envelope> InMemoryChannel::Receive(std::chrono::milliseconds timeout) {
  Bytes frame;
  {
    std::unique_lock<std::mutex> lock(shared_->mu);
    auto& q = shared_->queues[side_];
    if (!shared_->cv.wait_for(lock, timeout, [&] { return !q.empty() || !shared_->closed.ok(); })) {
      return DeadlineExceededError("no frame within " + std::to_string(timeout.count()) + " ms");
    }
    // A close is orderly: frames sent before it are still delivered.
    if (q.empty()) return shared_->closed;
    frame = std::move(q.front());
    q.pop_front();
  }
  return DecodeEnvelope(frame, max_frame_bytes_);
}

void InMemoryChannel::Close(const Status& reason) {
  std::lock_guard<std::mutex> lock(shared_->mu);
  if (shared_->closed.ok()) {
    shared_->closed = reason.ok() ? UnavailableError("link closed") : reason;
  }
  shared_->cv.notify_all();
}

void InMemoryChannel::CutAfterSends(uint64_t frames) {
  std::lock_guard<std::mutex> lock(shared_->mu);
  shared_->cut_after[side_] = shared_->sent[side_] + frames;
}

uint64_t InMemoryChannel::frames_sent() const {
  std::lock_guard<std::mutex> lock(shared_->mu);
  return shared_->sent[side_];
}

uint64_t InMemoryChannel::bytes_sent() const {
  std::lock_guard<std::mutex> lock(shared_->mu);
  return shared_->bytes[side_];
}

}  // namespace ferry::mirror
