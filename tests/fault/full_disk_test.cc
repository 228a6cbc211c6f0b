// Full disks (docs/reliability.md, "Full disks"): the hub's data dir or the
// agent's state dir (outbox, agent.db, streams) on a small tmpfs that fills
// up mid-work. Ferry must fail with a clear error, keep running, commit
// nothing partial, acknowledge nothing it could not make durable, and carry
// on by itself once space returns (the tmpfs is grown, as an operator
// would free space): the snapshot then arrives and restores byte for byte,
// and the stores verify.
//
// Needs root (mount -t tmpfs); skipped, and reported so, without it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "tests/testing/fleet.h"

namespace ferry::testing {
namespace {

namespace json = boost::json;
using std::chrono::seconds;

// A tmpfs of a given size at a path, grown on demand, unmounted at the end.
class SmallDisk {
 public:
  SmallDisk(const std::string& path, const std::string& size) : path_(path) {
    MakeDirsOrDie(path);
    const std::string opts = "size=" + size + ",mode=0700";
    if (::mount("tmpfs", path.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      error_ = std::string("mount -t tmpfs: ") + std::strerror(errno);
    } else {
      mounted_ = true;
    }
  }
  ~SmallDisk() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  // "Space returns": the filesystem grows.
  void Grow(const std::string& size) {
    const std::string opts = "size=" + size;
    ASSERT_EQ(::mount("tmpfs", path_.c_str(), "tmpfs", MS_REMOUNT, opts.c_str()), 0)
        << std::strerror(errno);
  }

 private:
  std::string path_;
  bool mounted_ = false;
  std::string error_;
};

class FullDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    volume_ = dir_.Sub("volume");
    MakeDirsOrDie(volume_);
    // 24 MB that does not compress: more than the small disks hold.
    for (int i = 0; i < 3; ++i) {
      WriteFileOrDie(volume_ + "/big-" + std::to_string(i), SeededBytes(100 + i, 8 << 20));
    }
    WriteFileOrDie(volume_ + "/small", SeededBytes(7, 1000));
  }

  // (A new policy also runs once at the agent's start: each run takes the
  // same unchanged volume, so any of its snapshots must restore as it.)
  std::string AgentYaml() const {
    return "datasets:\n  - {name: vol, path: " + volume_ +
           "}\nlimits: {memory: 128MiB, workers: 2, outboxQuota: 10GiB}\n"
           "policies:\n"
           "  - {apiVersion: ferry/v1, kind: MirrorPolicy, metadata: {name: p},\n"
           "     spec: {datasets: [vol], schedule: {every: 24h}, targets: [{hub: hub-a}]}}\n";
  }

  // The hub's snapshots of cam-1.
  static std::vector<std::string> HubSnapshots(Fleet& fleet) {
    std::vector<std::string> out;
    HttpResult r = fleet.HubApi("GET", "/v1/tenants/edge/snapshots?agent=cam-1");
    if (r.status != 200) return out;
    const json::value v = ParseJson(r.body);
    for (const json::value& s : v.at("snapshots").as_array()) {
      out.emplace_back(s.at("id").as_string());
    }
    return out;
  }

  void ExpectRestoresAndVerifies(Fleet& fleet, const std::string& id) {
    const std::string to = dir_.Sub("restored");
    CommandResult r = fleet.Ctl({"restore", "--keyset", fleet.keyset(), id, "--to", to});
    ASSERT_EQ(r.exit_code, 0) << r.err << fleet.Logs();
    EXPECT_EQ(DiffTrees(volume_, to), "");
    CommandResult v = fleet.Ctl({"verify", "--keyset", fleet.keyset(), id});
    EXPECT_EQ(v.exit_code, 0) << v.err;
  }

