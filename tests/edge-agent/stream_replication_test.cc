// Stream replication between a real ferry-agent and a real ferry-hub on
// loopback (issue 7, "Replication" and "At the hub"): records reach the hub
// as sealed batches while producers append, exactly once and in order
// through link cuts and an agent killed with SIGKILL, and come back byte for
// byte through `ferryctl stream read`; the hub's stream API refuses bad
// offsets, unknown streams and other tenants.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/fleet.h"

namespace ferry::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

json::value Parse(const std::string& body) { return ParseJson(body); }

// The record (a JSON line) a producer writes at `offset`: its offset and a
// few bytes that depend on it, so that a record delivered at the wrong
// offset is caught.
std::string RecordAt(uint64_t offset) {
  uint64_t h = offset * 0x9E3779B97F4A7C15ull;
  h ^= h >> 29;
  char tail[17];
  std::snprintf(tail, sizeof(tail), "%016llx", static_cast<unsigned long long>(h));
  return "{\"n\":" + std::to_string(offset) + ",\"h\":\"" + tail + "\"}";
}

class StreamReplicationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fleet_ = std::make_unique<Fleet>(dir_.path());
    fleet_->StartHub();
    fleet_->CreateTenant();
    hub_port_ = fleet_->hub_port();
  }

  // The agent with the stream "events" (`stream`: its settings) and `extra`
  // top-level YAML (datasets, policies), its hub reached at `link_port`
  // (the hub's, or a relay's), enrolled.
  void ConfigureAgent(uint16_t link_port, const std::string& extra = "",
                      const std::string& stream = "fsync: batch, segmentSize: 1MiB") {
    fleet_->ConfigureAgent("streams:\n  - {name: events, " + stream + "}\n" + extra, link_port);
  }
  void StartAgent() {
    fleet_->StartAgent();
    agent_port_ = fleet_->agent_port();
  }
  HttpResult HubApi(const std::string& method, const std::string& target,
                    const std::string& body = "") {
    return fleet_->HubApi(method, target, body);
  }

  // Appends records [first, first + n) of RecordAt; returns the HTTP result.
  HttpResult AppendRange(uint64_t first, uint64_t n) {
    std::string body;
    for (uint64_t i = first; i < first + n; ++i) body += RecordAt(i) + "\n";
    return fleet_->AgentApi("POST", "/v1/streams/events/records", body, "application/x-ndjson");
  }

  // The hub's next offset of cam-1/events (0 when it has none yet).
  uint64_t HubNext() {
    HttpResult r = HubApi("GET", "/v1/tenants/edge/streams?agent=cam-1");
    EXPECT_EQ(r.status, 200) << r.body;
    const json::value v = Parse(r.body);
    const json::value* streams = v.is_object() ? v.as_object().if_contains("streams") : nullptr;
    if (r.status != 200 || streams == nullptr || !streams->is_array()) return 0;
    for (const json::value& s : streams->as_array()) {
      if (s.at("stream").as_string() == "events") return s.at("next_offset").to_number<uint64_t>();
    }
    return 0;
  }
  // Polls the hub (a separate process) until it holds `next` records.
  void WaitForHub(uint64_t next, seconds timeout = seconds(120)) {
    uint64_t have = 0;
    Fleet::WaitUntil([&] { return (have = HubNext()) >= next; }, timeout);
    ASSERT_EQ(have, next) << "the hub did not receive every record\n" << fleet_->Logs();
  }

  // `ferryctl stream read cam-1/events -o json` from the hub.
  CommandResult ReadFromHub(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"stream",         "read", "cam-1/events", "--keyset",
                                     fleet_->keyset(), "-o",   "json"};
    args.insert(args.end(), extra.begin(), extra.end());
    return fleet_->Ctl(args);
  }

  // Checks that `out` (JSON lines) holds exactly offsets [first, end) of
  // RecordAt, in order.
  static void ExpectRecords(const std::string& out, uint64_t first, uint64_t end) {
    std::istringstream in(out);
    std::string line;
    uint64_t want = first;
    while (std::getline(in, line)) {
      const json::value v = Parse(line);
      ASSERT_EQ(v.at("offset").to_number<uint64_t>(), want) << line;
      ASSERT_EQ(v.at("text").as_string(), RecordAt(want)) << line;
      ++want;
    }
    EXPECT_EQ(want, end) << "records end at " << want;
  }

  TempDir dir_;
  std::unique_ptr<Fleet> fleet_;
  uint16_t hub_port_ = 0, agent_port_ = 0;
};

