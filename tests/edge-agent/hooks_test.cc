// Pre/post hooks: run without a shell, see their environment, and are killed
// with their children when they outlive the timeout.
#include "edge-agent/hooks.h"

#include <gtest/gtest.h>

#include <chrono>

#include "core/env.h"
#include "tests/testing/test_util.h"

namespace ferry::agent {
namespace {

using testing::TempDir;

TEST(HooksTest, HookSeesItsEnvironmentAndSucceeds) {
  TempDir dir;
  const std::string out = dir.Sub("env.txt");
  Hook hook{{"/bin/sh", "-c", "echo \"$FERRY_DATASET $FERRY_HOOK\" > " + out},
            std::chrono::seconds(10)};
  ASSERT_TRUE(RunHook(hook, {{"FERRY_DATASET", "vol"}, {"FERRY_HOOK", "pre"}}).ok());
  Bytes text = testing::ReadFileOrDie(out);
  EXPECT_EQ(std::string(text.begin(), text.end()), "vol pre\n");
}

TEST(HooksTest, NonZeroExitIsAbortedNamingTheCommandAndStatus) {
  Status s = RunHook({{"/bin/sh", "-c", "exit 3"}, std::chrono::seconds(10)}, {});
  EXPECT_EQ(s.code(), StatusCode::kAborted);
  EXPECT_NE(s.message().find("exited with status 3"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("/bin/sh -c exit 3"), std::string::npos) << s.ToString();
}

TEST(HooksTest, HookThatOutlivesItsTimeoutIsKilledWithItsChildren) {
  TempDir dir;
  const std::string marker = dir.Sub("late");
  const auto start = std::chrono::steady_clock::now();
  // The child sleeps in the background too: the whole group must go.
  Status s = RunHook(
      {{"/bin/sh", "-c", "(sleep 30; touch " + marker + ") & sleep 30"}, std::chrono::seconds(1)},
      {});
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
  EXPECT_LT(took, std::chrono::seconds(10));
  auto exists = Env::Default()->FileExists(marker);
  EXPECT_TRUE(exists.ok() && !*exists);
}

TEST(HooksTest, MissingCommandIsAnErrorNotACrash) {
  Status s = RunHook({{"/nonexistent/freeze"}, std::chrono::seconds(5)}, {});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent/freeze"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace ferry::agent
