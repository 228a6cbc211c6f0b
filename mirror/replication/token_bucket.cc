#include "mirror/replication/token_bucket.h"

#include <algorithm>
#include <chrono>
#include <thread>

namespace ferry::mirror {

TokenBucket::TokenBucket(uint64_t bytes_per_second, uint64_t burst_bytes, Clock* clock,
                         std::function<void(int64_t)> sleep_for)
    : rate_(bytes_per_second),
      burst_(static_cast<double>(std::max<uint64_t>(burst_bytes, 1))),
      tokens_(static_cast<double>(std::max<uint64_t>(burst_bytes, 1))),
      last_(clock->MonotonicNanos()),
      clock_(clock),
      sleep_for_(std::move(sleep_for)) {
  if (!sleep_for_) {
    sleep_for_ = [](int64_t nanos) {
      std::this_thread::sleep_for(std::chrono::nanoseconds(nanos));
    };
  }
}

void TokenBucket::Refill(int64_t now) {
  const double elapsed = static_cast<double>(now - last_) / 1e9;
  last_ = now;
  tokens_ = std::min(burst_, tokens_ + elapsed * static_cast<double>(rate_));
}

void TokenBucket::Acquire(uint64_t bytes) {
  std::unique_lock<std::mutex> lock(mu_);
  if (rate_ == 0) return;
  Refill(clock_->MonotonicNanos());
  tokens_ -= static_cast<double>(bytes);
  if (tokens_ >= 0) return;
  // In debt: wait until the debt is paid at the current rate. Waiting for the
  // clock to reach a computed instant is the condition here.
  const double wait_s = -tokens_ / static_cast<double>(rate_);
  const int64_t wait_ns = static_cast<int64_t>(wait_s * 1e9);
  lock.unlock();
  sleep_for_(wait_ns);
}

void TokenBucket::SetRate(uint64_t bytes_per_second) {
  std::lock_guard<std::mutex> lock(mu_);
  Refill(clock_->MonotonicNanos());
  rate_ = bytes_per_second;
}

uint64_t TokenBucket::rate() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rate_;
}

}  // namespace ferry::mirror
