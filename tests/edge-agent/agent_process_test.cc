// ferry-agent as a real process against a real ferry-hub on loopback:
// enrollment, policies pushed by the hub, scheduled capture, replication
// through hub outages and agent crashes, the outbox quota and the memory
// budget.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/env.h"
#include "tests/testing/http_client.h"
#include "tests/testing/process.h"
#include "tests/testing/test_util.h"

namespace ferry::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

json::value Parse(const std::string& body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  return ec ? json::value() : v;
}

// Peak resident set of a process (VmHWM), bytes.
uint64_t PeakRss(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

class AgentProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hub_bin_ = BinDir() + "/ferry-hub";
    agent_bin_ = BinDir() + "/ferry-agent";
    ctl_ = BinDir() + "/ferryctl";
    hub_data_ = dir_.Sub("hub");
    const HubInit init = InitHub(hub_data_);
    fingerprint_ = init.fingerprint;
    admin_ = init.admin_token;
    ASSERT_FALSE(admin_.empty());
    keyset_ = dir_.Sub("tenant.keyset");
    CommandResult keys = RunCommand(
        {ctl_, "keys", "init", "--out", keyset_, "--argon2-memory", "8", "--argon2-ops", "1"},
        {"FERRY_PASSPHRASE=pw"});
    ASSERT_EQ(keys.exit_code, 0) << keys.err;
    agent_keys_ = dir_.Sub("agent.keys");
    ASSERT_EQ(RunCommand({ctl_, "keys", "export-agent", "--keyset", keyset_, "--out", agent_keys_})
                  .exit_code,
              0);
    volume_ = dir_.Sub("volume");
    MakeDirsOrDie(volume_);
    ::unsetenv("FERRY_TEST_TIME_SCALE");
  }
  void TearDown() override { ::unsetenv("FERRY_TEST_TIME_SCALE"); }

  // --- hub ---
  void StartHub() {
    const std::string port_file = dir_.Sub("hub.port");
    std::remove(port_file.c_str());
    const std::string listen = "127.0.0.1:" + std::to_string(hub_port_);
    hub_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{hub_bin_, "run", "--data-dir", hub_data_, "--listen", listen,
                                 "--port-file", port_file, "--log-format", "text",
                                 "--shutdown-grace", "5s"},
        dir_.Sub("hub-" + std::to_string(++hub_starts_) + ".log"));
    hub_port_ = static_cast<uint16_t>(std::stoi(WaitForFile(port_file, hub_.get())));
  }
  void StopHub() {
    ASSERT_EQ(hub_->Stop(SIGTERM), 0) << hub_->Log();
    hub_.reset();
  }
  std::string HubUrl() const { return "ws://127.0.0.1:" + std::to_string(hub_port_); }
  HttpResult HubApi(const std::string& method, const std::string& target,
                    const std::string& body = "", const std::string& type = "application/json") {
    return HttpRequest(hub_port_, method, target, body, admin_, type);
  }
  void CreateTenantAndEnroll() {
    ASSERT_EQ(HubApi("POST", "/v1/tenants", R"({"name":"edge"})").status, 201);
    HttpResult token = HubApi("POST", "/v1/tenants/edge/enrollment-tokens", "{}");
    ASSERT_EQ(token.status, 201) << token.body;
    const std::string t = std::string(Parse(token.body).at("token").as_string());
    CommandResult r = RunCommand({agent_bin_, "enroll", "--config", config_, "--hub", HubUrl(),
                                  "--hub-key", fingerprint_, "--token", t});
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    EXPECT_NE(r.out.find("tenant edge"), std::string::npos) << r.out;
  }
  // The hub's snapshots of the tenant, oldest first (the hub lists newest first).
  std::vector<std::string> HubSnapshots() {
    HttpResult r = HubApi("GET", "/v1/tenants/edge/snapshots");
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<std::string> ids;
    json::value v = Parse(r.body);
    if (v.is_object() && v.as_object().contains("snapshots")) {
      for (const json::value& s : v.at("snapshots").as_array()) {
        ids.emplace_back(s.at("id").as_string());
      }
    }
    std::reverse(ids.begin(), ids.end());
    return ids;
  }
  std::string HubMetrics() { return HttpRequest(hub_port_, "GET", "/metrics").body; }
  void RestoreFromHub(const std::string& id, const std::string& to) {
    CommandResult r = RunCommand({ctl_, "restore", "--store", hub_data_ + "/tenants/edge/store",
                                  "--keyset", keyset_, id, "--to", to},
                                 {"FERRY_PASSPHRASE=pw"});
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  }

  // --- agent ---
  struct ConfigOptions {
    std::string policies = "";  // YAML list items under "policies:", indented by 2
    std::string limits = "{memory: 128MiB, workers: 2, outboxQuota: 1GiB}";
    std::string dataset_extra = "";  // more keys of the dataset, e.g. ", preHook: {...}"
    std::string extra_hubs = "";     // more items of "hubs:"
    std::string replication = "{failoverAfter: 1h, backoffInitial: 1s, backoffMax: 2s}";
    std::string api = "{listen: \"127.0.0.1:0\"}";
  };
  void WriteConfig(const ConfigOptions& o) {
    config_ = dir_.Sub("agent.yaml");
    std::string y;
    y += "agent: {name: cam-1, labels: {site: shop}}\n";
    y += "stateDir: " + dir_.Sub("agent-state") + "\n";
    y += "hubs:\n  - {name: hub-a, url: \"" + HubUrl() + "\"}\n" + o.extra_hubs;
    y += "datasets:\n  - {name: vol, path: " + volume_ + o.dataset_extra + "}\n";
    y += "keyset: {file: " + agent_keys_ + "}\n";
    y += "limits: " + o.limits + "\n";
    y += "api: " + o.api + "\n";
    y += "replication: " + o.replication + "\n";
    if (!o.policies.empty()) y += "policies:\n" + o.policies;
    WriteFileOrDie(config_, ByteView(reinterpret_cast<const uint8_t*>(y.data()), y.size()));
  }
  void StartAgent() {
    const std::string port_file = dir_.Sub("agent-state/api.port");
    std::remove(port_file.c_str());
    agent_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{agent_bin_, "run", "--config", config_, "--log-format", "text"},
        dir_.Sub("agent-" + std::to_string(++agent_starts_) + ".log"));
    agent_port_ = static_cast<uint16_t>(std::stoi(WaitForFile(port_file, agent_.get())));
  }
  void StopAgent() {
    ASSERT_EQ(agent_->Stop(SIGTERM), 0) << agent_->Log();
    agent_.reset();
  }
  json::value Status() {
    HttpResult r = HttpRequest(agent_port_, "GET", "/v1/status");
    return r.status == 200 ? Parse(r.body) : json::value();
  }
  // Polls the agent's status until `pred` holds (the agent is a separate
  // process: its status is the condition to wait on).
  json::value WaitForStatus(const std::function<bool(const json::value&)>& pred,
                            const std::string& what, seconds timeout = seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json::value last;
    while (std::chrono::steady_clock::now() < deadline) {
      last = Status();
      if (!last.is_null() && pred(last)) return last;
      if (agent_ && !agent_->running()) break;
      std::this_thread::sleep_for(milliseconds(50));
    }
    ADD_FAILURE() << "timed out waiting for: " << what << "\nlast status: " << json::serialize(last)
                  << "\nagent log:\n"
                  << (agent_ ? agent_->Log() : "");
    return last;
  }
  static std::vector<json::object> Deliveries(const json::value& s) {
    std::vector<json::object> out;
    if (!s.is_object() || !s.as_object().contains("deliveries")) return out;
    for (const json::value& d : s.at("deliveries").as_array()) out.push_back(d.as_object());
    std::reverse(out.begin(), out.end());  // oldest first
    return out;
  }
  static size_t Committed(const json::value& s) {
    size_t n = 0;
    for (const auto& d : Deliveries(s)) n += d.at("state").as_string() == "committed";
    return n;
  }
  static size_t Total(const json::value& s) { return Deliveries(s).size(); }

  double FirstSnapshotAtTheHub();
  double NextSnapshotAtTheHub();

  void WriteVolumeFiles(size_t files, size_t bytes_each, uint64_t seed) {
    for (size_t i = 0; i < files; ++i) {
      WriteFileOrDie(volume_ + "/f" + std::to_string(i), SeededBytes(seed + i, bytes_each));
    }
  }

  TempDir dir_;
  std::string hub_bin_, agent_bin_, ctl_, hub_data_, fingerprint_, admin_;
  std::string keyset_, agent_keys_, volume_, config_;
  std::unique_ptr<ChildProcess> hub_, agent_;
  uint16_t hub_port_ = 0, agent_port_ = 0;
  int hub_starts_ = 0, agent_starts_ = 0;
};

