// ferry-hub as a real process on an ephemeral loopback port: agents (real
// ferry-link-peer processes) enroll with join tokens made over the REST API,
// push snapshots over the link, and the tests read everything back over
// REST — listing, manifests, reference sets, sealed chunks and data keys,
// decrypted here with the tenant's keyset. Also: kill -9 in the middle of
// uploads, tenant isolation, revocation, graceful SIGTERM, hostile HTTP.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/json.hpp>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/env.h"
#include "snapshot/keyset.h"
#include "snapshot/ref_set.h"
#include "snapshot/sealed_chunk.h"
#include "tests/testing/http_client.h"
#include "tests/testing/process.h"
#include "tests/testing/test_util.h"

namespace ferry::testing {
namespace {

namespace json = boost::json;

// "label: value" from init's output.
json::value ParseJson(const HttpResult& r) {
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  EXPECT_FALSE(ec) << "not JSON (HTTP " << r.status << "): " << r.body.substr(0, 300);
  return ec ? json::value() : v;
}

std::string Str(const json::value& v, const char* key) {
  if (!v.is_object()) return "";
  const json::value* f = v.as_object().if_contains(key);
  return f && f->is_string() ? std::string(f->as_string()) : "";
}

// The list a listing endpoint returns: a bare array, or the first array
// member of an object ({"snapshots": [...]}).
json::array ListOf(const json::value& v) {
  if (v.is_array()) return v.as_array();
  if (v.is_object()) {
    for (const auto& kv : v.as_object()) {
      if (kv.value().is_array()) return kv.value().as_array();
    }
  }
  return {};
}

class HubProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hub_bin_ = BinDir() + "/ferry-hub";
    peer_ = BinDir() + "/ferry-link-peer";
    ctl_ = BinDir() + "/ferryctl";
    data_ = dir_.Sub("hub-data");
    const HubInit init = InitHub(data_);
    fingerprint_ = init.fingerprint;
    admin_ = init.admin_token;
    ASSERT_EQ(fingerprint_.rfind("fry1:", 0), 0u);
    ASSERT_FALSE(admin_.empty());
  }

