// TokenBucket: a bandwidth limit in bytes per second. Acquire(n) returns
// once n bytes may be sent; the bucket holds at most `burst` bytes, so the
// rate holds over any window longer than burst/rate without bursting beyond
// it (a lesson from kopia's and syncoid's bursty limits).
//
// Thread-safety: thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>

#include "core/clock.h"

namespace ferry::mirror {

class TokenBucket {
 public:
  // rate 0 = unlimited. sleep_for: injectable for tests (default: real sleep).
  TokenBucket(uint64_t bytes_per_second, uint64_t burst_bytes, Clock* clock = Clock::Real(),
              std::function<void(int64_t nanos)> sleep_for = {});

  // Blocks until `bytes` may be sent. Requests larger than the burst are
  // allowed and leave the bucket in debt, paid back before the next one.
  void Acquire(uint64_t bytes);
  void SetRate(uint64_t bytes_per_second);
  uint64_t rate() const;

 private:
  void Refill(int64_t now);
  mutable std::mutex mu_;
  uint64_t rate_;
  double burst_;
  double tokens_;
  int64_t last_;
  Clock* clock_;
  std::function<void(int64_t)> sleep_for_;
};

}  // namespace ferry::mirror