const char* kLocalPolicy =
    "  - {apiVersion: ferry/v1, kind: MirrorPolicy, metadata: {name: p},\n"
    "     spec: {datasets: [vol], schedule: {every: 24h}, targets: [{hub: hub-a}]}}\n";

const char* kHubPolicy = R"(apiVersion: ferry/v1
kind: MirrorPolicy
metadata: {name: shop-vol}
spec:
  agents: {matchLabels: {site: shop}}
  datasets: [vol]
  schedule: {every: 1h}
  targets: [{hub: hub-a}]
  rpo: 2h
)";

TEST_F(AgentProcessTest, PicksUpHubPolicyReplicatesAndRestoresByteIdentical) {
  WriteVolumeFiles(4, 300 << 10, 1);
  MakeDirsOrDie(volume_ + "/sub");
  WriteFileOrDie(volume_ + "/sub/text", CompressibleBytes(9, 200 << 10, 0.4));
  StartHub();
  WriteConfig({});
  CreateTenantAndEnroll();
  StartAgent();
  WaitForStatus(
      [](const json::value& s) {
        return s.at("hubs").as_array().size() == 1 && s.at("hubs").at(0).at("connected").as_bool();
      },
      "the agent connects to its hub");
  EXPECT_EQ(Total(Status()), 0u) << "no policy yet, so no snapshot";

  HttpResult put =
      HubApi("PUT", "/v1/tenants/edge/policies/shop-vol", kHubPolicy, "application/yaml");
  ASSERT_EQ(put.status, 201) << put.body;
  json::value s =
      WaitForStatus([](const json::value& st) { return Committed(st) == 1; },
                    "the hub's policy reaches the agent, which captures and replicates");
  ASSERT_EQ(s.at("policies").as_array().size(), 1u);
  EXPECT_EQ(s.at("policies").at(0).at("source").as_string(), "hub-a");
  EXPECT_TRUE(s.at("policies").at(0).at("rpo_met").as_bool()) << json::serialize(s);
  const std::string id = std::string(Deliveries(s)[0].at("snapshot").as_string());
  const std::vector<std::string> at_hub = HubSnapshots();
  ASSERT_EQ(at_hub.size(), 1u);
  EXPECT_EQ(at_hub[0], id);

  RestoreFromHub(id, dir_.Sub("restored"));
  EXPECT_EQ(DiffTrees(volume_, dir_.Sub("restored")), "");

  CommandResult st = RunCommand({agent_bin_, "status", "--config", config_});
  EXPECT_EQ(st.exit_code, 0) << st.err;
  EXPECT_NE(st.out.find("policy shop-vol (hub-a)"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("RPO 7200 met"), std::string::npos) << st.out;
  StopAgent();
}

// The hub shows what only the agent knows, from the agent's reports over the
// link: while the hub refuses the agent's commits (the agent signs with
// another keyset's key than the one it enrolled with), its snapshot stays
// pending there and the refusal is its last error; the status page flags
// the policy's RPO as missed. Once the device is enrolled again with its
// new key, the snapshot lands, nothing is pending, the error is gone and
// the RPO is met.
TEST_F(AgentProcessTest, HubShowsPendingBytesLastErrorAndRpoFromTheAgentsReports) {
  WriteVolumeFiles(3, 200 << 10, 61);
  StartHub();
  WriteConfig({});
  CreateTenantAndEnroll();
  // From now on the agent signs with another keyset's key.
  const std::string other_keyset = dir_.Sub("other.keyset");
  ASSERT_EQ(RunCommand({ctl_, "keys", "init", "--out", other_keyset, "--argon2-memory", "8",
                        "--argon2-ops", "1"},
                       {"FERRY_PASSPHRASE=pw"})
                .exit_code,
            0);
  agent_keys_ = dir_.Sub("other.agent.keys");
  ASSERT_EQ(
      RunCommand({ctl_, "keys", "export-agent", "--keyset", other_keyset, "--out", agent_keys_})
          .exit_code,
      0);
  WriteConfig({});
  HttpResult put =
      HubApi("PUT", "/v1/tenants/edge/policies/shop-vol", kHubPolicy, "application/yaml");
  ASSERT_EQ(put.status, 201) << put.body;

  // Polls the hub's view of the agent (the agent reports on its own schedule).
  auto wait_for_hub = [&](const std::function<bool(const json::value&)>& pred,
                          const std::string& what) {
    const auto deadline = std::chrono::steady_clock::now() + seconds(60);
    json::value last;
    while (std::chrono::steady_clock::now() < deadline) {
      HttpResult r = HubApi("GET", "/v1/tenants/edge/agents/cam-1");
      last = r.status == 200 ? Parse(r.body) : json::value();
      if (last.is_object() && pred(last)) return last;
      std::this_thread::sleep_for(milliseconds(50));
    }
    ADD_FAILURE() << "timed out waiting for: " << what << "\nlast: " << json::serialize(last)
                  << "\nagent log:\n"
                  << (agent_ ? agent_->Log() : "");
    return last;
  };
  auto contains = [](const json::value& v, const std::string& text) {
    return v.is_string() && std::string(v.as_string()).find(text) != std::string::npos;
  };

  StartAgent();
  json::value refused = wait_for_hub(
      [&](const json::value& a) {
        return a.at("pending_snapshots").is_number() &&
               a.at("pending_snapshots").to_number<int64_t>() >= 1 &&
               contains(a.at("last_error"), "signed by");
      },
      "the agent reports its refused snapshot as pending, and the refusal");
  EXPECT_GT(refused.at("pending_bytes").to_number<int64_t>(), 0) << json::serialize(refused);
  EXPECT_TRUE(contains(refused.at("last_error"), "PERMISSION_DENIED")) << json::serialize(refused);
  EXPECT_TRUE(refused.at("last_error_at").is_string());
  EXPECT_TRUE(refused.at("reported_at").is_string());
  EXPECT_TRUE(HubSnapshots().empty());

  HttpResult status = HubApi("GET", "/v1/tenants/edge/status");
  ASSERT_EQ(status.status, 200) << status.body;
  json::value st = Parse(status.body);
  ASSERT_EQ(st.at("policies").as_array().size(), 1u) << status.body;
  const json::value& policy = st.at("policies").at(0);
  EXPECT_EQ(policy.at("policy"), "shop-vol");
  EXPECT_EQ(policy.at("rpo_seconds").to_number<int64_t>(), 7200);
  ASSERT_EQ(policy.at("agents").as_array().size(), 1u);
  json::value row = policy.at("agents").at(0);
  EXPECT_EQ(row.at("agent"), "cam-1");
  EXPECT_TRUE(row.at("last_snapshot").is_null()) << status.body;
  EXPECT_EQ(row.at("rpo_met"), false) << "no snapshot at the hub: the RPO is missed";
  EXPECT_GT(row.at("pending_bytes").to_number<int64_t>(), 0);
  EXPECT_TRUE(contains(row.at("last_error"), "signed by"));
  EXPECT_TRUE(row.at("last_seen").is_string());
  EXPECT_EQ(st.at("agents").at(0).at("policies"), json::parse(R"(["shop-vol"])"));
  EXPECT_NE(HubMetrics().find(
                "ferry_hub_policy_rpo_met{tenant=\"edge\",policy=\"shop-vol\",agent=\"cam-1\"} 0"),
            std::string::npos);

  // Another tenant's token sees nothing of this one.
  ASSERT_EQ(HubApi("POST", "/v1/tenants", R"({"name":"other"})").status, 201);
  HttpResult other = HubApi("POST", "/v1/tenants/other/tokens", R"({"role":"reader"})");
  ASSERT_EQ(other.status, 201) << other.body;
  const std::string other_token = std::string(Parse(other.body).at("token").as_string());
  HttpResult denied = HttpRequest(hub_port_, "GET", "/v1/tenants/edge/status", "", other_token);
  EXPECT_EQ(denied.status, 403) << denied.body;
  EXPECT_EQ(HttpRequest(hub_port_, "GET", "/v1/tenants/other/status", "", other_token).status, 200);

  // The operator's fix: the device gets a new identity, enrolled (as
  // cam-1 again, after revoking the old one) with the key it signs with.
  // The queued snapshot then lands.
  StopAgent();
  HttpResult revoked = HubApi("POST", "/v1/tenants/edge/agents/cam-1/revoke", "{}");
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  ASSERT_EQ(std::remove(dir_.Sub("agent-state/agent.key").c_str()), 0);
  HttpResult token = HubApi("POST", "/v1/tenants/edge/enrollment-tokens", "{}");
  ASSERT_EQ(token.status, 201) << token.body;
  CommandResult enroll =
      RunCommand({agent_bin_, "enroll", "--config", config_, "--hub", HubUrl(), "--hub-key",
                  fingerprint_, "--token", std::string(Parse(token.body).at("token").as_string())});
  ASSERT_EQ(enroll.exit_code, 0) << enroll.err << enroll.out;
  EXPECT_TRUE(
      Parse(HubApi("GET", "/v1/tenants/edge/agents/cam-1").body).at("reported_at").is_null())
      << "the new agent has not reported yet";
  StartAgent();
  json::value landed = wait_for_hub(
      [](const json::value& a) {
        return a.at("pending_snapshots").is_number() &&
               a.at("pending_snapshots").to_number<int64_t>() == 0 && a.at("last_error").is_null();
      },
      "the agent reports nothing pending and no error once its snapshot landed");
  EXPECT_EQ(landed.at("pending_bytes").to_number<int64_t>(), 0);
  // (A second scheduled run may land if the test crosses the hour.)
  const std::vector<std::string> at_hub = HubSnapshots();
  ASSERT_FALSE(at_hub.empty());

  st = Parse(HubApi("GET", "/v1/tenants/edge/status").body);
  row = st.at("policies").at(0).at("agents").at(0);
  EXPECT_EQ(row.at("rpo_met"), true) << json::serialize(st);
  ASSERT_TRUE(row.at("last_snapshot").is_object()) << json::serialize(st);
  const std::string last_id = std::string(row.at("last_snapshot").at("id").as_string());
  EXPECT_NE(std::find(at_hub.begin(), at_hub.end(), last_id), at_hub.end()) << last_id;
  EXPECT_GE(row.at("age_seconds").to_number<int64_t>(), 0);
  EXPECT_LT(row.at("age_seconds").to_number<int64_t>(), 7200);
  EXPECT_EQ(row.at("pending_bytes").to_number<int64_t>(), 0);
  EXPECT_TRUE(row.at("last_error").is_null());
  ASSERT_EQ(st.at("agents").as_array().size(), 1u) << "the revoked identity is left out";
  EXPECT_EQ(st.at("agents").at(0).at("rpo_met"), true);
  EXPECT_NE(HubMetrics().find(
                "ferry_hub_policy_rpo_met{tenant=\"edge\",policy=\"shop-vol\",agent=\"cam-1\"} 1"),
            std::string::npos);
  StopAgent();
}

// A hub and an agent whose one policy (every 24h) snapshots `vol` once, at
// start. Returns the link bytes the hub received for it; the agent is stopped
// (which ends the session, so the hub's counters include it).
double AgentProcessTest::FirstSnapshotAtTheHub() {
  StartHub();
  WriteConfig(
      {.policies =
           "  - {apiVersion: ferry/v1, kind: MirrorPolicy, metadata: {name: p},\n"
           "     spec: {datasets: [vol], schedule: {every: 24h}, targets: [{hub: hub-a}]}}\n"});
  CreateTenantAndEnroll();
  StartAgent();
  WaitForStatus([](const json::value& s) { return Committed(s) == 1; }, "the first snapshot");
  StopAgent();
  return MetricValue(HubMetrics(), "ferry_hub_link_bytes_received_total");
}

// Restarts the agent, takes one more snapshot through it (ferry-agent
// snapshot), waits until the hub has it and stops the agent. Returns the link
// bytes the hub received for it.
double AgentProcessTest::NextSnapshotAtTheHub() {
  const double before = MetricValue(HubMetrics(), "ferry_hub_link_bytes_received_total");
  StartAgent();
  const size_t committed = Committed(Status());
  CommandResult snap =
      RunCommand({agent_bin_, "snapshot", "--config", config_, "--dataset", "vol"});
  EXPECT_EQ(snap.exit_code, 0) << snap.err << snap.out;
  EXPECT_NE(snap.out.find("policy p"), std::string::npos) << snap.out;
  WaitForStatus([&](const json::value& s) { return Committed(s) == committed + 1; },
                "the next snapshot");
  StopAgent();
  return MetricValue(HubMetrics(), "ferry_hub_link_bytes_received_total") - before;
}

TEST_F(AgentProcessTest, OnePercentChangeSendsOnlyTheNewChunks) {
  WriteVolumeFiles(20, 1 << 20, 100);  // 20 MiB of incompressible data
  EXPECT_GT(FirstSnapshotAtTheHub(), 20.0 * (1 << 20));

  // 1%: 200 KiB rewritten in the middle of one file.
  Bytes f = ReadFileOrDie(volume_ + "/f7");
  Bytes patch = SeededBytes(999, 200 << 10);
  std::copy(patch.begin(), patch.end(), f.begin() + (400 << 10));
  WriteFileOrDie(volume_ + "/f7", f);

  const double second = NextSnapshotAtTheHub();
  // The changed 200 KiB plus the chunks around its edges (avg 64 KiB) and
  // the trees, manifest and refs; nowhere near the 20 MiB volume.
  EXPECT_GT(second, 200.0 * 1024);
  EXPECT_LT(second, 800.0 * 1024) << "bytes received for the second snapshot";
  const std::vector<std::string> at_hub = HubSnapshots();
  ASSERT_EQ(at_hub.size(), 2u);
  RestoreFromHub(at_hub[1], dir_.Sub("restored"));
  EXPECT_EQ(DiffTrees(volume_, dir_.Sub("restored")), "");
}

// Delta chunks (datasets[].delta, on by default): twenty small edits, one in
// each of twenty files, cost about their own size on the link rather than
// twenty or more 64 KiB chunks, and the hub's copy restores and verifies.
TEST_F(AgentProcessTest, ScatteredSmallEditsCostAboutTheirSizeThroughDeltaChunks) {
  WriteVolumeFiles(20, 1 << 20, 300);  // 20 MiB of incompressible data
  FirstSnapshotAtTheHub();
  for (size_t i = 0; i < 20; ++i) {
    const std::string path = volume_ + "/f" + std::to_string(i);
    Bytes f = ReadFileOrDie(path);
    const Bytes patch = SeededBytes(5000 + i, 1000);
    std::copy(patch.begin(), patch.end(), f.begin() + 300000 + 20000 * i);
    WriteFileOrDie(path, f);
  }
  // The agent restarts: the signatures come from the file cache on disk.
  const double second = NextSnapshotAtTheHub();
  // 20 KB of new bytes, a few KiB of block edges per edit, trees, ids and
  // refs. Whole chunks would be 20 x 64 KiB at the very least.
  EXPECT_GT(second, 20.0 * 1000);
  EXPECT_LT(second, 250.0 * 1024) << "bytes received for the second snapshot";
  const std::vector<std::string> at_hub = HubSnapshots();
  ASSERT_EQ(at_hub.size(), 2u);
  RestoreFromHub(at_hub[1], dir_.Sub("restored"));
  EXPECT_EQ(DiffTrees(volume_, dir_.Sub("restored")), "");
  CommandResult verify = RunCommand({ctl_, "verify", "--store", hub_data_ + "/tenants/edge/store",
                                     "--keyset", keyset_, at_hub[1]},
                                    {"FERRY_PASSPHRASE=pw"});
  EXPECT_EQ(verify.exit_code, 0) << verify.err << verify.out;
}

TEST_F(AgentProcessTest, HubDownForThreeScheduledRunsThenAllArriveInOrderOnce) {
  WriteVolumeFiles(2, 64 << 10, 7);
  StartHub();
  WriteConfig(
      {.policies =
           "  - {apiVersion: ferry/v1, kind: MirrorPolicy, metadata: {name: p},\n"
           "     spec: {datasets: [vol], schedule: {every: 1m}, targets: [{hub: hub-a}]}}\n"});
  CreateTenantAndEnroll();
  ::setenv("FERRY_TEST_TIME_SCALE", "30", 1);  // a scheduled minute every 2 s
  StartAgent();
  WaitForStatus([](const json::value& s) { return Committed(s) >= 1; }, "a first snapshot");
  StopHub();
  size_t before = Total(Status());
  WaitForStatus([&](const json::value& s) { return Total(s) >= before + 3; },
                "three scheduled snapshots while the hub is down");
  json::value down = Status();
  EXPECT_FALSE(down.at("hubs").at(0).at("connected").as_bool());
  EXPECT_GE(down.at("pending").at(0).at("snapshots").to_number<int64_t>(), 3);
  StartHub();
  // Every snapshot captured so far reaches the hub.
  const size_t captured = Total(Status());
  WaitForStatus([&](const json::value& s) { return Committed(s) >= captured; },
                "the queued snapshots arrive after the hub is back", seconds(90));
  StopAgent();
  ::unsetenv("FERRY_TEST_TIME_SCALE");  // the restart below reads state only: no new runs
  const std::vector<std::string> at_hub = HubSnapshots();
  std::set<std::string> unique(at_hub.begin(), at_hub.end());
  EXPECT_EQ(unique.size(), at_hub.size()) << "a snapshot listed twice";
  EXPECT_GE(at_hub.size(), captured);
  // In capture order: the hub's by creation time equals the agent's by capture.
  StartAgent();
  json::value s = Status();
  std::vector<std::string> agent_order;
  for (const auto& d : Deliveries(s)) {
    if (d.at("state").as_string() == "committed")
      agent_order.emplace_back(d.at("snapshot").as_string());
    EXPECT_LE(d.at("attempts").to_number<int64_t>(), 3) << json::serialize(d);
  }
  std::vector<std::string> hub_prefix(at_hub.begin(),
                                      at_hub.begin() + std::min(at_hub.size(), agent_order.size()));
  EXPECT_EQ(hub_prefix, agent_order);
  StopAgent();
}

TEST_F(AgentProcessTest, KillDuringCaptureAndUploadLosesAndRepeatsNothing) {
  WriteVolumeFiles(48, 1 << 20, 300);  // 48 MiB
  StartHub();
  // 8 MB/s: the upload takes seconds, long enough to be cut.
  WriteConfig({.policies =
                   "  - {apiVersion: ferry/v1, kind: MirrorPolicy, metadata: {name: p},\n"
                   "     spec: {datasets: [vol], schedule: {every: 24h}, targets: [{hub: hub-a}],\n"
                   "            bandwidth: {limit: 8MB/s}}}\n",
               .limits = "{memory: 128MiB, workers: 1, outboxQuota: 1GiB}"});
  CreateTenantAndEnroll();

  // 1. Killed while capturing: the new policy runs at start.
  StartAgent();
  WaitForStatus([](const json::value& s) { return !s.at("running").as_string().empty(); },
                "the capture starts");
  ASSERT_EQ(agent_->Stop(SIGKILL), 128 + SIGKILL);
  agent_.reset();

  // 2. Restart: the interrupted run completes; kill again mid-upload.
  StartAgent();
  WaitForStatus(
      [](const json::value& s) {
        const json::value& hub = s.at("hubs").at(0);
        return hub.as_object().contains("current") &&
               hub.at("current").at("wire_bytes_sent").to_number<uint64_t>() > (8u << 20);
      },
      "the upload is under way", seconds(120));
  ASSERT_EQ(agent_->Stop(SIGKILL), 128 + SIGKILL);
  agent_.reset();

  // 3. Restart: the upload resumes and commits.
  StartAgent();
  json::value s = WaitForStatus([](const json::value& st) { return Committed(st) == 1; },
                                "the snapshot is committed", seconds(120));
  EXPECT_EQ(Total(s), 1u) << "one snapshot: the interrupted run was completed, not repeated";
  StopAgent();
  const std::vector<std::string> at_hub = HubSnapshots();
  ASSERT_EQ(at_hub.size(), 1u);
  const double stored = MetricValue(HubMetrics(), "ferry_hub_chunk_bytes_stored_total");
  const double received = MetricValue(HubMetrics(), "ferry_hub_link_bytes_received_total");
  // Sent twice at most: what was in flight when the agent died (the 8 MiB
  // upload window) plus framing.
  EXPECT_LT(received, stored + 8.0 * (1 << 20) + 0.05 * stored)
      << "received " << received << " for " << stored << " stored";
  RestoreFromHub(at_hub[0], dir_.Sub("restored"));
  EXPECT_EQ(DiffTrees(volume_, dir_.Sub("restored")), "");
}

TEST_F(AgentProcessTest, FullOutboxPausesCaptureLosesNothingAndResumes) {
  WriteVolumeFiles(3, 1 << 20, 500);  // 3 MiB per snapshot
  StartHub();
  WriteConfig(
      {.policies =
           "  - {apiVersion: ferry/v1, kind: MirrorPolicy, metadata: {name: p},\n"
           "     spec: {datasets: [vol], schedule: {every: 1m}, targets: [{hub: hub-a}]}}\n",
       .limits = "{memory: 64MiB, workers: 2, outboxQuota: 2MiB}"});
  CreateTenantAndEnroll();
  StopHub();
  ::setenv("FERRY_TEST_TIME_SCALE", "60", 1);
  StartAgent();
  json::value paused = WaitForStatus(
      [](const json::value& s) { return s.at("outbox").at("capture_paused").as_bool(); },
      "capture pauses once the outbox is over its quota");
  EXPECT_NE(std::string(paused.at("outbox").at("reason").as_string()).find("outbox full"),
            std::string::npos);
  const size_t captured = Total(paused);
  EXPECT_EQ(captured, 1u);
  HttpResult metrics = HttpRequest(agent_port_, "GET", "/metrics");
  EXPECT_EQ(MetricValue(metrics.body, "ferry_agent_capture_paused"), 1.0) << metrics.body;
  CommandResult st = RunCommand({agent_bin_, "status", "--config", config_});
  EXPECT_NE(st.out.find("CAPTURE PAUSED"), std::string::npos) << st.out;

  StartHub();
  // The queued snapshot drains, the outbox frees its space, capture resumes.
  WaitForStatus([&](const json::value& s) { return Committed(s) >= 2; },
                "capture resumes after the hub took the queued snapshot", seconds(90));
  StopAgent();
  const std::vector<std::string> at_hub = HubSnapshots();
  ASSERT_GE(at_hub.size(), 2u);
  RestoreFromHub(at_hub[0], dir_.Sub("restored"));
  EXPECT_EQ(DiffTrees(volume_, dir_.Sub("restored")), "");
}

TEST_F(AgentProcessTest, RssStaysWithinTheMemoryBudgetOnADatasetFourTimesLarger) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's shadow memory and quarantine inflate RSS: the budget is "
                  "checked by the release build";
#endif
  // 256 MiB of files for a 64 MiB budget.
  WriteVolumeFiles(64, 4 << 20, 900);
  StartHub();
  WriteConfig(
      {.policies =
           "  - {apiVersion: ferry/v1, kind: MirrorPolicy, metadata: {name: p},\n"
           "     spec: {datasets: [vol], schedule: {every: 24h}, targets: [{hub: hub-a}]}}\n",
       .limits = "{memory: 64MiB, workers: 2, outboxQuota: 1GiB}"});
  CreateTenantAndEnroll();
  StartAgent();
  WaitForStatus([](const json::value& s) { return Committed(s) == 1; },
                "capture and replication of 256 MiB", seconds(300));
  const uint64_t peak = PeakRss(agent_->pid());
  StopAgent();
  EXPECT_GT(peak, 0u);
  EXPECT_LE(peak, uint64_t{64} << 20) << "peak RSS " << (peak >> 20) << " MiB";
  RecordProperty("peak_rss_mib", std::to_string(peak >> 20));
}

