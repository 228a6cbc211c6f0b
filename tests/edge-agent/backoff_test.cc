// ReconnectBackoff: the waits between attempts to reach a hub
// (replication.backoffInitial / backoffMax), shared by snapshot delivery and
// stream shipping.
#include "edge-agent/backoff.h"

#include <gtest/gtest.h>

#include <chrono>
#include <set>

namespace ferry::agent {
namespace {

using std::chrono::milliseconds;

TEST(ReconnectBackoffTest, EachWaitIsBetweenHalfAndAllOfAStepThatDoublesUpToTheMaximum) {
  // Many independent sequences, so that both ends of every range are tried.
  for (int round = 0; round < 200; ++round) {
    ReconnectBackoff backoff(milliseconds(100), milliseconds(1000));
    const int64_t steps[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (int64_t step : steps) {
      ASSERT_EQ(backoff.step().count(), step);
      const milliseconds wait = backoff.Next();
      ASSERT_GE(wait.count(), step / 2) << "step " << step;
      ASSERT_LE(wait.count(), step) << "step " << step;
    }
  }
}

TEST(ReconnectBackoffTest, WaitsAreSpreadSoThatAgentsCutOffTogetherDoNotReturnTogether) {
  std::set<int64_t> seen;
  for (int i = 0; i < 100; ++i) {
    ReconnectBackoff backoff(milliseconds(1000), milliseconds(1000));
    seen.insert(backoff.Next().count());
  }
  // 100 draws from 501 values: all equal would be a broken generator.
  EXPECT_GT(seen.size(), 20u);
}

TEST(ReconnectBackoffTest, ResetStartsOverAtTheInitialStep) {
  ReconnectBackoff backoff(milliseconds(250), milliseconds(600'000));
  for (int i = 0; i < 10; ++i) backoff.Next();
  EXPECT_EQ(backoff.step().count(), 256'000);  // 250 ms doubled 10 times
  backoff.Reset();
  EXPECT_EQ(backoff.step().count(), 250);
  EXPECT_LE(backoff.Next().count(), 250);
}

TEST(ReconnectBackoffTest, AMaximumBelowTheInitialStepIsRaisedToIt) {
  // The config refuses this; the class still never waits longer than asked.
  ReconnectBackoff backoff(milliseconds(500), milliseconds(100));
  for (int i = 0; i < 5; ++i) EXPECT_LE(backoff.Next().count(), 500);
  EXPECT_EQ(backoff.step().count(), 500);
}

}  // namespace
}  // namespace ferry::agent
