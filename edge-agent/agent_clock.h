// AgentClock: the time the scheduler reads. Real time by default; tests may
// run it faster (FERRY_TEST_TIME_SCALE=60 makes a minute of schedule pass in
// a second) so that "every: 1m" policies can be exercised without waiting
// minutes. The scaled clock is anchored at a fixed instant, so it stays
// monotonic across restarts of the agent.
// Thread-safety: thread-safe (immutable).
#pragma once

#include <chrono>
#include <cstdint>

namespace ferry::agent {

class AgentClock {
 public:
  explicit AgentClock(double scale = 1.0) : scale_(scale < 1.0 ? 1.0 : scale) {}

  double scale() const { return scale_; }
  // Schedule time, Unix seconds.
  int64_t Now() const {
    const double real = static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count()) /
                        1000.0;
    if (scale_ == 1.0) return static_cast<int64_t>(real);
    return kAnchor + static_cast<int64_t>((real - static_cast<double>(kAnchor)) * scale_);
  }
  // A real Unix time (e.g. a snapshot's creation) in schedule time.
  int64_t ToSchedule(int64_t real_unix) const {
    if (scale_ == 1.0) return real_unix;
    return kAnchor + static_cast<int64_t>(static_cast<double>(real_unix - kAnchor) * scale_);
  }
  // How long to wait in real time for `schedule_seconds` of schedule time.
  std::chrono::milliseconds RealDelay(int64_t schedule_seconds) const {
    if (schedule_seconds <= 0) return std::chrono::milliseconds(0);
    return std::chrono::milliseconds(
        static_cast<int64_t>(static_cast<double>(schedule_seconds) * 1000.0 / scale_));
  }
  static int64_t RealNow() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

 private:
  static constexpr int64_t kAnchor = 1'767'225'600;  // 2026-01-01T00:00:00Z
  const double scale_;
};

}  // namespace ferry::agent