TEST_F(AgentProcessTest, HooksRunAroundTheCaptureAndAFailingPreHookStopsIt) {
  WriteVolumeFiles(2, 64 << 10, 11);
  const std::string log = dir_.Sub("hooks.log");
  const std::string fail_flag = dir_.Sub("fail-pre");
  StartHub();
  WriteConfig({.policies = kLocalPolicy,
               .dataset_extra = ", preHook: {command: [/bin/sh, -c, \"echo pre-$FERRY_DATASET >> " +
                                log + "; test ! -e " + fail_flag +
                                "\"], timeout: 10s}, postHook: {command: [/bin/sh, -c, \"echo "
                                "post-$FERRY_DATASET >> " +
                                log + "\"], timeout: 10s}"});
  CreateTenantAndEnroll();
  StartAgent();
  WaitForStatus([](const json::value& s) { return Committed(s) == 1; }, "the first run");
  Bytes first = ReadFileOrDie(log);
  EXPECT_EQ(std::string(first.begin(), first.end()), "pre-vol\npost-vol\n");

  WriteFileOrDie(fail_flag, Bytes{});
  CommandResult snap = RunCommand({agent_bin_, "snapshot", "--config", config_});
  EXPECT_EQ(snap.exit_code, 1) << snap.out << snap.err;
  EXPECT_NE(snap.out.find("pre-hook of dataset vol"), std::string::npos) << snap.out;
  Bytes second = ReadFileOrDie(log);
  EXPECT_EQ(std::string(second.begin(), second.end()), "pre-vol\npost-vol\npre-vol\n")
      << "no capture and no post-hook after a failed pre-hook";
  json::value s = Status();
  EXPECT_EQ(Total(s), 1u);
  EXPECT_NE(std::string(s.at("policies").at(0).at("last_error").as_string()).find("pre-hook"),
            std::string::npos);
  StopAgent();
}

