// Bad networks (docs/reliability.md#bad-networks): a real ferry-hub and
// ferry-link-peer pushes through the userspace fault proxy
// (tests/tools/fault_proxy.h), and through a Linux network namespace behind a
// tbf-shaped veth that is partitioned mid-push.
//
//   - shaped links (latency, jitter, re-segmented writes, stalls, a rate
//     cap): every push completes and every snapshot restores byte for byte
//     from the hub's store; goodput is printed against the shaped rate;
//   - tampered WebSocket messages (a flipped payload or header bit, a drop, a
//     duplicate, a swap, a replay), both ways, and tampered handshake
//     messages: the side that receives one ends the session with a typed
//     error (the peer's report, the hub's log), nothing is accepted, and a
//     push without faults then completes; a drop that nothing follows is a
//     stall until the agent's timeout (long mode);
//   - resets after N bytes at several points: the push resumes, and the
//     bytes sent again per cut stay within one upload window;
//   - a partition (ip link set down/up) behind tc tbf: the push completes.
//
// Quick mode (the default, CI): a few fixed seeds. FERRY_FAULT_LONG=1: many,
// from a new base seed; FERRY_FAULT_SEED=S fixes it. Every seed and every
// proxy plan is printed (`ferry-fault-proxy` takes a plan as its flags).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/env.h"
#include "tests/testing/http_client.h"
#include "tests/testing/process.h"
#include "tests/testing/test_util.h"
#include "tests/tools/fault_proxy.h"

namespace ferry::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

// One record's WebSocket message at most (link-transport.md#records).
constexpr size_t kRecordMessage = 65535;

