#include "core/clock.h"

#include <time.h>

namespace ferry {
namespace {

int64_t Read(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

class RealClock final : public Clock {
 public:
  int64_t NowUnixNanos() const override { return Read(CLOCK_REALTIME); }
  int64_t MonotonicNanos() const override { return Read(CLOCK_MONOTONIC); }
};

}  // namespace

Clock* Clock::Real() {
  static RealClock clock;
  return &clock;
}

}  // namespace ferry