TEST_F(AgentProcessTest, LocalApiAnswersBadRequestsWithTypedErrors) {
  StartHub();
  WriteConfig({.policies = kLocalPolicy});
  CreateTenantAndEnroll();
  StartAgent();
  HttpResult bad_json = HttpRequest(agent_port_, "POST", "/v1/snapshots", "{not json");
  EXPECT_EQ(bad_json.status, 400) << bad_json.body;
  EXPECT_NE(bad_json.body.find("INVALID_ARGUMENT"), std::string::npos);
  HttpResult unknown_field = HttpRequest(agent_port_, "POST", "/v1/snapshots", R"({"dataset":1})");
  EXPECT_EQ(unknown_field.status, 400) << unknown_field.body;
  HttpResult no_policy = HttpRequest(agent_port_, "POST", "/v1/snapshots", R"({"policy":"nope"})");
  EXPECT_EQ(no_policy.status, 404) << no_policy.body;
  EXPECT_NE(no_policy.body.find("no policy named nope"), std::string::npos);
  HttpResult wrong_method = HttpRequest(agent_port_, "DELETE", "/v1/status");
  EXPECT_EQ(wrong_method.status, 405);
  HttpResult unknown = HttpRequest(agent_port_, "GET", "/v1/secrets");
  EXPECT_EQ(unknown.status, 404);
  HttpResult huge = HttpRequest(agent_port_, "POST", "/v1/snapshots", std::string(100 << 10, ' '));
  EXPECT_EQ(huge.status, 413) << huge.body;
  HttpResult garbage = RawRequest(agent_port_, "NOT HTTP AT ALL\r\n\r\n");
  EXPECT_EQ(garbage.status, 400) << garbage.body;
  // Still serving after all that.
  EXPECT_EQ(HttpRequest(agent_port_, "GET", "/healthz").status, 200);
  StopAgent();
}

