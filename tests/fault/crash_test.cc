// Crash suite (docs/reliability.md, "Crashes"): the agent or the hub is
// killed with SIGKILL at a seeded random moment while the agent captures,
// uploads and commits snapshots of a changing volume (with a stream's cut)
// and producers append to the stream; then restarted. After each crash:
//  - every snapshot the agent recorded as committed is listed at the hub,
//    and restores from it byte for byte as the volume was when it was taken;
//  - every answered stream append is at the hub, at its offset, with its
//    bytes, with no gap (what the hub serves is checked against the seeded
//    workload, record by record);
// and at the end `ferryctl verify` passes on the hub's store and on the
// agent's outbox, and the newest stream cut restores exactly to its end.
//
// Quick mode (CI): 20 crash points. FERRY_FAULT_LONG=1: 200.
// FERRY_CRASH_SEED=N replays a run (the seed is printed).
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/crash_site.h"
#include "core/sqlite.h"
#include "tests/testing/fleet.h"

namespace ferry::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The record at `offset` of the seeded workload (a JSON line).
std::string RecordAt(uint64_t seed, uint64_t offset) {
  uint64_t h = (offset + 1) * 0x9E3779B97F4A7C15ull ^ seed;
  h ^= h >> 31;
  return "{\"o\":" + std::to_string(offset) + ",\"h\":" + std::to_string(h % 1000000007) + "}";
}

class CrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* s = std::getenv("FERRY_CRASH_SEED");
    seed_ = s != nullptr ? std::strtoull(s, nullptr, 10) : std::random_device{}();
    std::printf("crash suite seed: %llu (FERRY_CRASH_SEED=%llu replays it)\n",
                static_cast<unsigned long long>(seed_), static_cast<unsigned long long>(seed_));
    const char* long_mode = std::getenv("FERRY_FAULT_LONG");
    long_ = long_mode != nullptr && std::string(long_mode) == "1";
    points_ = long_ ? 200 : 20;
    rng_.seed(seed_);
    fleet_ = std::make_unique<Fleet>(dir_.path());
    volume_ = dir_.Sub("volume");
    MakeDirsOrDie(volume_);
  }

  // Changes the volume from the seed: rewrites, grows or deletes a few of
  // its files. Small files keep each restore quick.
  void MutateVolume() {
    for (int k = 0; k < 3; ++k) {
      const std::string f = volume_ + "/f" + std::to_string(rng_() % 12);
      if (rng_() % 5 == 0) {
        std::remove(f.c_str());
      } else {
        WriteFileOrDie(f, SeededBytes(rng_(), 1000 + rng_() % (96 << 10)));
      }
    }
  }

  // Restores `id` from the hub and compares it with `expected`.
  void ExpectRestores(const std::string& id, const std::string& expected) {
    const std::string to = dir_.Sub("restore-" + id.substr(0, 12));
    CommandResult r = fleet_->Ctl({"restore", "--keyset", fleet_->keyset(), id, "--to", to});
    ASSERT_EQ(r.exit_code, 0) << "restore of " << id << ": " << r.err << fleet_->Logs();
    const std::string diff = DiffTrees(expected, to, {.mtimes = true});
    EXPECT_EQ(diff, "") << "snapshot " << id << ", expected " << expected
                        << (diff.empty() ? "" : fleet_->Logs());
    RemoveTree(to);
  }

  // Snapshots the hub lists for cam-1: id -> dataset.
  std::map<std::string, std::string> HubSnapshots() {
    std::map<std::string, std::string> out;
    HttpResult r = fleet_->HubApi("GET", "/v1/tenants/edge/snapshots?agent=cam-1&limit=1000");
    if (r.status != 200) return out;
    const json::value v = ParseJson(r.body);
    for (const json::value& s : v.at("snapshots").as_array()) {
      out[std::string(s.at("id").as_string())] = std::string(s.at("datasets").at(0).as_string());
    }
    return out;
  }

  // The agent's committed deliveries: snapshot id -> dataset.
  std::map<std::string, std::string> AgentCommitted(const json::value& status) {
    std::map<std::string, std::string> out;
    if (!status.is_object()) return out;
    for (const json::value& d : status.at("deliveries").as_array()) {
      if (d.at("state").as_string() == "committed") {
        out[std::string(d.at("snapshot").as_string())] = std::string(d.at("dataset").as_string());
      }
    }
    return out;
  }

  uint64_t HubStreamNext() {
    HttpResult r = fleet_->HubApi("GET", "/v1/tenants/edge/streams?agent=cam-1");
    if (r.status != 200) return 0;
    const json::value v = ParseJson(r.body);
    for (const json::value& s : v.at("streams").as_array()) {
      if (s.at("stream").as_string() == "events") return s.at("next_offset").to_number<uint64_t>();
    }
    return 0;
  }

  // `ferryctl stream read` from `from`: every line must be the workload's
  // record at its offset, densely, up to (at least) `end`.
  void ExpectStreamAtHub(uint64_t from, uint64_t end) {
    CommandResult r =
        fleet_->Ctl({"stream", "read", "cam-1/events", "--keyset", fleet_->keyset(), "--from",
                     std::to_string(from), "--end", std::to_string(end), "-o", "json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::istringstream in(r.out);
    std::string line;
    uint64_t want = from;
    while (std::getline(in, line)) {
      const json::value v = ParseJson(line);
      ASSERT_EQ(v.at("offset").to_number<uint64_t>(), want) << line;
      ASSERT_EQ(v.at("text").as_string(), RecordAt(seed_, want)) << line;
      ++want;
    }
    EXPECT_EQ(want, end) << "the hub's stream ends at " << want;
  }

  void StartFleet() {
    fleet_->StartHub();
    fleet_->CreateTenant();
    fleet_->ConfigureAgent(
        "datasets:\n  - {name: vol, path: " + volume_ +
        "}\nstreams:\n  - {name: events, fsync: batch, segmentSize: 64KiB}\n"
        "policies:\n"
        "  - {apiVersion: ferry/v1, kind: MirrorPolicy, metadata: {name: p},\n"
        "     spec: {datasets: [events, vol], schedule: {every: 24h}, targets: [{hub: hub-a}]}}\n");
    fleet_->StartAgent();
    // A new policy runs at once: let that run finish and deliver, and check
    // its snapshots against the volume as it was (empty), so that no crash
    // point takes them for its own.
    const std::string initial = dir_.Sub("expected-initial");
    ASSERT_EQ(RunCommand({"/bin/cp", "-a", volume_, initial}).exit_code, 0);
    std::map<std::string, std::string> committed;
    ASSERT_TRUE(Fleet::WaitUntil(
        [&] {
          const json::value status = fleet_->AgentStatus();
          committed = AgentCommitted(status);
          return status.is_object() && !Pending(status) && status.at("running").as_string() == "" &&
                 status.at("policies").at(0).at("runs").to_number<uint64_t>() >= 1;
        },
        seconds(60)))
        << fleet_->Logs();
    for (const auto& [id, dataset] : committed) {
      if (dataset == "vol") ExpectRestores(id, initial);
      verified_.insert(id);
    }
  }

  static bool Pending(const json::value& status) {
    bool pending = false;
    for (const json::value& p : status.at("pending").as_array()) {
      pending = pending || p.at("snapshots").to_number<uint64_t>() > 0;
    }
    return pending;
  }

  enum class Victim { kAgent, kHub };

  // One crash point: the volume changes, a producer appends to the stream
  // and a policy run captures and replicates, while `crash` brings one of
  // the two processes down (and says which); then it is restarted, the work
  // converges, and everything acknowledged is checked.
  void CrashPoint(int point, const std::function<Victim()>& crash) {
    MutateVolume();
    const std::string expected = dir_.Sub("expected-" + std::to_string(point));
    ASSERT_EQ(RunCommand({"/bin/cp", "-a", volume_, expected}).exit_code, 0);

    // The workload: a producer appending batches, and one policy run. An
    // append whose answer a crash cut off may or may not have been stored:
    // the producer goes on from the agent's end (those records, if there,
    // are the workload's at their offsets: one producer appends in order).
    const json::value before = fleet_->AgentStatus();
    ASSERT_TRUE(before.is_object()) << fleet_->Logs();
    const uint64_t agent_end = before.at("streams").at(0).at("end_offset").to_number<uint64_t>();
    ASSERT_GE(agent_end, answered_end_) << "an answered append was lost by the agent";
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> answered{agent_end};
    std::thread producer([&, batch_rng = std::mt19937_64(rng_())]() mutable {
      uint64_t at = answered.load();
      while (!stop.load()) {
        const uint64_t n = 1 + batch_rng() % 200;
        std::string body;
        for (uint64_t i = at; i < at + n; ++i) body += RecordAt(seed_, i) + "\n";
        HttpResult r =
            fleet_->AgentApi("POST", "/v1/streams/events/records", body, "application/x-ndjson");
        if (r.status != 200) break;  // the agent died under us
        const json::value v = ParseJson(r.body);
        ASSERT_EQ(v.at("first").to_number<uint64_t>(), at) << "an answered offset moved";
        at += n;
        answered = at;
      }
    });
    std::thread run([&] {
      fleet_->AgentApi("POST", "/v1/snapshots", R"({"policy":"p"})");  // may die with the agent
    });

    const Victim victim = crash();
    stop = true;
    producer.join();
    run.join();
    if (victim == Victim::kAgent) {
      ++agent_kills_;
      fleet_->StartAgent();
    } else {
      ++hub_kills_;
      fleet_->StartHub();
    }
    answered_end_ = answered.load();

    // Converge: a run whose answer was lost to the crash is run again (runs
    // are idempotent per cut), then everything reaches the hub.
    HttpResult again = fleet_->AgentApi("POST", "/v1/snapshots", R"({"policy":"p"})");
    ASSERT_EQ(again.status, 200) << again.body << fleet_->Logs();
    std::map<std::string, std::string> committed;
    ASSERT_TRUE(Fleet::WaitUntil(
        [&] {
          const json::value status = fleet_->AgentStatus();
          committed = AgentCommitted(status);
          return status.is_object() && !Pending(status) && HubStreamNext() >= answered_end_;
        },
        seconds(90)))
        << "nothing pending and every answered append at the hub" << fleet_->Logs();

    // Every snapshot the agent saw committed is at the hub, and restores as
    // the volume was.
    const std::map<std::string, std::string> at_hub = HubSnapshots();
    for (const auto& [id, dataset] : committed) {
      ASSERT_TRUE(at_hub.count(id)) << "committed snapshot " << id << " is not at the hub";
      if (dataset != "vol" || verified_.count(id)) continue;
      if (!expected_of_.count(id)) expected_of_[id] = expected;
      ExpectRestores(id, expected_of_[id]);
      verified_.insert(id);
    }
    // Every answered append, in order, no gap (checked on the new part).
    ExpectStreamAtHub(answered_end_ > 500 ? answered_end_ - 500 : 0, answered_end_);
  }

  // After the last point: the whole stream, and both stores verify.
  void FinalChecks() {
    ExpectStreamAtHub(0, answered_end_);
    // The newest snapshot of each dataset at the hub, and the hub store's
    // newest; the outbox's (its chunks may have been reclaimed once the hub
    // had them: verify knows).
    for (const std::string dataset : {"vol", "events"}) {
      CommandResult v = fleet_->Ctl({"verify", "--keyset", fleet_->keyset(), "latest", "--agent",
                                     "cam-1", "--dataset", dataset});
      EXPECT_EQ(v.exit_code, 0) << "verify of the latest " << dataset << " at the hub: " << v.err;
    }
    fleet_->StopAgent(SIGTERM);
    fleet_->StopHub(SIGTERM);
    CommandResult hub_store =
        fleet_->Ctl({"verify", "--store", fleet_->hub_data() + "/tenants/edge/store", "--keyset",
                     fleet_->keyset(), "latest"},
                    false);
    EXPECT_EQ(hub_store.exit_code, 0) << hub_store.err;
    // Every SQLite file of both daemons passes integrity_check.
    EXPECT_EQ(fleet_->ExpectDatabasesIntact(), 4);
    // The outbox keeps its snapshots' manifests but reclaims the packs of
    // those every target has.
    const Fleet::OutboxCheck outbox = fleet_->VerifyOutbox();
    std::printf(
        "crash suite: %zu snapshots restored, %llu stream records; verify passed at the hub "
        "(latest of each dataset, the store's latest); integrity_check clean on 4 SQLite files; "
        "outbox: %d snapshots intact, %d delivered and reclaimed\n",
        verified_.size(), static_cast<unsigned long long>(answered_end_), outbox.intact,
        outbox.reclaimed);
  }

  TempDir dir_;
  uint64_t seed_ = 0;
  int points_ = 20;
  std::mt19937_64 rng_;
  std::unique_ptr<Fleet> fleet_;
  std::string volume_;
  bool long_ = false;
  std::map<std::string, std::string> expected_of_;  // snapshot id -> copy of the volume
  std::set<std::string> verified_;
  uint64_t answered_end_ = 0;  // every offset below it was answered to a producer
  int agent_kills_ = 0, hub_kills_ = 0;
};

TEST_F(CrashTest, KillDashNineAtRandomPointsLosesNothingAcknowledged) {
  StartFleet();
  for (int point = 0; point < points_; ++point) {
    SCOPED_TRACE("crash point " + std::to_string(point) + ", seed " + std::to_string(seed_));
    CrashPoint(point, [&] {
      // The crash, at a seeded moment of that work.
      const bool kill_agent = rng_() % 2 == 0;
      std::this_thread::sleep_for(milliseconds(rng_() % 1500));  // the seeded crash point
      if (kill_agent) {
        fleet_->StopAgent(SIGKILL);
        return Victim::kAgent;
      }
      fleet_->StopHub(SIGKILL);
      return Victim::kHub;
    });
    if (HasFatalFailure()) return;
  }
  std::printf("crash suite: %d crash points (%d agent, %d hub kills)\n", points_, agent_kills_,
              hub_kills_);
  FinalChecks();
}

// The named crash sites (core/crash_site.h) of the real daemons: each process
// is started with FERRY_CRASH_AT=<site>[:<n>] and must stop there by itself
// (exit 86) while it works — proving the site is reached — and the work then
// converges with nothing acknowledged lost. Every site each process passes is
// exercised (sqlite.before_commit is left to the power-loss suite: a
// daemon's first commits come at startup); the n-th pass is 1 in quick
// mode, 1 to 3 (seeded) in long mode.
TEST_F(CrashTest, CrashAtEveryNamedSiteOfTheDaemonsLosesNothingAcknowledged) {
  if (!CrashSitesCompiledIn()) GTEST_SKIP() << "built with FERRY_CRASH_SITES=OFF";
  const std::vector<std::string> hub_sites = {
      "store.pack.before_rename",     "store.pack.before_index",
      "store.pack.after_index",       "store.commit.before_refs_rename",
      "store.commit.before_manifest", "store.commit.before_row",
      "store.commit.after_row",       "receiver.before_upload_ack",
      "receiver.before_commit_ack",   "receiver.before_stream_ack",
      "hub.catalog.before_record",    "hub.catalog.after_record",
      "hub.streams.before_append",    "hub.streams.after_sync"};
  const std::vector<std::string> agent_sites = {
      "store.pack.before_rename",     "store.pack.before_index",
      "store.pack.after_index",       "store.commit.before_refs_rename",
      "store.commit.before_manifest", "store.commit.before_row",
      "store.commit.after_row",       "store.reclaim.before_mark",
      "store.reclaim.before_unlink",  "store.reclaim.after_unlink",
      "agent.delivery.before_record", "agent.delivery.after_record",
      "agent.reclaim.before",         "agent.stream.before_answer"};
  // Every site but sqlite.before_commit is in one list or both.
  for (std::string_view site : kCrashSites) {
    const std::string s(site);
    if (s == "sqlite.before_commit") continue;
    EXPECT_TRUE(std::count(hub_sites.begin(), hub_sites.end(), s) +
                    std::count(agent_sites.begin(), agent_sites.end(), s) >
                0)
        << "crash site " << s << " is exercised by no daemon";
  }
  StartFleet();
  std::vector<std::pair<Victim, std::string>> plan;
  for (const auto& s : hub_sites) plan.push_back({Victim::kHub, s});
  for (const auto& s : agent_sites) plan.push_back({Victim::kAgent, s});
  std::shuffle(plan.begin(), plan.end(), rng_);
  int point = 0;
  for (const auto& [victim, site] : plan) {
    const int nth = long_ ? 1 + static_cast<int>(rng_() % 3) : 1;
    const std::string armed = site + ":" + std::to_string(nth);
    SCOPED_TRACE(std::string(victim == Victim::kHub ? "hub" : "agent") + " at " + armed +
                 ", seed " + std::to_string(seed_));
    // Restart the process armed (the environment is inherited).
    ::setenv("FERRY_CRASH_AT", armed.c_str(), 1);
    if (victim == Victim::kHub) {
      fleet_->StopHub(SIGTERM);
      fleet_->StartHub();
    } else {
      fleet_->StopAgent(SIGTERM);
      fleet_->StartAgent();
    }
    ::unsetenv("FERRY_CRASH_AT");
    CrashPoint(point++, [&, victim = victim, site = site] {
      ChildProcess* p = victim == Victim::kHub ? fleet_->hub() : fleet_->agent();
      const bool reached = Fleet::WaitUntil([&] { return !p->running(); }, seconds(60));
      EXPECT_TRUE(reached) << "crash site " << site << " not reached within 60 s";
      if (victim == Victim::kHub) {
        const int code = fleet_->hub()->Stop(SIGKILL);
        EXPECT_EQ(code, kCrashSiteExitCode) << fleet_->hub()->Log();
        fleet_->StopHub(SIGKILL);
      } else {
        const int code = fleet_->agent()->Stop(SIGKILL);
        EXPECT_EQ(code, kCrashSiteExitCode) << fleet_->agent()->Log();
        fleet_->StopAgent(SIGKILL);
      }
      return victim;
    });
    if (HasFatalFailure()) return;
  }
  std::printf("crash suite: %zu named crash sites (%zu hub, %zu agent), each reached\n",
              plan.size(), hub_sites.size(), agent_sites.size());
  FinalChecks();
}

}  // namespace
}  // namespace ferry::testing