bool LongMode() {
  const char* v = std::getenv("FERRY_FAULT_LONG");
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

// Quick mode: fixed seeds (CI is reproducible); long mode: a new base seed
// each run unless FERRY_FAULT_SEED is set. Printed either way.
uint64_t BaseSeed() {
  if (const char* v = std::getenv("FERRY_FAULT_SEED"); v != nullptr && *v != '\0') {
    return std::stoull(v);
  }
  if (LongMode()) return static_cast<uint64_t>(steady_clock::now().time_since_epoch().count());
  return 20250801;
}

int Iterations(int quick, int long_mode) { return LongMode() ? long_mode : quick; }

std::string Mb(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

uint64_t U64(const json::object& o, const char* key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return 0;
  if (v->is_int64()) return static_cast<uint64_t>(v->as_int64());
  if (v->is_uint64()) return v->as_uint64();
  return 0;
}

double Num(const json::object& o, const char* key) {
  const json::value* v = o.if_contains(key);
  if (v != nullptr && v->is_double()) return v->as_double();
  return static_cast<double>(U64(o, key));
}

std::string Str(const json::object& o, const char* key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : "";
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A labelled Prometheus sample (`name{labels} value`), or 0 when absent.
double LabelledMetric(const std::string& text, const std::string& name_and_labels) {
  const size_t at = text.find("\n" + name_and_labels + " ");
  if (at == std::string::npos) return 0;
  return std::strtod(text.c_str() + at + name_and_labels.size() + 2, nullptr);
}

// The hub's log line saying how a session ended, without its prefix.
std::string SessionEnd(const std::string& log) {
  size_t at = log.find("link session with");
  if (at == std::string::npos) at = log.find("link handshake with");
  if (at == std::string::npos) at = log.find(") ended (");
  if (at == std::string::npos) return "";
  const size_t end = log.find('\n', at);
  return log.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

// One ferry-link-peer push and its --json report.
struct PushOutcome {
  int exit_code = -1;
  json::object report;
  std::string out, err;
  double wall_seconds = 0;

  bool ok() const {
    const json::value* v = report.if_contains("ok");
    return exit_code == 0 && v != nullptr && v->is_bool() && v->as_bool();
  }
  uint64_t bytes_sent() const { return U64(report, "bytes_sent"); }
  std::string error() const { return Str(report, "error") + " | " + Trim(err); }
};

class NetworkFaultTest : public ::testing::Test {
 protected:
  struct Snap {
    std::string id;
    std::string tree;
  };

  void SetUp() override {
    hub_bin_ = BinDir() + "/ferry-hub";
    peer_ = BinDir() + "/ferry-link-peer";
    ctl_ = BinDir() + "/ferryctl";
    data_ = dir_.Sub("hub-data");
    const HubInit init = InitHub(data_);
    fingerprint_ = init.fingerprint;
    admin_ = init.admin_token;
    ASSERT_FALSE(admin_.empty());
    keyset_ = dir_.Sub("acme.keyset");
    CommandResult k = RunCommand(
        {ctl_, "keys", "init", "--out", keyset_, "--argon2-memory", "8", "--argon2-ops", "1"},
        {"FERRY_PASSPHRASE=pw"});
    ASSERT_EQ(k.exit_code, 0) << k.err;
    agent_keys_ = dir_.Sub("agent.keys");
    CommandResult a =
        RunCommand({ctl_, "keys", "export-agent", "--keyset", keyset_, "--out", agent_keys_});
    ASSERT_EQ(a.exit_code, 0) << a.err;
    link_key_ = dir_.Sub("agent.link.key");
    store_ = dir_.Sub("agent-store");
    seed_ = BaseSeed();
    std::printf("[fault] %s mode, base seed %llu\n", LongMode() ? "long" : "quick",
                static_cast<unsigned long long>(seed_));
  }

  // `prefix` runs the hub through another program (ip netns exec).
  void StartHub(const std::vector<std::string>& extra = {},
                const std::vector<std::string>& prefix = {},
                const std::string& listen = "127.0.0.1:0") {
    const std::string port_file = dir_.Sub("hub.port");
    std::remove(port_file.c_str());
    std::vector<std::string> argv = prefix;
    for (const std::string& s :
         {hub_bin_, std::string("run"), std::string("--data-dir"), data_, std::string("--listen"),
          listen, std::string("--port-file"), port_file, std::string("--log-format"),
          std::string("text"), std::string("--shutdown-grace"), std::string("10s")}) {
      argv.push_back(s);
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    hub_ = std::make_unique<ChildProcess>(argv, dir_.Sub("hub.log"));
    port_ = static_cast<uint16_t>(std::stoi(WaitForFile(port_file, hub_.get())));
    api_port_ = port_;
  }
  void StopHub() {
    if (hub_ && hub_->running()) {
      EXPECT_EQ(hub_->Stop(SIGTERM), 0) << hub_->Log();
    }
  }
  std::string HubUrl() const { return "ws://" + hub_host_ + ":" + std::to_string(port_); }

  HttpResult Api(const std::string& method, const std::string& target,
                 const std::string& body = "") {
    return HttpRequest(api_port_, method, target, body, admin_);
  }

  // Tenant acme and this test's agent, enrolled over a clean link.
  void EnrollAgent() {
    HttpResult t = Api("POST", "/v1/tenants", "{\"name\":\"acme\"}");
    ASSERT_EQ(t.status, 201) << t.body;
    HttpResult r = Api("POST", "/v1/tenants/acme/enrollment-tokens", "{}");
    ASSERT_EQ(r.status, 201) << r.body;
    const json::value v = json::parse(r.body);
    const std::string token = Str(v.as_object(), "token");
    CommandResult e =
        RunCommand({peer_, "enroll", "--key", link_key_, "--hub", HubUrl(), "--hub-key",
                    fingerprint_, "--token", token, "--name", "edge-1", "--keyset", agent_keys_},
                   {}, "", 60);
    ASSERT_EQ(e.exit_code, 0) << e.err << hub_->Log();
  }

  // A tree of one incompressible file and one that compresses to about half,
  // captured into the agent's store.
  Snap MakeSnapshot(uint64_t seed, size_t bytes) {
    Snap s;
    s.tree = dir_.Sub("tree-" + std::to_string(snapshots_++));
    MakeDirsOrDie(s.tree);
    WriteFileOrDie(s.tree + "/data", SeededBytes(seed, bytes));
    WriteFileOrDie(s.tree + "/text", CompressibleBytes(seed + 1, bytes / 8, 0.5));
    CommandResult r = RunCommand(
        {ctl_, "snapshot", "create", "--store", store_, "--keyset", agent_keys_, s.tree});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::string out = Trim(r.out);
    s.id = out.substr(out.rfind('\n') + 1);
    return s;
  }

  PushOutcome Push(const std::string& url, const Snap& snap,
                   const std::vector<std::string>& extra = {}, int timeout_s = 180) {
    std::vector<std::string> argv = {peer_,     "push", "--key",      link_key_,
                                     "--hub",   url,    "--hub-key",  fingerprint_,
                                     "--store", store_, "--snapshot", snap.id};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const auto start = steady_clock::now();
    CommandResult r = RunCommand(argv, {}, "", timeout_s);
    PushOutcome p;
    p.wall_seconds = std::chrono::duration<double>(steady_clock::now() - start).count();
    p.exit_code = r.exit_code;
    p.out = r.out;
    p.err = r.err;
    std::string line = Trim(r.out);
    if (const size_t nl = line.rfind('\n'); nl != std::string::npos) line = line.substr(nl + 1);
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (!ec && v.is_object()) p.report = v.as_object();
    return p;
  }

  size_t HubLogSize() const { return hub_->Log().size(); }
  std::string HubLogSince(size_t offset) const {
    const std::string log = hub_->Log();
    return offset < log.size() ? log.substr(offset) : "";
  }
  // Waits until the hub's log after `offset` contains `needle`.
  bool WaitForHubLog(size_t offset, const std::string& needle, milliseconds timeout) {
    const auto deadline = steady_clock::now() + timeout;
    while (steady_clock::now() < deadline) {
      if (Contains(HubLogSince(offset), needle)) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }

  std::string Metrics() { return HttpRequest(api_port_, "GET", "/metrics").body; }
  // Waits until no link session is open on the hub (their counters land
  // when they end) and returns the metrics read after that.
  std::string MetricsWhenIdle() {
    const auto deadline = steady_clock::now() + seconds(60);
    while (steady_clock::now() < deadline) {
      if (MetricValue(Metrics(), "ferry_hub_sessions_open") == 0) return Metrics();
      std::this_thread::sleep_for(milliseconds(10));
    }
    ADD_FAILURE() << "hub sessions still open after 60 s";
    return Metrics();
  }

  std::vector<std::string> SnapshotIds() {
    HttpResult r = Api("GET", "/v1/tenants/acme/snapshots");
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<std::string> ids;
    boost::system::error_code ec;
    json::value v = json::parse(r.body, ec);
    if (ec) return ids;
    const json::array* list = v.is_array() ? &v.as_array() : nullptr;
    if (v.is_object()) {
      for (const auto& kv : v.as_object()) {
        if (kv.value().is_array()) list = &kv.value().as_array();
      }
    }
    if (list == nullptr) return ids;
    for (const json::value& s : *list) {
      if (s.is_object()) ids.push_back(Str(s.as_object(), "id"));
    }
    return ids;
  }

  // Stops the hub, then checks each snapshot in the tenant's store with
  // `ferryctl verify --store` and restores it byte for byte.
  void VerifyAtHub(const std::vector<Snap>& snaps) {
    StopHub();
    const std::string store = data_ + "/tenants/acme/store";
    for (size_t i = 0; i < snaps.size(); ++i) {
      SCOPED_TRACE("snapshot " + snaps[i].id);
      CommandResult v =
          RunCommand({ctl_, "verify", "--store", store, "--keyset", keyset_, snaps[i].id},
                     {"FERRY_PASSPHRASE=pw"});
      EXPECT_EQ(v.exit_code, 0) << v.err << v.out;
      const std::string out = dir_.Sub("restored-" + std::to_string(i));
      CommandResult r = RunCommand(
          {ctl_, "restore", "--store", store, "--keyset", keyset_, "--to", out, snaps[i].id},
          {"FERRY_PASSPHRASE=pw"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(DiffTrees(snaps[i].tree, out), "");
    }
  }

  std::unique_ptr<FaultProxy> StartProxy(const FaultPlan& plan) {
    FaultProxyOptions options;
    options.upstream_address = hub_host_;
    options.upstream_port = port_;
    options.plan = plan;
    auto proxy = FaultProxy::Start(options);
    EXPECT_TRUE(proxy.ok()) << proxy.status().ToString();
    return proxy.ok() ? std::move(*proxy) : nullptr;
  }

  TempDir dir_;
  std::string hub_bin_, peer_, ctl_, data_, fingerprint_, admin_;
  std::string keyset_, agent_keys_, link_key_, store_;
  std::string hub_host_ = "127.0.0.1";
  std::unique_ptr<ChildProcess> hub_;
  uint16_t port_ = 0;
  uint16_t api_port_ = 0;  // where the REST API is reached from here
  uint64_t seed_ = 0;
  int snapshots_ = 0;
};

// ---------------------------------------------------------------------------
// (a) Shaped links

// A random bad-but-working link from a seed: latency and jitter each way,
// re-segmented writes with pauses, stalls, and a rate cap to the hub.
FaultPlan ShapingPlan(uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&rng](uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
  };
  FaultPlan plan;
  plan.seed = seed;
  for (DirectionFaults* d : {&plan.to_server, &plan.to_client}) {
    d->latency = std::chrono::microseconds(pick(0, 25) * 1000);
    d->jitter = std::chrono::microseconds(pick(0, 8000));
    d->write_gap = std::chrono::microseconds(pick(0, 400));
  }
  // Writes down to a few bytes toward the agent (its messages are small);
  // toward the hub at least 100 (megabytes in 7-byte writes take minutes),
  // which still splits one WebSocket header in a few.
  const uint64_t to_agent[] = {7, 100, 536, 1460};
  const uint64_t to_hub[] = {100, 536, 1460, 9000};
  plan.to_client.max_write = to_agent[pick(0, 3)];
  plan.to_server.max_write = to_hub[pick(0, 3)];
  plan.to_server.rate = pick(3, 8) * 1'000'000;
  if (pick(0, 1) == 1) {
    plan.to_server.stall_every = pick(512, 2048) << 10;
    plan.to_server.stall_for = milliseconds(pick(50, 400));
  }
  if (pick(0, 1) == 1) {
    plan.to_client.stall_every = pick(1, 8) << 10;
    plan.to_client.stall_for = milliseconds(pick(20, 200));
  }
  return plan;
}

TEST_F(NetworkFaultTest, ShapedLinksDeliverEverySnapshotIntact) {
  StartHub();
  EnrollAgent();
  struct Row {
    std::string plan;
    uint64_t rate;
    double goodput;
    double seconds;
    uint64_t stalls;
  };
  std::vector<Row> rows;
  std::vector<Snap> snaps;
  // Run 0: the rate cap alone, for a clean goodput figure; then seeded mixes.
  const int runs = 1 + Iterations(3, 24);
  for (int i = 0; i < runs; ++i) {
    FaultPlan plan;
    if (i == 0) {
      plan.seed = seed_;
      plan.to_server.rate = 4'000'000;
    } else {
      plan = ShapingPlan(seed_ + static_cast<uint64_t>(i));
    }
    SCOPED_TRACE(plan.Describe());
    std::printf("[fault] shaping %s\n", plan.Describe().c_str());
    const Snap snap =
        MakeSnapshot(seed_ * 31 + static_cast<uint64_t>(i), i == 0 ? 8 << 20 : 3 << 20);
    auto proxy = StartProxy(plan);
    ASSERT_NE(proxy, nullptr);
    const PushOutcome push = Push(proxy->url(), snap, {}, 300);
    ASSERT_TRUE(push.ok()) << push.error() << "\n" << HubLogSince(0);
    snaps.push_back(snap);
    const FaultProxyStats st = proxy->stats();
    EXPECT_EQ(st.resets, 0u);
    EXPECT_LE(st.max_buffered, (1u << 20) + (64u << 10)) << "the proxy's memory bound";
    const double seconds_taken = std::max(Num(push.report, "seconds"), 1e-3);
    const double goodput = static_cast<double>(push.bytes_sent()) / seconds_taken;
    rows.push_back({plan.Describe(), plan.to_server.rate, goodput, seconds_taken, st.stalls});
    // The cap holds: the wire carried at most rate * t + one burst.
    const double wire = static_cast<double>(st.bytes_to_server);
    const double rate = static_cast<double>(plan.to_server.rate);
    const double burst = std::max<double>(rate / 50.0, 16 << 10);
    EXPECT_LE(wire, rate * push.wall_seconds + burst) << "the proxy let more through than its rate";
    if (i == 0) {
      EXPECT_GE(goodput, 0.5 * static_cast<double>(plan.to_server.rate))
          << "goodput far below the shaped rate";
    }
  }
  std::printf("[fault] goodput against the shaped rate (sealed bytes uploaded / push time):\n");
  for (const Row& r : rows) {
    std::printf("[fault]   %6.2f MB/s of %5.2f MB/s (%5.1f%%) in %5.2f s, %llu stalls  %s\n",
                r.goodput / 1e6, static_cast<double>(r.rate) / 1e6,
                100.0 * r.goodput / static_cast<double>(r.rate), r.seconds,
                static_cast<unsigned long long>(r.stalls), r.plan.c_str());
  }
  // Every snapshot is listed once and reads back byte for byte.
  std::vector<std::string> ids = SnapshotIds();
  for (const Snap& s : snaps) EXPECT_EQ(std::count(ids.begin(), ids.end(), s.id), 1) << s.id;
  VerifyAtHub(snaps);
}

// ---------------------------------------------------------------------------
// (b) Tampered messages

struct TamperCase {
  bool to_server = true;
  WsFault fault = WsFault::kNone;
  uint64_t message = 0;
  uint64_t bit = 0;
  uint64_t replay_after = 1;
};

std::string Name(const TamperCase& c) {
  return std::string(c.to_server ? "to-server " : "to-client ") +
         std::string(WsFaultName(c.fault)) + " of message " + std::to_string(c.message);
}

class TamperTest : public NetworkFaultTest {
 protected:
  // Each case on a fresh snapshot: the faulted push fails with a typed
  // error on both sides, nothing of it is accepted (the snapshot is not
  // listed), the hub keeps serving, and the same push without faults
  // completes. At the end every snapshot is verified and restored.
  void RunCases(const std::vector<std::pair<TamperCase, uint64_t>>& cases, size_t snapshot_bytes) {
    StartHub();
    EnrollAgent();
    std::vector<Snap> snaps;
    int n = 0;
    for (const auto& [c, seed] : cases) {
      FaultPlan plan;
      plan.seed = seed;
      DirectionFaults& d = c.to_server ? plan.to_server : plan.to_client;
      d.ws = c.fault;
      d.ws_message = c.message;
      d.ws_bit = c.bit;
      d.replay_after = c.replay_after;
      SCOPED_TRACE(Name(c) + ": " + plan.Describe());
      const Snap snap = MakeSnapshot(seed, snapshot_bytes);
      auto proxy = StartProxy(plan);
      ASSERT_NE(proxy, nullptr);
      const size_t log_at = HubLogSize();
      const double errors_before =
          LabelledMetric(Metrics(), "ferry_hub_errors_total{where=\"link\",code=\"DATA_LOSS\"}");
      const PushOutcome bad = Push(proxy->url(), snap, {}, 120);
      const FaultProxyStats st = proxy->stats();
      ASSERT_TRUE(proxy->WaitIdle(seconds(30)));
      EXPECT_EQ(st.ws_faults_applied, 1u) << "the fault did not happen";
      EXPECT_FALSE(bad.ok()) << "a tampered session completed: " << bad.out;
      EXPECT_EQ(bad.exit_code, 1);
      // Typed errors: the side that received the tampered message found it
      // does not decrypt under the next nonce (DATA_LOSS) and closed the
      // link with 1002; the other side names that close.
      ASSERT_TRUE(WaitForHubLog(log_at, "ended (", seconds(30))) << HubLogSince(log_at);
      const std::string hub_log = HubLogSince(log_at);
      const std::string peer_error = bad.error();
      if (c.to_server) {
        EXPECT_TRUE(Contains(hub_log, "does not decrypt")) << hub_log;
        EXPECT_TRUE(Contains(peer_error, "DATA_LOSS") || Contains(peer_error, "1002"))
            << peer_error;
        EXPECT_EQ(LabelledMetric(MetricsWhenIdle(),
                                 "ferry_hub_errors_total{where=\"link\",code=\"DATA_LOSS\"}"),
                  errors_before + 1);
      } else {
        EXPECT_TRUE(Contains(peer_error, "DATA_LOSS")) << peer_error;
        EXPECT_TRUE(Contains(peer_error, "does not decrypt")) << peer_error;
        EXPECT_TRUE(Contains(hub_log, "1002")) << hub_log;
      }
      std::printf("[fault] %-32s seed %llu\n[fault]   peer: %s\n[fault]   hub:  %s\n",
                  Name(c).c_str(), static_cast<unsigned long long>(seed),
                  Str(bad.report, "error").substr(0, 150).c_str(),
                  SessionEnd(hub_log).substr(0, 150).c_str());
      // Never accepted. Toward the hub: the session ends before its
      // commit. Toward the agent: the hub may have committed (it received
      // everything intact: the agent does not wait for acks before its
      // commit), but the agent took nothing from the tampered message and
      // reported failure; its retry is then answered "already present".
      std::vector<std::string> ids = SnapshotIds();
      const bool committed = std::count(ids.begin(), ids.end(), snap.id) == 1;
      if (c.to_server) {
        EXPECT_FALSE(committed) << "committed despite the fault";
      }
      // A retry over a clean link (the proxy without faults) completes.
      proxy->SetPlan(FaultPlan{});
      const PushOutcome good = Push(proxy->url(), snap, {}, 120);
      ASSERT_TRUE(good.ok()) << good.error();
      const json::value* present = good.report.if_contains("already_present");
      EXPECT_EQ(present != nullptr && present->is_bool() && present->as_bool(), committed);
      ids = SnapshotIds();
      EXPECT_EQ(std::count(ids.begin(), ids.end(), snap.id), 1);
      snaps.push_back(snap);
      ++n;
    }
    EXPECT_TRUE(hub_->running());
    std::printf("[fault] %d tampered sessions: all ended with a typed error, none accepted\n", n);
    VerifyAtHub(snaps);
  }
};

constexpr size_t kTamperSnapshotBytes = 2 << 20;

// Client-to-hub data messages: 0 and 1 are Noise messages 1 and 3, 2 the
// hello, 3 the missing query; uploads start at 4 and stream without waiting
// for an answer (the window is far larger than the snapshot), then the
// commit parts follow. A message in [4, 4 + uploads' records - 1) always has
// a successor, so a drop or a swap is seen at once (a dropped last message
// before a wait is a stall, found by the timeouts instead).
TEST_F(TamperTest, MessagesTamperedOnTheWayToTheHubEndTheSession) {
  const uint64_t last = 4 + kTamperSnapshotBytes / kRecordMessage - 2;
  std::mt19937_64 rng(seed_);
  std::vector<std::pair<TamperCase, uint64_t>> cases;
  const int rounds = Iterations(2, 8);
  for (int r = 0; r < rounds; ++r) {
    for (WsFault f : {WsFault::kFlipBit, WsFault::kDrop, WsFault::kDuplicate, WsFault::kReorder,
                      WsFault::kReplay}) {
      TamperCase c;
      c.to_server = true;
      c.fault = f;
      c.message = std::uniform_int_distribution<uint64_t>(4, last)(rng);
      c.bit = rng();
      c.replay_after = std::uniform_int_distribution<uint64_t>(1, 4)(rng);
      cases.emplace_back(c, rng());
    }
  }
  RunCases(cases, kTamperSnapshotBytes);
}

// Hub-to-client data messages: 0 is Noise message 2, 1 the hello_ack, 2 the
// policy sync the hub sends right after it, 3 the missing reply; then the
// upload acks and the commit ack. Drops and swaps take 1 or 2 (both have a
// successor whatever the client does); flips, duplicates and replays 1–3.
TEST_F(TamperTest, MessagesTamperedOnTheWayToTheAgentEndTheSession) {
  std::mt19937_64 rng(seed_ + 1);
  std::vector<std::pair<TamperCase, uint64_t>> cases;
  const int rounds = Iterations(2, 8);
  for (int r = 0; r < rounds; ++r) {
    for (WsFault f : {WsFault::kFlipBit, WsFault::kDrop, WsFault::kDuplicate, WsFault::kReorder,
                      WsFault::kReplay}) {
      TamperCase c;
      c.to_server = false;
      c.fault = f;
      const bool needs_successor = f == WsFault::kDrop || f == WsFault::kReorder;
      c.message = std::uniform_int_distribution<uint64_t>(1, needs_successor ? 2 : 3)(rng);
      c.bit = rng();
      c.replay_after = 1;
      cases.emplace_back(c, rng());
    }
  }
  RunCases(cases, kTamperSnapshotBytes);
}

// A flipped bit in any of the three Noise handshake messages: the handshake
// fails (DATA_LOSS "noise handshake" where it is detected), no session
// reaches the replication protocol, and the next push completes.
TEST_F(NetworkFaultTest, TamperedHandshakeMessagesFailTheHandshake) {
  StartHub();
  EnrollAgent();
  std::mt19937_64 rng(seed_ + 2);
  struct Case {
    bool to_server;
    uint64_t message;
  };
  std::vector<Snap> snaps;
  const int rounds = Iterations(1, 10);
  for (int r = 0; r < rounds; ++r) {
    for (Case hc : {Case{true, 0}, Case{false, 0}, Case{true, 1}}) {
      FaultPlan plan;
      plan.seed = rng();
      DirectionFaults& d = hc.to_server ? plan.to_server : plan.to_client;
      d.ws = WsFault::kFlipBit;
      d.ws_message = hc.message;
      d.ws_bit = rng();
      SCOPED_TRACE(plan.Describe());
      const Snap snap = MakeSnapshot(plan.seed, 256 << 10);
      auto proxy = StartProxy(plan);
      ASSERT_NE(proxy, nullptr);
      const size_t log_at = HubLogSize();
      const PushOutcome bad = Push(proxy->url(), snap, {}, 60);
      EXPECT_EQ(proxy->stats().ws_faults_applied, 1u);
      EXPECT_FALSE(bad.ok()) << bad.out;
      EXPECT_EQ(bad.exit_code, 1);
      const std::string peer_error = bad.error();
      // Noise message 1 is the client's ephemeral key in the clear: a flip
      // there surfaces as message 2 not decrypting at the client. A flip in
      // message 2 fails at the client, one in message 3 at the hub.
      if (hc.to_server && hc.message == 1) {
        ASSERT_TRUE(WaitForHubLog(log_at, "link handshake with", seconds(30)))
            << HubLogSince(log_at);
        EXPECT_TRUE(Contains(HubLogSince(log_at), "DATA_LOSS")) << HubLogSince(log_at);
      } else {
        EXPECT_TRUE(Contains(peer_error, "DATA_LOSS")) << peer_error;
        EXPECT_TRUE(Contains(peer_error, "noise handshake")) << peer_error;
      }
      EXPECT_FALSE(Contains(HubLogSince(log_at), "enrolled key")) << "a session started";
      std::printf("[fault] handshake flip %s message %llu  peer: %s\n",
                  hc.to_server ? "to-server" : "to-client",
                  static_cast<unsigned long long>(hc.message), Str(bad.report, "error").c_str());
      proxy->SetPlan(FaultPlan{});
      const PushOutcome good = Push(proxy->url(), snap, {}, 60);
      ASSERT_TRUE(good.ok()) << good.error();
      snaps.push_back(snap);
    }
  }
  VerifyAtHub(snaps);
}

// A flipped bit in a WebSocket frame header (FIN, RSV, opcode, MASK, the
// lengths, the masking key) breaks the framing itself. Whichever it is, the
// receiving side ends the session with DATA_LOSS (a WebSocket protocol error,
// or a record that does not decrypt once the length moved) or
// RESOURCE_EXHAUSTED (a length over 65535 bytes), nothing is accepted, and
// the next push completes. Client-to-hub message 10 is a full record (an
// 8-byte header: 2, the 16-bit length, the masking key), hub-to-client
// message 2 the policy sync (2 bytes, unmasked). Quick mode: a few bits of
// each; long mode: every bit.
TEST_F(NetworkFaultTest, FlippedHeaderBitsEndTheSession) {
  StartHub();
  EnrollAgent();
  std::mt19937_64 rng(seed_ + 7);
  struct Case {
    bool to_server;
    uint64_t message;
    uint64_t bits;  // header bits of that message's frame
    int quick;      // how many of them in quick mode
  };
  std::vector<Snap> snaps;
  int n = 0;
  for (Case hc : {Case{true, 10, 64, 4}, Case{false, 2, 16, 3}}) {
    std::vector<uint64_t> bits(hc.bits);
    for (uint64_t b = 0; b < hc.bits; ++b) bits[b] = b;
    if (!LongMode()) {
      std::shuffle(bits.begin(), bits.end(), rng);
      bits.resize(static_cast<size_t>(hc.quick));
    }
    for (uint64_t bit : bits) {
      FaultPlan plan;
      plan.seed = rng();
      DirectionFaults& d = hc.to_server ? plan.to_server : plan.to_client;
      d.ws = WsFault::kFlipBit;
      d.ws_message = hc.message;
      d.ws_bit = bit;
      d.ws_header = true;
      SCOPED_TRACE(plan.Describe());
      const Snap snap = MakeSnapshot(plan.seed, kTamperSnapshotBytes);
      auto proxy = StartProxy(plan);
      ASSERT_NE(proxy, nullptr);
      const size_t log_at = HubLogSize();
      const PushOutcome bad = Push(proxy->url(), snap, {}, 150);
      EXPECT_EQ(proxy->stats().ws_faults_applied, 1u);
      EXPECT_FALSE(bad.ok()) << bad.out;
      EXPECT_EQ(bad.exit_code, 1);
      ASSERT_TRUE(WaitForHubLog(log_at, "ended (", seconds(30))) << HubLogSince(log_at);
      const std::string hub_end = SessionEnd(HubLogSince(log_at));
      const std::string receiver = hc.to_server ? hub_end : Str(bad.report, "error");
      EXPECT_TRUE(Contains(receiver, "DATA_LOSS") || Contains(receiver, "RESOURCE_EXHAUSTED"))
          << receiver;
      std::printf(
          "[fault] header bit %2llu of %s message %llu (%.1f s)\n[fault]   peer: %s\n"
          "[fault]   hub:  %s\n",
          static_cast<unsigned long long>(bit), hc.to_server ? "to-server" : "to-client",
          static_cast<unsigned long long>(hc.message), bad.wall_seconds,
          Str(bad.report, "error").substr(0, 150).c_str(), hub_end.substr(0, 150).c_str());
      std::vector<std::string> ids = SnapshotIds();
      EXPECT_EQ(std::count(ids.begin(), ids.end(), snap.id), 0) << "committed despite the fault";
      proxy->SetPlan(FaultPlan{});
      const PushOutcome good = Push(proxy->url(), snap, {}, 120);
      ASSERT_TRUE(good.ok()) << good.error();
      snaps.push_back(snap);
      ++n;
    }
  }
  EXPECT_TRUE(hub_->running());
  std::printf("[fault] %d header bits flipped: every session ended with a typed error\n", n);
  VerifyAtHub(snaps);
}

// A message dropped just before its sender waits for an answer has no
// successor to betray it: the link looks idle (WebSocket pings still flow).
// The agent's timeout (SenderOptions::timeout, 60 s) ends the session with
// DEADLINE_EXCEEDED; nothing is committed and the next push completes. Long
// mode only: each case waits out that timeout.
TEST_F(NetworkFaultTest, DroppedMessageBeforeAWaitEndsByTheAgentsTimeout) {
  if (!LongMode()) {
    GTEST_SKIP() << "long mode only (FERRY_FAULT_LONG=1): each case waits out the agent's 60 s "
                    "timeout";
  }
  StartHub();
  EnrollAgent();
  std::vector<Snap> snaps;
  // Message 3 each way: the missing query (the agent then waits for the
  // reply) and the missing reply (the hub then waits for uploads).
  for (bool to_server : {true, false}) {
    FaultPlan plan;
    plan.seed = seed_ + (to_server ? 5 : 6);
    DirectionFaults& d = to_server ? plan.to_server : plan.to_client;
    d.ws = WsFault::kDrop;
    d.ws_message = 3;
    SCOPED_TRACE(plan.Describe());
    const Snap snap = MakeSnapshot(plan.seed, 512 << 10);
    auto proxy = StartProxy(plan);
    ASSERT_NE(proxy, nullptr);
    const PushOutcome bad = Push(proxy->url(), snap, {}, 150);
    EXPECT_EQ(proxy->stats().ws_faults_applied, 1u);
    EXPECT_FALSE(bad.ok());
    EXPECT_TRUE(Contains(bad.error(), "DEADLINE_EXCEEDED")) << bad.error();
    EXPECT_GE(bad.wall_seconds, 55.0);
    EXPECT_LT(bad.wall_seconds, 90.0);
    std::printf("[fault] %s drop of message 3: the agent gave up after %.1f s: %s\n",
                to_server ? "to-server" : "to-client", bad.wall_seconds,
                Str(bad.report, "error").c_str());
    std::vector<std::string> ids = SnapshotIds();
    EXPECT_EQ(std::count(ids.begin(), ids.end(), snap.id), 0);
    proxy->SetPlan(FaultPlan{});
    const PushOutcome good = Push(proxy->url(), snap, {}, 120);
    ASSERT_TRUE(good.ok()) << good.error();
    snaps.push_back(snap);
  }
  VerifyAtHub(snaps);
}

// ---------------------------------------------------------------------------
// (c) Resets after N bytes

// The hub's upload window, set here rather than its 64 MiB default so that
// a snapshot of a few windows is pushed in a few seconds; uploads of 256 KiB
// keep eight in flight.
constexpr uint64_t kWindow = 2 << 20;
constexpr uint64_t kMaxFrame = 1 << 20;

TEST_F(NetworkFaultTest, ResetsResumeResendingAtMostOneWindowPerCut) {
  StartHub({"--max-frame-bytes", std::to_string(kMaxFrame), "--upload-window-bytes",
            std::to_string(kWindow)});
  EnrollAgent();
  std::mt19937_64 rng(seed_ + 3);
  const int rounds = Iterations(1, 6);
  std::vector<Snap> snaps;
  struct CutRow {
    std::string where;
    uint64_t sent, stored, resent;
  };
  std::vector<CutRow> rows;
  uint64_t worst = 0;
  for (int round = 0; round < rounds; ++round) {
    const Snap snap = MakeSnapshot(rng(), 12 << 20);
    auto proxy = StartProxy(FaultPlan{});
    ASSERT_NE(proxy, nullptr);
    double stored_before = MetricValue(MetricsWhenIdle(), "ferry_hub_chunk_bytes_stored_total");
    uint64_t missing_before = UINT64_MAX;
    bool done = false;
    int cuts = 0;
    // Cut points: planned - 1 toward the hub, each after 256 KiB .. 12 MiB /
    // planned of its attempt's bytes, so that all of them land before the
    // snapshot is through; then one toward the agent (in the handshake,
    // the missing reply or among the acks; it may also come after the last
    // byte the hub sends, and then the push completes).
    const int planned = LongMode() ? 8 : 4;
    int to_server_cuts = 0;
    for (int attempt = 0; attempt <= planned + 4 && !done; ++attempt) {
      FaultPlan plan;
      plan.seed = rng();
      if (attempt < planned - 1) {
        plan.to_server.reset_after =
            std::uniform_int_distribution<uint64_t>(256 << 10, (12 << 20) / planned)(rng);
      } else if (attempt == planned - 1) {
        plan.to_client.reset_after = std::uniform_int_distribution<uint64_t>(600, 12000)(rng);
      }
      proxy->SetPlan(plan);
      SCOPED_TRACE(plan.Describe());
      const uint64_t resets_before = proxy->stats().resets;
      const PushOutcome push = Push(proxy->url(), snap, {"--upload-batch", "262144"}, 120);
      ASSERT_TRUE(proxy->WaitIdle(seconds(30)));
      const bool cut = proxy->stats().resets > resets_before;
      const double stored = MetricValue(MetricsWhenIdle(), "ferry_hub_chunk_bytes_stored_total");
      const uint64_t new_bytes = static_cast<uint64_t>(stored - stored_before);
      stored_before = stored;
      const uint64_t sent = push.bytes_sent();
      done = push.ok();
      if (!done) {
        EXPECT_TRUE(cut) << "a push failed without a cut: " << push.error();
        EXPECT_TRUE(Contains(push.error(), "UNAVAILABLE")) << push.error();
      }
      // Monotonic: each session asks again and is told only what is missing.
      // (A session cut before the missing reply reports none missing.)
      const uint64_t missing = U64(push.report, "chunks_missing");
      if (missing > 0 || push.ok()) {
        EXPECT_LE(missing, missing_before);
        missing_before = missing;
      }
      // Bounded: what this session sent and the hub did not keep was in
      // flight at the cut: at most one window.
      const uint64_t resent = sent > new_bytes ? sent - new_bytes : 0;
      if (cut) {
        ++cuts;
        if (plan.to_server.reset_after > 0) ++to_server_cuts;
        EXPECT_LE(resent, kWindow) << "sent " << sent << ", stored " << new_bytes;
        worst = std::max(worst, resent);
        rows.push_back({plan.Describe(), sent, new_bytes, resent});
      } else {
        EXPECT_EQ(resent, 0u) << "a session without a cut sent bytes the hub did not keep";
      }
    }
    ASSERT_TRUE(done) << "the push did not complete";
    EXPECT_EQ(to_server_cuts, planned - 1) << "a cut toward the hub did not land mid-push";
    snaps.push_back(snap);
  }
  std::printf("[fault] bytes sent again per cut (window %s):\n", Mb(kWindow).c_str());
  for (const CutRow& r : rows) {
    std::printf("[fault]   sent %s, kept %s, lost in flight %s  %s\n", Mb(r.sent).c_str(),
                Mb(r.stored).c_str(), Mb(r.resent).c_str(), r.where.c_str());
  }
  std::printf("[fault] %zu cuts, worst %s lost in flight of a %s window\n", rows.size(),
              Mb(worst).c_str(), Mb(kWindow).c_str());
  VerifyAtHub(snaps);
}

// ---------------------------------------------------------------------------
// (d) A real partition: the hub in a network namespace, joined to this one
// by a veth pair whose outer end is rate-capped by tc tbf and taken down
// mid-push.

std::string FindTool(const std::string& name) {
  for (const char* dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) {
    const std::string path = std::string(dir) + "/" + name;
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

class Netns {
 public:
  Netns() {
    const int pid = static_cast<int>(::getpid());
    ns = "ferry-fault-" + std::to_string(pid);
    outer = "ffo" + std::to_string(pid);
    inner = "ffi" + std::to_string(pid);
    const std::string net =
        "10." + std::to_string(200 + pid % 50) + "." + std::to_string((pid / 50) % 256) + ".";
    outer_ip = net + "1";
    inner_ip = net + "2";
  }
  ~Netns() {
    if (!created_) return;
    Run({ip, "link", "del", outer});
    Run({ip, "netns", "del", ns});
  }

  // Builds the namespace, the veth pair and the tbf qdisc; "" when done,
  // otherwise why not (the test is then skipped, saying so).
  std::string Create(const std::string& rate) {
    if (::geteuid() != 0) return "needs root (uid " + std::to_string(::geteuid()) + ")";
    ip = FindTool("ip");
    tc = FindTool("tc");
    if (ip.empty() || tc.empty()) return "ip or tc (iproute2) not installed";
    CommandResult r = Run({ip, "netns", "add", ns});
    if (r.exit_code != 0) return "ip netns add: " + Trim(r.err);
    created_ = true;
    for (const std::vector<std::string>& step : std::vector<std::vector<std::string>>{
             {ip, "link", "add", outer, "type", "veth", "peer", "name", inner},
             {ip, "link", "set", inner, "netns", ns},
             {ip, "addr", "add", outer_ip + "/30", "dev", outer},
             {ip, "link", "set", outer, "up"},
             {ip, "netns", "exec", ns, ip, "addr", "add", inner_ip + "/30", "dev", inner},
             {ip, "netns", "exec", ns, ip, "link", "set", inner, "up"},
             {ip, "netns", "exec", ns, ip, "link", "set", "lo", "up"},
             {tc, "qdisc", "add", "dev", outer, "root", "tbf", "rate", rate, "burst", "64kb",
              "latency", "100ms"}}) {
      r = Run(step);
      if (r.exit_code != 0) {
        std::string cmd;
        for (const std::string& a : step) cmd += (cmd.empty() ? "" : " ") + a;
        return cmd + ": " + Trim(r.err);
      }
    }
    return "";
  }

  CommandResult Run(const std::vector<std::string>& argv) const {
    return RunCommand(argv, {}, "", 30);
  }
  // Bytes the tbf qdisc has sent toward the hub.
  uint64_t SentBytes() const {
    const std::string out = Run({tc, "-s", "qdisc", "show", "dev", outer}).out;
    const size_t at = out.find("Sent ");
    return at == std::string::npos ? 0 : std::stoull(out.substr(at + 5));
  }

  std::string ip, tc, ns, outer, inner, outer_ip, inner_ip;

 private:
  bool created_ = false;
};

// The peer's last JSON line in a log that mixes stdout and stderr.
json::object LastJsonLine(const std::string& log) {
  size_t end = log.size();
  while (end > 0) {
    const size_t start = log.rfind('\n', end - 1);
    const std::string line = log.substr(start == std::string::npos ? 0 : start + 1,
                                        end - (start == std::string::npos ? 0 : start + 1));
    if (!line.empty() && line[0] == '{') {
      boost::system::error_code ec;
      json::value v = json::parse(line, ec);
      if (!ec && v.is_object()) return v.as_object();
    }
    if (start == std::string::npos) break;
    end = start;
  }
  return {};
}

TEST_F(NetworkFaultTest, HubInANamespaceBehindTbfSurvivesAPartitionMidPush) {
  constexpr uint64_t kRate = 40'000'000 / 8;  // tbf rate 40mbit, in bytes/s
  Netns net;
  const std::string why = net.Create("40mbit");
  if (!why.empty()) {
    GTEST_SKIP() << "network namespaces, veth pairs and tc tbf are not available here: " << why;
  }
  hub_host_ = net.inner_ip;
  StartHub({}, {net.ip, "netns", "exec", net.ns}, net.inner_ip + ":0");
  // The REST API from this namespace: through a proxy without faults.
  auto rest = StartProxy(FaultPlan{});
  ASSERT_NE(rest, nullptr);
  api_port_ = rest->port();
  EnrollAgent();

  // A clean push at the tbf rate: the goodput figure.
  const Snap clean = MakeSnapshot(seed_ + 40, 8 << 20);
  const PushOutcome shaped = Push(HubUrl(), clean, {}, 120);
  ASSERT_TRUE(shaped.ok()) << shaped.error();
  const double goodput =
      static_cast<double>(shaped.bytes_sent()) / std::max(Num(shaped.report, "seconds"), 1e-3);
  std::printf("[fault] tbf: goodput %.2f MB/s of %.2f MB/s shaped (%.1f%%)\n", goodput / 1e6,
              static_cast<double>(kRate) / 1e6, 100.0 * goodput / static_cast<double>(kRate));
  EXPECT_LE(goodput, 1.1 * static_cast<double>(kRate)) << "tbf did not cap the rate";

  // Partitions mid-push: the link goes down once 4 MB of a 16 MiB push went
  // through, stays down for the fault's length, and comes back. A short one
  // is ridden out by TCP within the session; one longer than the agent's
  // 60 s timeout ends the session, and the next push resumes.
  std::vector<Snap> snaps = {clean};
  std::vector<int> partitions = {3};
  if (LongMode()) partitions.push_back(75);
  for (size_t p = 0; p < partitions.size(); ++p) {
    const Snap big = MakeSnapshot(seed_ + 41 + p, 16 << 20);
    const uint64_t sent_before = net.SentBytes();
    ChildProcess push({peer_, "push", "--key", link_key_, "--hub", HubUrl(), "--hub-key",
                       fingerprint_, "--store", store_, "--snapshot", big.id},
                      dir_.Sub("partitioned-push-" + std::to_string(p) + ".log"));
    const auto deadline = steady_clock::now() + seconds(60);
    while (net.SentBytes() - sent_before < (4u << 20) && push.running() &&
           steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(20));
    }
    ASSERT_TRUE(push.running()) << "the push ended before the partition: " << push.Log();
    ASSERT_EQ(net.Run({net.ip, "link", "set", net.outer, "down"}).exit_code, 0);
    const auto down_at = steady_clock::now();
    std::this_thread::sleep_for(seconds(partitions[p]));  // the partition itself, not a wait
    ASSERT_EQ(net.Run({net.ip, "link", "set", net.outer, "up"}).exit_code, 0);
    const double partition_s = std::chrono::duration<double>(steady_clock::now() - down_at).count();
    const int code = push.Wait(seconds(150));
    const json::object first = LastJsonLine(push.Log());
    const PushOutcome* last = nullptr;
    PushOutcome again;
    int retries = 0;
    bool done = code == 0;
    for (; retries < 3 && !done; ++retries) {
      again = Push(HubUrl(), big, {}, 150);
      done = again.ok();
      last = &again;
    }
    std::printf("[fault] tbf: partition of %.1f s mid-push: %s; %d retries\n", partition_s,
                code == 0 ? "TCP rode it out, the same session completed"
                          : ("the session ended (" + Str(first, "error") + ")").c_str(),
                retries);
    ASSERT_TRUE(done) << "the push did not complete after the partition"
                      << (last ? ": " + last->error() : "");
    if (code != 0) {
      // The resumed push asked again and was told less is missing: what
      // arrived before the partition was kept.
      EXPECT_LT(U64(last->report, "chunks_missing"), U64(first, "chunks_missing"));
    }
    std::vector<std::string> ids = SnapshotIds();
    EXPECT_EQ(std::count(ids.begin(), ids.end(), big.id), 1);
    snaps.push_back(big);
  }
  rest.reset();
  VerifyAtHub(snaps);
}

}  // namespace
}  // namespace ferry::testing
