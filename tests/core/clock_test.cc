#include "core/clock.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

TEST(FakeClockTest, StartsAtTheGivenTime) {
  FakeClock clock(123);
  EXPECT_EQ(clock.NowUnixNanos(), 123);
  EXPECT_EQ(clock.MonotonicNanos(), 123);
}

TEST(FakeClockTest, AdvancesOnlyWhenTold) {
  FakeClock clock;
  const int64_t start = clock.NowUnixNanos();
  const int64_t mono = clock.MonotonicNanos();
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(clock.NowUnixNanos(), start);
    ASSERT_EQ(clock.MonotonicNanos(), mono);
  }
  clock.Advance(1'500'000'000);
  EXPECT_EQ(clock.NowUnixNanos(), start + 1'500'000'000);
  EXPECT_EQ(clock.MonotonicNanos(), mono + 1'500'000'000);
  clock.Set(42);
  EXPECT_EQ(clock.NowUnixNanos(), 42);
  EXPECT_EQ(clock.MonotonicNanos(), 42);
}

TEST(FakeClockTest, UsableThroughTheClockInterface) {
  FakeClock fake(1000);
  Clock& clock = fake;
  fake.Advance(5);
  EXPECT_EQ(clock.NowUnixNanos(), 1005);
}

TEST(RealClockTest, MonotonicTimeNeverGoesBackwards) {
  Clock* clock = Clock::Real();
  ASSERT_NE(clock, nullptr);
  EXPECT_EQ(clock, Clock::Real());
  int64_t prev = clock->MonotonicNanos();
  for (int i = 0; i < 1000; ++i) {
    int64_t now = clock->MonotonicNanos();
    ASSERT_GE(now, prev);
    prev = now;
  }
  // After 2023-11-14 (1.7e18 ns since the epoch): the wall clock is in nanoseconds.
  EXPECT_GT(clock->NowUnixNanos(), int64_t{1'700'000'000'000'000'000});
}

}  // namespace
}  // namespace ferry