TEST_F(StreamReplicationTest, RecordsReachTheHubAndReadBackThroughFerryctl) {
  ConfigureAgent(hub_port_);
  StartAgent();
  HttpResult a = AppendRange(0, 500);
  ASSERT_EQ(a.status, 200) << a.body;
  ASSERT_EQ(AppendRange(500, 1).status, 200);
  WaitForHub(501);
  CommandResult all = ReadFromHub();
  ASSERT_EQ(all.exit_code, 0) << all.err;
  ExpectRecords(all.out, 0, 501);
  // A window in the middle, cut at a batch boundary or not.
  CommandResult part = ReadFromHub({"--from", "123", "--end", "500"});
  ASSERT_EQ(part.exit_code, 0) << part.err;
  ExpectRecords(part.out, 123, 500);
  CommandResult max = ReadFromHub({"--from", "499", "--max", "1"});
  ASSERT_EQ(max.exit_code, 0) << max.err;
  ExpectRecords(max.out, 499, 500);
  // The hub stores ciphertext: no record appears in its files.
  const std::string on_disk = ToString(ReadFileOrDie(
      fleet_->hub_data() + "/tenants/edge/streams/cam-1/events/00000000000000000000.seg"));
  EXPECT_GT(on_disk.size(), 500u);
  EXPECT_EQ(on_disk.find(RecordAt(7)), std::string::npos);
  // The agent's status shows what the hub acknowledged.
  const json::value status = Parse(HttpRequest(agent_port_, "GET", "/v1/status").body);
  EXPECT_EQ(status.at("streams").as_array()[0].at("acked").at("hub-a").to_number<uint64_t>(), 501u);
}

