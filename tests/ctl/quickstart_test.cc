// scripts/quickstart, run as a new user runs it (minus installing and
// building: FERRY_QUICKSTART_BIN points it at this build's binaries): a real
// hub and agent on loopback, ferryctl for everything, two scheduled
// snapshots restored from the hub and compared byte for byte by the script.
// This test checks the script's own verdict and the figures it prints.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "tests/testing/test_util.h"

namespace ferry::testing {
namespace {

TEST(QuickstartTest, TwoScheduledSnapshotsCrossTheLinkAndRestoreByteForByte) {
  TempDir tmp;
  CommandResult r = RunCommand({SourceDir() + "/scripts/quickstart"},
                               {"FERRY_QUICKSTART_BIN=" + BinDir(), "FERRY_QUICKSTART_CLEAN=1",
                                "FERRY_QUICKSTART_INTERVAL=15s", "TMPDIR=" + tmp.path(),
                                "FERRY_CONFIG=", "FERRY_HUB=", "FERRY_TOKEN=", "FERRY_TENANT="},
                               "", /*timeout_s=*/600);
  const std::string all = r.out + "\n--- stderr ---\n" + r.err;
  ASSERT_EQ(r.exit_code, 0) << all;
  EXPECT_NE(r.out.find("quickstart: PASS"), std::string::npos) << all;
  std::smatch m1, m2;
  ASSERT_TRUE(std::regex_search(r.out, m1, std::regex("snapshot 1: ([0-9a-f]{64}), committed")))
      << all;
  ASSERT_TRUE(std::regex_search(r.out, m2, std::regex("snapshot 2: ([0-9a-f]{64}), committed")))
      << all;
  EXPECT_NE(m1[1].str(), m2[1].str());
  EXPECT_NE(r.out.find("byte for byte: restored-1 = the volume at snapshot 1, restored-2 = the "
                       "volume at snapshot 2"),
            std::string::npos)
      << all;
  EXPECT_NE(r.out.find("is intact"), std::string::npos) << all;  // ferryctl verify
  EXPECT_NE(r.out.find("dedup against earlier snapshots"), std::string::npos) << all;
  // The second snapshot sends only what changed: far less than the first.
  std::smatch s1, s2;
  const std::regex sent("sent over the link ([0-9.]+)([KMG]?)iB|sent over the link ([0-9.]+)B");
  auto bytes = [](const std::smatch& m) {
    if (m[3].matched) return std::stod(m[3].str());
    const double unit = m[2] == "K" ? 1024.0 : m[2] == "M" ? 1048576.0 : 1073741824.0;
    return std::stod(m[1].str()) * unit;
  };
  std::string rest = r.out;
  ASSERT_TRUE(std::regex_search(rest, s1, sent)) << all;
  const double first = bytes(s1);
  rest = s1.suffix();
  ASSERT_TRUE(std::regex_search(rest, s2, sent)) << all;
  const double second = bytes(s2);
  EXPECT_GT(first, 10 * second) << all;
}

}  // namespace
}  // namespace ferry::testing