TEST_F(AgentProcessTest, ConfigErrorsNameTheKeyAndLineAndExitWithUsage) {
  StartHub();
  WriteConfig({.limits = "{memory: 64MiB, workers: 0}"});
  CommandResult r = RunCommand({agent_bin_, "run", "--config", config_});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("limits.workers"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(line 8, column"), std::string::npos) << r.err;
}

TEST_F(AgentProcessTest, SnapshotWithoutADaemonCapturesOnceAndTheDaemonSendsItLater) {
  WriteVolumeFiles(2, 128 << 10, 21);
  StartHub();
  WriteConfig({.policies = kLocalPolicy});
  CreateTenantAndEnroll();
  CommandResult snap = RunCommand({agent_bin_, "snapshot", "--config", config_, "--json"});
  ASSERT_EQ(snap.exit_code, 0) << snap.err << snap.out;
  json::value v = Parse(snap.out);
  ASSERT_TRUE(v.is_object()) << snap.out;
  const std::string id =
      std::string(v.at("runs").at(0).at("snapshots").at(0).at("snapshot").as_string());
  EXPECT_TRUE(HubSnapshots().empty());
  StartAgent();
  json::value s = WaitForStatus([](const json::value& st) { return Committed(st) >= 1; },
                                "the daemon replicates the snapshot taken without it");
  EXPECT_EQ(std::string(Deliveries(s)[0].at("snapshot").as_string()), id);
  StopAgent();
  EXPECT_EQ(HubSnapshots().front(), id);
}

TEST_F(AgentProcessTest, HubDownLongerThanFailoverAfterSendsToTheNextHub) {
  WriteVolumeFiles(2, 64 << 10, 31);
  // Hub B: its own data dir, tenant and token.
  const std::string data_b = dir_.Sub("hub-b");
  const HubInit init_b = InitHub(data_b);
  ASSERT_FALSE(init_b.admin_token.empty());
  const std::string& fp_b = init_b.fingerprint;
  const std::string& admin_b = init_b.admin_token;
  const std::string port_file_b = dir_.Sub("hub-b.port");
  ChildProcess hub_b({hub_bin_, "run", "--data-dir", data_b, "--listen", "127.0.0.1:0",
                      "--port-file", port_file_b, "--log-format", "text"},
                     dir_.Sub("hub-b.log"));
  const uint16_t port_b = static_cast<uint16_t>(std::stoi(WaitForFile(port_file_b, &hub_b)));
  ASSERT_EQ(HttpRequest(port_b, "POST", "/v1/tenants", R"({"name":"edge"})", admin_b).status, 201);
  HttpResult token_b =
      HttpRequest(port_b, "POST", "/v1/tenants/edge/enrollment-tokens", "{}", admin_b);
  ASSERT_EQ(token_b.status, 201);

  StartHub();
  const std::string url_b = "ws://127.0.0.1:" + std::to_string(port_b);
  WriteConfig({.policies = kLocalPolicy,
               .extra_hubs = "  - {name: hub-b, url: \"" + url_b + "\"}\n",
               .replication = "{failoverAfter: 10s, backoffInitial: 1s, backoffMax: 2s}"});
  CreateTenantAndEnroll();
  CommandResult enroll_b =
      RunCommand({agent_bin_, "enroll", "--config", config_, "--hub", url_b, "--hub-key", fp_b,
                  "--token", std::string(Parse(token_b.body).at("token").as_string())});
  ASSERT_EQ(enroll_b.exit_code, 0) << enroll_b.err;
  // The policy's hub is down from the start.
  StopHub();
  StartAgent();
  json::value waiting = WaitForStatus(
      [](const json::value& st) {
        return Total(st) == 1 && st.at("hubs").at(0).at("down_since_unix").to_number<int64_t>() > 0;
      },
      "the snapshot waits while hub-a is down");
  EXPECT_EQ(Committed(waiting), 0u);
  json::value s = WaitForStatus([](const json::value& st) { return Committed(st) == 1; },
                                "the snapshot goes to hub-b after failoverAfter", seconds(60));
  EXPECT_EQ(std::string(Deliveries(s)[0].at("hub").as_string()), "hub-b");
  EXPECT_EQ(std::string(Deliveries(s)[0].at("target").as_string()), "hub-a");
  HttpResult at_b = HttpRequest(port_b, "GET", "/v1/tenants/edge/snapshots", "", admin_b);
  EXPECT_NE(at_b.body.find(std::string(Deliveries(s)[0].at("snapshot").as_string())),
            std::string::npos)
      << at_b.body;
  StopAgent();
  EXPECT_EQ(hub_b.Stop(SIGTERM), 0);
}

TEST_F(AgentProcessTest, LateRunsAreSkippedAndReportedNeverOverlapped) {
  WriteVolumeFiles(1, 16 << 10, 41);
  const std::string log = dir_.Sub("runs.log");
  StartHub();
  // Each run's pre-hook takes 3 s: at 60x, three scheduled minutes.
  WriteConfig(
      {.policies =
           "  - {apiVersion: ferry/v1, kind: MirrorPolicy, metadata: {name: p},\n"
           "     spec: {datasets: [vol], schedule: {every: 1m}, targets: [{hub: hub-a}]}}\n",
       .dataset_extra = ", preHook: {command: [/bin/sh, -c, \"echo start >> " + log +
                        "; sleep 3; echo end >> " + log + "\"], timeout: 1m}"});
  CreateTenantAndEnroll();
  ::setenv("FERRY_TEST_TIME_SCALE", "60", 1);
  StartAgent();
  json::value s = WaitForStatus(
      [](const json::value& st) {
        const json::value& p = st.at("policies").at(0);
        return p.as_object().contains("skipped_runs") &&
               p.at("skipped_runs").to_number<int64_t>() >= 2 &&
               p.at("runs").to_number<int64_t>() >= 2;
      },
      "late runs are counted as skipped", seconds(60));
  StopAgent();
  // Runs never overlapped: the hook log alternates start, end (SIGTERM lets
  // the run under way finish).
  Bytes text = ReadFileOrDie(log);
  std::istringstream lines(std::string(text.begin(), text.end()));
  std::vector<std::string> seen;
  for (std::string line; std::getline(lines, line);) seen.push_back(line);
  ASSERT_GE(seen.size(), 4u);
  EXPECT_EQ(seen.size() % 2, 0u);
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i], i % 2 == 0 ? "start" : "end") << "line " << i;
  }
  EXPECT_GE(s.at("policies").at(0).at("skipped_runs").to_number<int64_t>(), 2);
}