  void StartHub() {
    const std::string port_file = dir_.Sub("hub.port");
    std::remove(port_file.c_str());
    hub_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{hub_bin_, "run", "--data-dir", data_, "--listen", "127.0.0.1:0",
                                 "--port-file", port_file, "--log-format", "text",
                                 "--shutdown-grace", "10s"},
        dir_.Sub("hub.log"));
    port_ = static_cast<uint16_t>(std::stoi(WaitForFile(port_file, hub_.get())));
  }
  void StopHub() { ASSERT_EQ(hub_->Stop(SIGTERM), 0) << hub_->Log(); }
  std::string Url() const { return "ws://127.0.0.1:" + std::to_string(port_); }

  HttpResult Api(const std::string& method, const std::string& target, const std::string& body = "",
                 const std::string& token = "") {
    return HttpRequest(port_, method, target, body, token.empty() ? admin_ : token);
  }

  void CreateTenant(const std::string& name) {
    HttpResult r = Api("POST", "/v1/tenants", "{\"name\":\"" + name + "\"}");
    ASSERT_EQ(r.status, 201) << r.body;
  }
  std::string JoinToken(const std::string& tenant) {
    HttpResult r = Api("POST", "/v1/tenants/" + tenant + "/enrollment-tokens", "{}");
    EXPECT_EQ(r.status, 201) << r.body;
    json::value v = ParseJson(r);
    EXPECT_EQ(Str(v, "hub_fingerprint"), fingerprint_) << r.body;
    return Str(v, "token");
  }

  // A tenant keyset (fast Argon2) and its agent key files.
  std::string TenantKeyset(const std::string& tenant) {
    const std::string path = dir_.Sub(tenant + ".keyset");
    if (Result<bool> exists = Env::Default()->FileExists(path); !exists.ok() || !*exists) {
      CommandResult r = RunCommand(
          {ctl_, "keys", "init", "--out", path, "--argon2-memory", "8", "--argon2-ops", "1"},
          {"FERRY_PASSPHRASE=pw"});
      EXPECT_EQ(r.exit_code, 0) << r.err;
    }
    return path;
  }

  struct AgentFiles {
    std::string tenant, name, key, keys, store, snapshot, tree;
  };
  // Key files, a small tree and its snapshot in the agent's own store.
  AgentFiles MakeAgent(const std::string& tenant, const std::string& name, size_t bytes,
                       uint64_t seed) {
    AgentFiles a;
    a.tenant = tenant;
    a.name = name;
    a.key = dir_.Sub(name + ".link.key");
    a.keys = dir_.Sub(name + ".agent.keys");
    a.store = dir_.Sub(name + ".store");
    a.tree = dir_.Sub(name + ".tree");
    EXPECT_EQ(RunCommand(
                  {ctl_, "keys", "export-agent", "--keyset", TenantKeyset(tenant), "--out", a.keys})
                  .exit_code,
              0);
    MakeDirsOrDie(a.tree);
    WriteFileOrDie(a.tree + "/data", SeededBytes(seed, bytes));
    WriteFileOrDie(a.tree + "/text", CompressibleBytes(seed + 1, bytes / 4, 0.5));
    CommandResult snap =
        RunCommand({ctl_, "snapshot", "create", "--store", a.store, "--keyset", a.keys, a.tree});
    EXPECT_EQ(snap.exit_code, 0) << snap.err;
    const std::string out = Trim(snap.out);
    a.snapshot = out.substr(out.rfind('\n') + 1);
    return a;
  }

  std::vector<std::string> EnrollArgs(const AgentFiles& a, const std::string& token) {
    return {peer_,        "enroll",  "--key", a.key,    "--hub", Url(),      "--hub-key",
            fingerprint_, "--token", token,   "--name", a.name,  "--keyset", a.keys};
  }
  std::vector<std::string> PushArgs(const AgentFiles& a) {
    return {peer_, "push",      "--key",      a.key,     "--hub",
            Url(), "--hub-key", fingerprint_, "--store", a.store};
  }

  // Runs one command per agent, all at once; returns their exit codes.
  std::vector<int> RunAll(const std::vector<std::vector<std::string>>& commands,
                          const std::string& tag) {
    std::vector<std::unique_ptr<ChildProcess>> procs;
    for (size_t i = 0; i < commands.size(); ++i) {
      procs.push_back(std::make_unique<ChildProcess>(
          commands[i], dir_.Sub(tag + "-" + std::to_string(i) + ".log")));
    }
    std::vector<int> codes;
    for (auto& p : procs) codes.push_back(p->Wait(std::chrono::seconds(300)));
    return codes;
  }

  // Every chunk of the snapshot's reference set downloads over REST and
  // opens with the tenant keyset to exactly its id.
  void ExpectSnapshotReadable(const std::string& tenant, const std::string& id,
                              const std::string& token = "") {
    auto loaded = snapshot::Keyset::Load(*Env::Default(), TenantKeyset(tenant));
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    std::unique_ptr<snapshot::Keyset> keyset = std::move(*loaded);
    ASSERT_TRUE(keyset->Unlock("pw").ok());
    HttpResult refs = Api("GET", "/v1/tenants/" + tenant + "/snapshots/" + id + "/refs", "", token);
    ASSERT_EQ(refs.status, 200) << refs.body.substr(0, 200);
    auto reader = snapshot::RefSetReader::FromBytes(Bytes(refs.body.begin(), refs.body.end()),
                                                    "refs of " + id);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    snapshot::RefEntry entry;
    size_t chunks = 0;
    std::map<std::string, SecretBytes> keys;
    while ((*reader)->Next(entry)) {
      ++chunks;
      const std::string hex = HexEncode(entry.id);
      HttpResult c = Api("GET", "/v1/tenants/" + tenant + "/chunks/" + hex, "", token);
      ASSERT_EQ(c.status, 200) << "chunk " << hex << ": " << c.body.substr(0, 200);
      const Bytes sealed(c.body.begin(), c.body.end());
      ASSERT_EQ(sealed.size(), entry.sealed_size);
      auto header = snapshot::ParseSealedChunkHeader(sealed);
      ASSERT_TRUE(header.ok()) << header.status().ToString();
      const std::string key_hex = HexEncode(header->key_id);
      if (!keys.count(key_hex)) {
        HttpResult k = Api("GET", "/v1/tenants/" + tenant + "/keys/" + key_hex, "", token);
        ASSERT_EQ(k.status, 200) << k.body.substr(0, 200);
        auto key = keyset->UnwrapDataKey(
            header->key_id,
            ByteView(reinterpret_cast<const uint8_t*>(k.body.data()), k.body.size()));
        ASSERT_TRUE(key.ok()) << key.status().ToString();
        keys.emplace(key_hex, std::move(*key));
      }
      Bytes plain;
      Status opened =
          snapshot::OpenChunk(entry.id, sealed, keys.at(key_hex), keyset->chunk_id_hasher(), plain);
      ASSERT_TRUE(opened.ok()) << "chunk " << hex << ": " << opened.ToString();
    }
    ASSERT_TRUE((*reader)->status().ok());
    EXPECT_GT(chunks, 0u);
  }

  std::vector<std::string> SnapshotIds(const std::string& tenant, const std::string& token = "") {
    HttpResult r = Api("GET", "/v1/tenants/" + tenant + "/snapshots", "", token);
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<std::string> ids;
    for (const auto& s : ListOf(ParseJson(r))) ids.push_back(Str(s, "id"));
    return ids;
  }

  TempDir dir_;
  std::string hub_bin_, peer_, ctl_, data_, fingerprint_, admin_;
  std::unique_ptr<ChildProcess> hub_;
  uint16_t port_ = 0;
};

