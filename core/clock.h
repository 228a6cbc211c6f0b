// Clock: the seam for time, so that schedules and timeouts are testable
// without sleeping.
//
// Thread-safety: implementations are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>

namespace ferry {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time, nanoseconds since the Unix epoch (UTC).
  virtual int64_t NowUnixNanos() const = 0;
  // Monotonic time in nanoseconds from an arbitrary origin.
  virtual int64_t MonotonicNanos() const = 0;
  static Clock* Real();
};

// A clock that only moves when told to.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t unix_nanos = 1'700'000'000'000'000'000) : now_(unix_nanos) {}
  int64_t NowUnixNanos() const override { return now_.load(); }
  int64_t MonotonicNanos() const override { return now_.load(); }
  void Advance(int64_t nanos) { now_.fetch_add(nanos); }
  void Set(int64_t unix_nanos) { now_.store(unix_nanos); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace ferry