TEST_F(AgentProcessTest, LocalApiOnAUnixSocketServesTheCommands) {
  WriteVolumeFiles(1, 32 << 10, 51);
  const std::string sock = dir_.Sub("agent.sock");
  StartHub();
  WriteConfig({.policies = kLocalPolicy, .api = "{unixSocket: " + sock + "}"});
  CreateTenantAndEnroll();
  agent_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{agent_bin_, "run", "--config", config_, "--log-format", "text"},
      dir_.Sub("agent-unix.log"));
  // The socket appears once the API listens; the CLI is its client.
  const auto deadline = std::chrono::steady_clock::now() + seconds(30);
  CommandResult st;
  while (std::chrono::steady_clock::now() < deadline) {
    st = RunCommand({agent_bin_, "status", "--config", config_, "--json"});
    if (st.exit_code == 0) break;
    ASSERT_TRUE(agent_->running()) << agent_->Log();
    std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_EQ(st.exit_code, 0) << st.err;
  struct stat info;
  ASSERT_EQ(::stat(sock.c_str(), &info), 0);
  EXPECT_TRUE(S_ISSOCK(info.st_mode));
  EXPECT_EQ(info.st_mode & 0777, 0660u);
  CommandResult snap = RunCommand({agent_bin_, "snapshot", "--config", config_, "--json"});
  ASSERT_EQ(snap.exit_code, 0) << snap.err << snap.out;
  EXPECT_NE(snap.out.find("\"dataset\":\"vol\""), std::string::npos) << snap.out;
  ASSERT_EQ(agent_->Stop(SIGTERM), 0) << agent_->Log();
  agent_.reset();
  EXPECT_NE(::stat(sock.c_str(), &info), 0) << "the socket is removed at stop";
  CommandResult gone = RunCommand({agent_bin_, "status", "--config", config_});
  EXPECT_EQ(gone.exit_code, 3) << gone.err;
  EXPECT_NE(gone.err.find("no ferry-agent answers"), std::string::npos) << gone.err;
}

}  // namespace
}  // namespace ferry::testing