TEST_F(HubProcessTest, ProbesAnswerAndSigtermStopsCleanly) {
  StartHub();
  HttpResult health = HttpRequest(port_, "GET", "/healthz");
  EXPECT_EQ(health.status, 200) << health.body;
  HttpResult ready = HttpRequest(port_, "GET", "/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
  HttpResult metrics = HttpRequest(port_, "GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("ferry_hub_sessions_open"), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("ferry_hub_commit_seconds_bucket"), std::string::npos);
  // No token: 401.
  EXPECT_EQ(HttpRequest(port_, "GET", "/v1/tenants").status, 401);
  StopHub();
  EXPECT_NE(hub_->Log().find("stopped"), std::string::npos) << hub_->Log();
  // A second hub on the same data dir is refused while the first runs.
  StartHub();
  CommandResult second = RunCommand(
      {hub_bin_, "run", "--data-dir", data_, "--listen", "127.0.0.1:0", "--log-format", "text"}, {},
      "", 30);
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(second.err.find("another ferry-hub is running"), std::string::npos) << second.err;
  StopHub();
}

// 50 agents in 5 tenants enroll, upload and commit at once; every snapshot
// is then listed exactly once in its tenant, and every chunk it references
// downloads and decrypts with the tenant's keyset.
TEST_F(HubProcessTest, FiftyAgentsInFiveTenantsCommitAtOnce) {
  StartHub();
  constexpr int kTenants = 5, kPerTenant = 10;
  std::vector<AgentFiles> agents;
  std::vector<std::vector<std::string>> enrolls, pushes;
  for (int t = 0; t < kTenants; ++t) {
    const std::string tenant = "tenant-" + std::to_string(t);
    CreateTenant(tenant);
    for (int i = 0; i < kPerTenant; ++i) {
      AgentFiles a = MakeAgent(tenant, tenant + "-edge-" + std::to_string(i), 96 << 10,
                               static_cast<uint64_t>(t * 100 + i));
      enrolls.push_back(EnrollArgs(a, JoinToken(tenant)));
      pushes.push_back(PushArgs(a));
      agents.push_back(a);
    }
  }
  for (int code : RunAll(enrolls, "enroll")) ASSERT_EQ(code, 0) << hub_->Log();
  for (int code : RunAll(pushes, "push")) ASSERT_EQ(code, 0) << hub_->Log();

  for (int t = 0; t < kTenants; ++t) {
    const std::string tenant = "tenant-" + std::to_string(t);
    std::vector<std::string> ids = SnapshotIds(tenant);
    std::multiset<std::string> listed(ids.begin(), ids.end());
    for (const AgentFiles& a : agents) {
      if (a.tenant != tenant) {
        EXPECT_EQ(listed.count(a.snapshot), 0u) << "another tenant's snapshot listed";
        continue;
      }
      EXPECT_EQ(listed.count(a.snapshot), 1u) << a.name;
      ExpectSnapshotReadable(tenant, a.snapshot);
    }
    EXPECT_EQ(ids.size(), static_cast<size_t>(kPerTenant));
  }
  // Session counters land when each session ends: wait for all to end.
  HttpResult metrics;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  do {
    metrics = HttpRequest(port_, "GET", "/metrics");
  } while (metrics.body.find("ferry_hub_sessions_open 0\n") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline);
  EXPECT_NE(metrics.body.find("ferry_hub_commits_total 50\n"), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("ferry_hub_sessions_total 100\n"), std::string::npos)
      << metrics.body;  // 50 enrollments + 50 pushes
  EXPECT_GT(MetricValue(metrics.body, "ferry_hub_chunk_bytes_stored_total"), 50.0 * (96 << 10));
  EXPECT_GE(MetricValue(metrics.body, "ferry_hub_chunks_stored_total"), 100.0);
  StopHub();
}

// Hundreds of sessions at once, and stalled peers beside them: 300 agent
// sessions held open (each waiting for a policy change), 20 TCP connections
// that never finish a handshake, and an uploader frozen mid-upload (SIGSTOP).
// Another agent's push still completes, and a policy change still reaches
// every one of the 300 sessions.
TEST_F(HubProcessTest, HundredsOfSessionsAndStalledPeersDelayNoOne) {
  StartHub();
  CreateTenant("many");
  AgentFiles watcher = MakeAgent("many", "watcher", 16 << 10, 1);
  AgentFiles pusher = MakeAgent("many", "pusher", 2 << 20, 2);
  AgentFiles frozen = MakeAgent("many", "frozen", 24 << 20, 3);
  for (const AgentFiles* a : {&watcher, &pusher, &frozen}) {
    CommandResult r = RunCommand(EnrollArgs(*a, JoinToken("many")));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // Stalled before the handshake: connected, silent.
  std::vector<int> silent;
  for (int i = 0; i < 20; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    silent.push_back(fd);
  }
  constexpr int kSessions = 300;
  std::vector<std::unique_ptr<ChildProcess>> watchers;
  for (int i = 0; i < kSessions; ++i) {
    watchers.push_back(std::make_unique<ChildProcess>(
        std::vector<std::string>{peer_, "watch-policies", "--key", watcher.key, "--hub", Url(),
                                 "--hub-key", fingerprint_, "--count", "2", "--timeout-ms",
                                 "240000"},
        dir_.Sub("watch-" + std::to_string(i) + ".log")));
  }
  // Waits until the hub counts `want` open link sessions.
  auto wait_open = [&](double want) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
    double open = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      open = MetricValue(HttpRequest(port_, "GET", "/metrics").body, "ferry_hub_sessions_open");
      if (open >= want) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return open;
  };
  // All sessions open (the watchers' first sync is sent at connect).
  ASSERT_GE(wait_open(kSessions), kSessions * 1.0) << "sessions open";
  // Stalled mid-upload: a slow push (24 MB at 2 MB/s), frozen once its
  // session is up.
  auto frozen_push = PushArgs(frozen);
  frozen_push.insert(frozen_push.end(), {"--limit", "2000000"});
  ChildProcess stalled(frozen_push, dir_.Sub("frozen.log"));
  ASSERT_GE(wait_open(kSessions + 1), kSessions + 1.0) << "the slow push's session";
  ASSERT_TRUE(stalled.running()) << stalled.Log();
  ASSERT_EQ(::kill(stalled.pid(), SIGSTOP), 0);

  // Another agent's push completes while all of that is going on.
  CommandResult push = RunCommand(PushArgs(pusher), {}, "", 120);
  EXPECT_EQ(push.exit_code, 0) << push.err << push.out;
  EXPECT_NE(push.out.find("\"ok\":true"), std::string::npos) << push.out;
  // And a policy change reaches every open session.
  HttpResult put =
      HttpRequest(port_, "PUT", "/v1/tenants/many/policies/all",
                  "apiVersion: ferry/v1\nkind: MirrorPolicy\nmetadata: {name: all}\n"
                  "spec: {datasets: [d], schedule: {every: 1h}, targets: [{hub: h}]}\n",
                  admin_, "application/yaml");
  ASSERT_EQ(put.status, 201) << put.body;
  int ok = 0;
  for (auto& w : watchers) ok += w->Wait(std::chrono::seconds(120)) == 0;
  EXPECT_EQ(ok, kSessions);

  ::kill(stalled.pid(), SIGCONT);
  stalled.Stop(SIGKILL);
  for (int fd : silent) ::close(fd);
  std::vector<std::string> ids = SnapshotIds("many");
  EXPECT_NE(std::find(ids.begin(), ids.end(), pusher.snapshot), ids.end());
  StopHub();
}

// SIGTERM while an agent uploads: the hub stops accepting, the session ends
// at its next batch with "hub is shutting down", the hub exits 0 well within
// its grace period, and after a restart the agent's next push completes.
TEST_F(HubProcessTest, SigtermDrainsSessionsAndTheAgentResumes) {
  StartHub();
  CreateTenant("acme");
  AgentFiles a = MakeAgent("acme", "edge-1", 16 << 20, 77);
  ASSERT_EQ(RunCommand(EnrollArgs(a, JoinToken("acme"))).exit_code, 0);
  std::vector<std::string> slow = PushArgs(a);
  slow.insert(slow.end(), {"--limit", "2000000"});  // ~8 s for 16 MiB
  ChildProcess push(slow, dir_.Sub("slow-push.log"));
  // Wait until the push's session (an enrolled key; the enrollment's was an
  // unknown one) is open on the hub.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (hub_->Log().find("): enrolled key") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto stop_started = std::chrono::steady_clock::now();
  EXPECT_EQ(hub_->Stop(SIGTERM, std::chrono::seconds(30)), 0) << hub_->Log();
  EXPECT_LT(std::chrono::steady_clock::now() - stop_started, std::chrono::seconds(8))
      << "the hub waited for the whole upload instead of its next batch";
  EXPECT_EQ(push.Wait(std::chrono::seconds(60)), 1);
  EXPECT_NE(push.Log().find("shutting down"), std::string::npos) << push.Log();
  StartHub();
  CommandResult again = RunCommand(PushArgs(a));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(SnapshotIds("acme"), std::vector<std::string>{a.snapshot});
  ExpectSnapshotReadable("acme", a.snapshot);
  StopHub();
}

// kill -9 while many agents upload and commit; after a restart every
// snapshot the hub acknowledged is complete, and the agents, pushing again,
// finish without losing anything.
TEST_F(HubProcessTest, KillDashNineMidUploadLosesNothingAcked) {
  StartHub();
  CreateTenant("acme");
  std::vector<AgentFiles> agents;
  std::vector<std::vector<std::string>> enrolls, pushes;
  // Sizes from 2 to 9 MiB at 4 MB/s each: the first push finishes after
  // about half a second, the last one after more than two.
  for (int i = 0; i < 8; ++i) {
    AgentFiles a = MakeAgent("acme", "edge-" + std::to_string(i), size_t(2 + i) << 20, 1000 + i);
    enrolls.push_back(EnrollArgs(a, JoinToken("acme")));
    std::vector<std::string> push = PushArgs(a);
    push.insert(push.end(), {"--limit", "4000000"});
    pushes.push_back(push);
    agents.push_back(a);
  }
  for (int code : RunAll(enrolls, "enroll")) ASSERT_EQ(code, 0);

  // Start all pushes, and kill the hub once the first snapshot is listed.
  std::vector<std::unique_ptr<ChildProcess>> procs;
  for (size_t i = 0; i < pushes.size(); ++i) {
    procs.push_back(
        std::make_unique<ChildProcess>(pushes[i], dir_.Sub("push1-" + std::to_string(i) + ".log")));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (SnapshotIds("acme").empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(hub_->Stop(SIGKILL), 128 + SIGKILL);
  std::vector<int> first;
  for (auto& p : procs) first.push_back(p->Wait(std::chrono::seconds(120)));
  const int finished_before_kill = static_cast<int>(std::count(first.begin(), first.end(), 0));

  StartHub();
  // Everything listed is complete.
  std::vector<std::string> listed = SnapshotIds("acme");
  EXPECT_GE(listed.size(), static_cast<size_t>(finished_before_kill));
  for (const std::string& id : listed) ExpectSnapshotReadable("acme", id);
  // Every push that reported success before the kill is listed.
  for (size_t i = 0; i < agents.size(); ++i) {
    if (first[i] == 0) {
      EXPECT_NE(std::find(listed.begin(), listed.end(), agents[i].snapshot), listed.end())
          << agents[i].name << " was acknowledged but is not listed";
    }
  }
  EXPECT_LT(finished_before_kill, 8) << "every push finished before the kill: nothing was cut";
  // The agents push again (unlimited) and all complete.
  std::vector<std::vector<std::string>> again;
  for (const AgentFiles& a : agents) again.push_back(PushArgs(a));
  for (int code : RunAll(again, "push2")) EXPECT_EQ(code, 0) << hub_->Log();
  listed = SnapshotIds("acme");
  for (const AgentFiles& a : agents) {
    EXPECT_EQ(std::count(listed.begin(), listed.end(), a.snapshot), 1) << a.name;
    ExpectSnapshotReadable("acme", a.snapshot);
  }
  StopHub();
}

TEST_F(HubProcessTest, TenantsAreIsolatedAndRevokedAgentsAreRefused) {
  StartHub();
  CreateTenant("alpha");
  CreateTenant("beta");
  AgentFiles a = MakeAgent("alpha", "alpha-edge", 64 << 10, 7);
  ASSERT_EQ(RunCommand(EnrollArgs(a, JoinToken("alpha"))).exit_code, 0);
  CommandResult push = RunCommand(PushArgs(a));
  ASSERT_EQ(push.exit_code, 0) << push.err;

  // Tokens of tenant beta: an admin and a reader.
  HttpResult beta_admin = Api("POST", "/v1/tenants/beta/tokens", "{\"role\":\"admin\"}");
  ASSERT_EQ(beta_admin.status, 201) << beta_admin.body;
  const std::string beta = Str(ParseJson(beta_admin), "token");
  HttpResult alpha_reader = Api("POST", "/v1/tenants/alpha/tokens", "{\"role\":\"reader\"}");
  ASSERT_EQ(alpha_reader.status, 201) << alpha_reader.body;
  const std::string reader = Str(ParseJson(alpha_reader), "token");

  // Beta's token sees nothing of alpha: listing, snapshot, refs, chunks, keys.
  for (const std::string& target :
       {std::string("/v1/tenants/alpha/snapshots"), "/v1/tenants/alpha/snapshots/" + a.snapshot,
        "/v1/tenants/alpha/snapshots/" + a.snapshot + "/refs",
        std::string("/v1/tenants/alpha/agents")}) {
    HttpResult r = Api("GET", target, "", beta);
    EXPECT_TRUE(r.status == 403 || r.status == 404) << target << ": " << r.status;
  }
  EXPECT_TRUE(SnapshotIds("beta", beta).empty());
  // Beta cannot read alpha's chunks through its own tenant path either.
  HttpResult refs = Api("GET", "/v1/tenants/alpha/snapshots/" + a.snapshot + "/refs");
  ASSERT_EQ(refs.status, 200);
  auto reader_refs =
      snapshot::RefSetReader::FromBytes(Bytes(refs.body.begin(), refs.body.end()), "refs");
  ASSERT_TRUE(reader_refs.ok());
  snapshot::RefEntry entry;
  ASSERT_TRUE((*reader_refs)->Next(entry));
  const std::string chunk = HexEncode(entry.id);
  EXPECT_EQ(Api("GET", "/v1/tenants/beta/chunks/" + chunk, "", beta).status, 404);
  const int cross_chunk = Api("GET", "/v1/tenants/alpha/chunks/" + chunk, "", beta).status;
  EXPECT_TRUE(cross_chunk == 403 || cross_chunk == 404) << cross_chunk;
  // A reader reads but cannot write.
  EXPECT_EQ(Api("GET", "/v1/tenants/alpha/chunks/" + chunk, "", reader).status, 200);
  EXPECT_EQ(Api("POST", "/v1/tenants/alpha/enrollment-tokens", "{}", reader).status, 403);
  EXPECT_EQ(Api("POST", "/v1/tenants/alpha/agents/alpha-edge/revoke", "", reader).status, 403);

  // Over the link: alpha's agent cannot reach beta's store — its sessions
  // are scoped to alpha, so the same chunks are "missing" for nobody else:
  // a beta agent pushing alpha's snapshot must upload every chunk itself.
  AgentFiles b = MakeAgent("beta", "beta-edge", 64 << 10, 8);
  ASSERT_EQ(RunCommand(EnrollArgs(b, JoinToken("beta"))).exit_code, 0);
  AgentFiles b_with_alpha_store = b;
  b_with_alpha_store.store = a.store;  // alpha's snapshot, signed by alpha's key
  CommandResult cross = RunCommand(PushArgs(b_with_alpha_store));
  EXPECT_EQ(cross.exit_code, 1) << "beta's agent committed a snapshot signed by alpha's agent";
  EXPECT_NE(cross.err.find("PERMISSION_DENIED"), std::string::npos) << cross.err;
  EXPECT_TRUE(SnapshotIds("beta", beta).empty());

  // Revocation: refused at the next handshake (treated as an unknown key).
  ASSERT_EQ(Api("POST", "/v1/tenants/alpha/agents/alpha-edge/revoke").status, 200);
  CommandResult after = RunCommand(PushArgs(a));
  EXPECT_EQ(after.exit_code, 1);
  EXPECT_NE(after.err.find("PERMISSION_DENIED"), std::string::npos) << after.err;
  StopHub();
}

TEST_F(HubProcessTest, HostileHttpGets4xxAndTheHubKeepsServing) {
  StartHub();
  std::mt19937_64 rng(42);
  const std::vector<std::string> methods = {"GET",     "POST",  "PUT", "DELETE", "PATCH",
                                            "OPTIONS", "TRACE", "FOO", "G\x01T"};
  const std::vector<std::string> paths = {"/",
                                          "/v1",
                                          "/v1/tenants/../../etc/passwd",
                                          "/v1/tenants/%00",
                                          "/v1/tenants/" + std::string(300, 'a'),
                                          "/v1/tenants/x/chunks/zz",
                                          "/v1/tenants/x/snapshots/123",
                                          "//",
                                          "/v1/link",
                                          "*",
                                          "/healthz?x=" + std::string(50, 'y')};
  int answered = 0;
  for (int i = 0; i < 120; ++i) {
    std::string raw;
    switch (i % 4) {
      case 0:  // random method and path, maybe a bad token
        raw = methods[rng() % methods.size()] + " " + paths[rng() % paths.size()] +
              " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer fry_" + std::to_string(rng()) +
              "\r\nConnection: close\r\n\r\n";
        break;
      case 1: {  // a body of garbage as JSON, with the admin token
        std::string body;
        for (int k = 0; k < 200; ++k) body += static_cast<char>(rng() % 256);
        raw =
            "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin_ +
            "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\nConnection: close\r\n\r\n" + body;
        break;
      }
      case 2:  // oversized header
        raw = "GET /v1/tenants HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(64 << 10, 'z') +
              "\r\n\r\n";
        break;
      default: {  // binary noise
        for (int k = 0; k < 300; ++k) raw += static_cast<char>(rng() % 256);
        raw += "\r\n\r\n";
      }
    }
    HttpResult r = RawRequest(port_, raw, 5000);
    if (r.status != 0) {
      ++answered;
      EXPECT_GE(r.status, 400) << raw.substr(0, 80);
      EXPECT_LT(r.status, 500) << raw.substr(0, 80) << "\n" << r.body.substr(0, 300);
    }
  }
  EXPECT_GT(answered, 60);
  // Declared body far over the limit: 413 before reading it.
  HttpResult big = RawRequest(port_,
                              "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                                  admin_ + "\r\nContent-Length: 999999999\r\n\r\n{",
                              5000);
  EXPECT_EQ(big.status, 413) << big.body.substr(0, 200);
  EXPECT_TRUE(hub_->running());
  EXPECT_EQ(HttpRequest(port_, "GET", "/healthz").status, 200);
  StopHub();
}

}  // namespace
}  // namespace ferry::testing