  TempDir dir_;
  std::string volume_;
};

TEST_F(FullDiskTest, HubDataDirFillsUpMidUploadThenSpaceReturns) {
  SmallDisk disk(dir_.Sub("hubfs"), "12m");
  if (!disk.mounted()) GTEST_SKIP() << "needs a tmpfs mount (root): " << disk.error();
  Fleet fleet(dir_.path(), {.hub_data = dir_.Sub("hubfs/hub"), .agent_state = ""});
  fleet.StartHub();
  fleet.CreateTenant();
  fleet.ConfigureAgent(AgentYaml());
  fleet.StartAgent();
  HttpResult run = fleet.AgentApi("POST", "/v1/snapshots", R"({"policy":"p"})");
  ASSERT_EQ(run.status, 200) << run.body;

  // The upload runs into the full disk: the agent says why, and retries.
  std::string error;
  ASSERT_TRUE(Fleet::WaitUntil(
      [&] {
        const json::value s = fleet.AgentStatus();
        if (!s.is_object()) return false;
        error = std::string(s.at("hubs").at(0).at("last_error").as_string());
        return error.find("RESOURCE_EXHAUSTED") != std::string::npos;
      },
      seconds(60)))
      << "last error: " << error << "\n"
      << fleet.Logs();
  EXPECT_NE(error.find("No space left on device"), std::string::npos) << error;
  // Nothing partial was committed or acknowledged, and the hub serves on.
  EXPECT_TRUE(fleet.hub()->running());
  EXPECT_TRUE(HubSnapshots(fleet).empty());
  EXPECT_EQ(fleet.HubApi("GET", "/healthz").status, 200);

  disk.Grow("256m");
  std::vector<std::string> at_hub;
  ASSERT_TRUE(
      Fleet::WaitUntil([&] { return !(at_hub = HubSnapshots(fleet)).empty(); }, seconds(90)))
      << "the snapshot did not arrive once space returned\n"
      << fleet.Logs();
  ExpectRestoresAndVerifies(fleet, at_hub[0]);
  fleet.StopAgent(SIGTERM);
  fleet.StopHub(SIGTERM);
  CommandResult store = fleet.Ctl({"verify", "--store", fleet.hub_data() + "/tenants/edge/store",
                                   "--keyset", fleet.keyset(), "latest"},
                                  false);
  EXPECT_EQ(store.exit_code, 0) << store.err;
}

TEST_F(FullDiskTest, AgentStateDirFillsUpMidCaptureThenSpaceReturns) {
  SmallDisk disk(dir_.Sub("agentfs"), "10m");
  if (!disk.mounted()) GTEST_SKIP() << "needs a tmpfs mount (root): " << disk.error();
  Fleet fleet(dir_.path(), {.hub_data = "", .agent_state = dir_.Sub("agentfs/state")});
  fleet.StartHub();
  fleet.CreateTenant();
  fleet.ConfigureAgent(AgentYaml());
  fleet.StartAgent();

  // The capture cannot fit in the outbox: the run fails, saying why.
  HttpResult run = fleet.AgentApi("POST", "/v1/snapshots", R"({"policy":"p"})");
  EXPECT_NE(run.status, 200) << run.body;  // the run's error, as an HTTP status
  const json::value failed = ParseJson(run.body).at("runs").at(0);
  ASSERT_TRUE(failed.as_object().contains("error")) << run.body;
  EXPECT_EQ(failed.at("error").at("code").as_string(), "RESOURCE_EXHAUSTED") << run.body;
  EXPECT_EQ(failed.at("snapshots").as_array().size(), 0u) << run.body;
  // The agent serves on, and nothing partial went to the hub.
  EXPECT_TRUE(fleet.AgentStatus().is_object());
  EXPECT_TRUE(HubSnapshots(fleet).empty());

  disk.Grow("256m");
  HttpResult again = fleet.AgentApi("POST", "/v1/snapshots", R"({"policy":"p"})");
  ASSERT_EQ(again.status, 200) << again.body;
  const json::value ok = ParseJson(again.body).at("runs").at(0);
  ASSERT_FALSE(ok.as_object().contains("error")) << again.body << fleet.Logs();
  std::vector<std::string> at_hub;
  ASSERT_TRUE(
      Fleet::WaitUntil([&] { return !(at_hub = HubSnapshots(fleet)).empty(); }, seconds(90)))
      << fleet.Logs();
  ExpectRestoresAndVerifies(fleet, at_hub[0]);
}

}  // namespace
}  // namespace ferry::testing