TEST_F(StreamReplicationTest, AMillionRecordsArriveExactlyOnceThroughThreeLinkCuts) {
  CuttingRelay relay(hub_port_);
  relay.SetCutAfterBytes(3u << 20);  // each session dies after 3 MiB towards the hub
  ConfigureAgent(relay.port());
  StartAgent();
  constexpr uint64_t kRecords = 1'000'000;
  constexpr uint64_t kBatch = 2000;
  std::atomic<uint64_t> appended{0};
  std::thread producer([&] {
    for (uint64_t at = 0; at < kRecords; at += kBatch) {
      HttpResult r = AppendRange(at, kBatch);
      ASSERT_EQ(r.status, 200) << r.body;
      appended = at + kBatch;
    }
  });
  // Three cuts while records flow, then a link that holds.
  const auto deadline = std::chrono::steady_clock::now() + seconds(240);
  while (relay.cuts() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  relay.SetCutAfterBytes(0);
  producer.join();
  ASSERT_GE(relay.cuts(), 3) << "the link was not cut three times";
  ASSERT_EQ(appended.load(), kRecords);
  WaitForHub(kRecords, seconds(240));
  CommandResult all = ReadFromHub();
  ASSERT_EQ(all.exit_code, 0) << all.err;
  ExpectRecords(all.out, 0, kRecords);
}

TEST_F(StreamReplicationTest, EveryAnsweredAppendReachesTheHubAfterTheAgentIsKilled) {
  ConfigureAgent(hub_port_);
  StartAgent();
  std::atomic<uint64_t> answered{0};
  std::atomic<bool> stop{false}, failed{false};
  std::thread producer([&] {
    for (uint64_t at = 0; !stop.load(); at += 100) {
      if (AppendRange(at, 100).status != 200) {  // the agent died under us
        failed = true;
        break;
      }
      answered = at + 100;
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  while (answered.load() < 20'000 && !failed.load() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_GE(answered.load(), 20'000u) << fleet_->Logs();
  fleet_->StopAgent(SIGKILL);
  stop = true;
  producer.join();
  const uint64_t promised = answered.load();
  StartAgent();
  // What the restarted agent holds is at least every answered append, and
  // the hub gets all of it.
  const json::value status = Parse(HttpRequest(agent_port_, "GET", "/v1/status").body);
  const uint64_t end = status.at("streams").as_array()[0].at("end_offset").to_number<uint64_t>();
  ASSERT_GE(end, promised);
  WaitForHub(end);
  CommandResult all = ReadFromHub();
  ASSERT_EQ(all.exit_code, 0) << all.err;
  ExpectRecords(all.out, 0, end);
}

// The shipper reconnects on the agent's replication.backoffInitial/backoffMax
// (200 ms / 1 s in the test fleet), like snapshot delivery: after an outage
// long enough to fail many times over, records still follow a hub that comes
// back within about one maximum step. (It used to wait up to 30 s whatever
// the config said.)
TEST_F(StreamReplicationTest, AfterAHubOutageRecordsShipWithinTheConfiguredBackoff) {
  ConfigureAgent(hub_port_);
  StartAgent();
  ASSERT_EQ(AppendRange(0, 10).status, 200);
  WaitForHub(10);
  fleet_->StopHub(SIGKILL);
  ASSERT_EQ(AppendRange(10, 10).status, 200);  // answered by the agent alone
  auto failed_sessions = [&]() -> uint64_t {
    const json::value s = fleet_->AgentStatus();
    if (!s.is_object() || !s.as_object().contains("stream_shipping")) return 0;
    return s.at("stream_shipping").at(0).at("failed_sessions").to_number<uint64_t>();
  };
  // Eight failures in a row: with a 1 s cap they take about 5 s; an
  // uncapped doubling from 200 ms would now be waiting 25-51 s.
  ASSERT_TRUE(Fleet::WaitUntil([&] { return failed_sessions() >= 8; }, seconds(60)))
      << "failed sessions: " << failed_sessions() << "\n"
      << fleet_->Logs();
  fleet_->StartHub();
  const auto back = std::chrono::steady_clock::now();
  WaitForHub(20, seconds(60));
  const auto took =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - back);
  // One wait of at most backoffMax (1 s), a connect and a batch: 10 s is
  // slack for a busy machine, not a performance figure.
  EXPECT_LT(took.count(), 10'000) << fleet_->Logs();
  CommandResult all = ReadFromHub();
  ASSERT_EQ(all.exit_code, 0) << all.err;
  ExpectRecords(all.out, 0, 20);
}

// A policy over a volume and a stream while both change: the stream's
// snapshot records the cut, and its restore from the hub ends exactly there.
TEST_F(StreamReplicationTest, ASnapshotOfAStreamAndAVolumeRestoresTheStreamUpToItsCut) {
  const std::string volume = dir_.Sub("volume");
  MakeDirsOrDie(volume);
  ConfigureAgent(hub_port_,
                 "datasets:\n  - {name: vol, path: " + volume +
                     "}\npolicies:\n"
                     "  - {apiVersion: ferry/v1, kind: MirrorPolicy, metadata: {name: p},\n"
                     "     spec: {datasets: [vol, events], schedule: {every: 24h},\n"
                     "            targets: [{hub: hub-a}]}}\n");
  StartAgent();
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> appended{0};
  std::thread producer([&] {
    for (uint64_t at = 0; !stop.load(); at += 50) {
      ASSERT_EQ(AppendRange(at, 50).status, 200);
      appended = at + 50;
    }
  });
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      WriteFileOrDie(volume + "/f" + std::to_string(i % 20), SeededBytes(i, 64 << 10));
    }
  });
  while (appended.load() < 5000) std::this_thread::sleep_for(milliseconds(5));
  HttpResult run = HttpRequest(agent_port_, "POST", "/v1/snapshots", R"({"policy":"p"})", "",
                               "application/json");
  const uint64_t appended_after_run = appended.load();
  while (appended.load() < appended_after_run + 2000) std::this_thread::sleep_for(milliseconds(5));
  stop = true;
  producer.join();
  writer.join();
  ASSERT_EQ(run.status, 200) << run.body;
  std::string stream_snapshot;
  const json::value runs = Parse(run.body);
  for (const json::value& s : runs.at("runs").at(0).at("snapshots").as_array()) {
    if (s.at("dataset").as_string() == "events") stream_snapshot = s.at("snapshot").as_string();
  }
  ASSERT_FALSE(stream_snapshot.empty()) << run.body;

  // The hub lists both snapshots of the cut; the stream's names its offsets.
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  HttpResult manifest;
  while (std::chrono::steady_clock::now() < deadline) {
    manifest = HubApi("GET", "/v1/tenants/edge/snapshots/" + stream_snapshot + "/manifest");
    if (manifest.status == 200) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_EQ(manifest.status, 200) << manifest.body;
  HttpResult shown = HubApi("GET", "/v1/tenants/edge/snapshots/" + stream_snapshot);
  ASSERT_EQ(shown.status, 200) << shown.body;
  const json::value cut = Parse(shown.body).at("manifest").at("datasets").at(0).at("stream");
  const uint64_t cut_end = cut.at("end_offset").to_number<uint64_t>();
  EXPECT_GE(cut_end, 5000u);
  EXPECT_LE(cut_end, appended_after_run);
  EXPECT_EQ(cut.at("start_offset").to_number<uint64_t>(), 0u);
  WaitForHub(appended.load());  // the stream went on past the cut

  const std::string to = dir_.Sub("restored");
  CommandResult r =
      fleet_->Ctl({"restore", "--keyset", fleet_->keyset(), stream_snapshot, "--to", to});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectRecords(ToString(ReadFileOrDie(to + "/events.jsonl")), 0, cut_end);
  // Without the hub the cut cannot be restored: its records are not in a store.
  CommandResult local = fleet_->Ctl(
      {"restore", "--keyset", fleet_->keyset(), "--store",
       fleet_->hub_data() + "/tenants/edge/store", stream_snapshot, "--to", dir_.Sub("nowhere")},
      false);
  EXPECT_NE(local.exit_code, 0);
  EXPECT_NE(local.err.find("its records are at the hub"), std::string::npos) << local.err;
}

// Retention deletes local segments, but only what the hub acknowledged:
// records appended while the link is down all reach the hub once it is up,
// and only then does the agent's log shrink to its retention size.
TEST_F(StreamReplicationTest, RetentionDeletesOnlyWhatEveryHubHolds) {
  CuttingRelay relay(hub_port_);
  relay.SetCutAfterBytes(1);  // the link is down: every session dies at once
  ConfigureAgent(relay.port(), "", "fsync: batch, segmentSize: 64KiB, retention: {size: 128KiB}");
  StartAgent();
  constexpr uint64_t kRecords = 20'000;  // ~0.9 MB: 14 segments
  for (uint64_t at = 0; at < kRecords; at += 1000) ASSERT_EQ(AppendRange(at, 1000).status, 200);
  auto agent_stream = [&] {
    const json::value status = Parse(HttpRequest(agent_port_, "GET", "/v1/status").body);
    return status.at("streams").as_array()[0].as_object();
  };
  // Nothing reached the hub, so nothing may go.
  EXPECT_EQ(agent_stream().at("start_offset").to_number<uint64_t>(), 0u);
  relay.SetCutAfterBytes(0);  // the link is back (new sessions are not cut)
  WaitForHub(kRecords);
  CommandResult all = ReadFromHub();
  ASSERT_EQ(all.exit_code, 0) << all.err;
  ExpectRecords(all.out, 0, kRecords);
  // Once the hub acknowledged them, retention trims the agent's log to about
  // its size (whole segments; the newest are kept). The agent applies it on
  // the acks (a separate process: poll its status).
  const auto deadline = std::chrono::steady_clock::now() + seconds(30);
  uint64_t start = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    start = agent_stream().at("start_offset").to_number<uint64_t>();
    // ~48 bytes a record: 128 KiB of segments plus the active one hold
    // fewer than 5,000 records.
    if (start > kRecords - 5000) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_GT(start, kRecords - 5000) << "retention did not trim to about its size";
  EXPECT_LT(start, kRecords);
  EXPECT_EQ(agent_stream().at("end_offset").to_number<uint64_t>(), kRecords);
}

TEST_F(StreamReplicationTest, TheHubsStreamApiRefusesBadRequests) {
  ConfigureAgent(hub_port_);
  StartAgent();
  ASSERT_EQ(AppendRange(0, 10).status, 200);
  WaitForHub(10);
  const auto get = [&](const std::string& target, const std::string& token) {
    return HttpRequest(hub_port_, "GET", target, "", token, "application/json");
  };
  const std::string base = "/v1/streams/edge/cam-1/events";
  EXPECT_EQ(get(base + "?from=0", fleet_->admin_token()).status, 200);
  EXPECT_EQ(get(base + "?from=10", fleet_->admin_token()).body, "");  // the end: nothing yet
  for (const std::string q : {"?from=-1", "?from=11", "?from=18446744073709551616", "?from=abc",
                              "?max_bytes=0", "?max_bytes=999999999", "?x=1"}) {
    HttpResult r = get(base + q, fleet_->admin_token());
    EXPECT_EQ(r.status, 400) << q << ": " << r.body;
    EXPECT_NE(r.body.find("\"error\""), std::string::npos) << q;
  }
  EXPECT_EQ(get("/v1/streams/edge/cam-1/nope?from=0", fleet_->admin_token()).status, 404);
  EXPECT_EQ(get("/v1/streams/edge/cam-2/events", fleet_->admin_token()).status, 404);
  EXPECT_EQ(get("/v1/streams/edge/CAM/events", fleet_->admin_token()).status, 400);
  EXPECT_EQ(get(base, "").status, 401);
  // A token of another tenant is refused, whether or not the stream exists.
  ASSERT_EQ(HubApi("POST", "/v1/tenants", R"({"name":"other"})").status, 201);
  HttpResult token = HubApi("POST", "/v1/tenants/other/tokens", R"({"role":"reader"})");
  ASSERT_EQ(token.status, 201) << token.body;
  const std::string other = std::string(Parse(token.body).at("token").as_string());
  EXPECT_EQ(get(base, other).status, 403);
  EXPECT_EQ(get("/v1/streams/other/cam-1/events", other).status, 404);
  // The hub keeps serving.
  EXPECT_EQ(get(base + "?from=5", fleet_->admin_token()).status, 200);
}

}  // namespace
}  // namespace ferry::testing
