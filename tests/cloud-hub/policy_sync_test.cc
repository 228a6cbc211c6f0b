// Policy sync: the hub sends each connected agent the mirror policies that
// select it, at connect and after every change (docs/format/link.md,
// "Policy sync").
//
// PolicySelects, BuildPolicySync and PolicyPusher against a catalog in a
// temp dir; then the real ferry-hub process with agents watching their
// policies over the link (`ferry-link-peer watch-policies`, one JSON line
// per sync, read as they arrive through a pipe).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cloud-hub/catalog.h"
#include "cloud-hub/metrics.h"
#include "cloud-hub/policy_pusher.h"
#include "core/env.h"
#include "mirror/policy/mirror_policy.h"
#include "tests/testing/http_client.h"
#include "tests/testing/process.h"
#include "tests/testing/test_util.h"

namespace ferry::hub {
namespace {

namespace json = boost::json;
using ::ferry::testing::BinDir;
using ::ferry::testing::ChildProcess;
using ::ferry::testing::CommandResult;
using ::ferry::testing::HttpRequest;
using ::ferry::testing::HttpResult;
using ::ferry::testing::RunCommand;
using ::ferry::testing::TempDir;
using ::ferry::testing::WaitForFile;

// A policy document (YAML) selecting agents by `labels` (none: every agent).
std::string PolicyYaml(const std::string& name, const std::map<std::string, std::string>& labels,
                       const std::string& dataset = "videos") {
  std::string match;
  for (const auto& [k, v] : labels) match += (match.empty() ? "" : ", ") + k + ": " + v;
  std::string doc =
      "apiVersion: ferry/v1\nkind: MirrorPolicy\nmetadata: {name: " + name + "}\nspec:\n";
  if (!labels.empty()) doc += "  agents: {matchLabels: {" + match + "}}\n";
  doc += "  datasets: [" + dataset +
         "]\n  schedule: \"*/15 * * * *\"\n  targets: [{hub: cloud-east}]\n"
         "  retention: {keepLast: 4}\n";
  return doc;
}

std::string Canonical(const std::string& yaml) {
  Result<mirror::MirrorPolicy> p = mirror::ParseMirrorPolicy(yaml);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? mirror::MirrorPolicyToJson(*p) : "";
}

std::vector<std::string> Names(const mirror::linkpb::PolicySync& sync) {
  std::vector<std::string> names;
  for (const std::string& text : sync.policies()) {
    Result<mirror::MirrorPolicy> p = mirror::ParseMirrorPolicy(text);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    names.push_back(p.ok() ? p->name : "?");
  }
  return names;
}

TEST(PolicySelectsTest, EveryMatchLabelMustMatch) {
  mirror::MirrorPolicy p;
  EXPECT_TRUE(PolicySelects(p, {})) << "empty matchLabels selects every agent";
  EXPECT_TRUE(PolicySelects(p, {{"site", "shop"}}));
  p.match_labels = {{"site", "shop"}, {"tier", "edge"}};
  EXPECT_TRUE(PolicySelects(p, {{"site", "shop"}, {"tier", "edge"}, {"extra", "x"}}));
  EXPECT_FALSE(PolicySelects(p, {{"site", "shop"}})) << "a missing label";
  EXPECT_FALSE(PolicySelects(p, {{"site", "shop"}, {"tier", "core"}})) << "another value";
  EXPECT_FALSE(PolicySelects(p, {}));
}

class PolicyCatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = Catalog::Open(dir_.Sub("catalog.db"));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    catalog_ = std::move(*c);
    ASSERT_TRUE(catalog_->CreateTenant("acme").ok());
    ASSERT_TRUE(catalog_->CreateTenant("globex").ok());
  }
  void Put(const std::string& tenant, const std::string& name,
           const std::map<std::string, std::string>& labels) {
    Result<PolicyRecord> r = catalog_->PutPolicy(tenant, name, Canonical(PolicyYaml(name, labels)));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  // Enrolls an agent with `labels` (given by its join token).
  void Enroll(const std::string& tenant, const std::string& name,
              const std::map<std::string, std::string>& labels) {
    Result<NewJoinToken> token = catalog_->CreateJoinToken(tenant, 600, "", labels);
    ASSERT_TRUE(token.ok()) << token.status().ToString();
    Result<Agent> a = catalog_->RedeemJoinToken(token->token, name, sodium::RandomArray<32>(),
                                                sodium::RandomArray<32>(), {});
    ASSERT_TRUE(a.ok()) << a.status().ToString();
  }

  TempDir dir_;
  std::unique_ptr<Catalog> catalog_;
  Metrics metrics_;
};

TEST_F(PolicyCatalogTest, SyncHoldsTheSelectedPoliciesSortedAsCanonicalJson) {
  Put("acme", "zeta-shop", {{"site", "shop"}});
  Put("acme", "all", {});
  Put("acme", "dc-only", {{"site", "dc"}});
  Put("acme", "alpha-shop", {{"site", "shop"}});
  Put("globex", "other-tenant", {});
  Result<mirror::linkpb::PolicySync> sync = BuildPolicySync(*catalog_, "acme", {{"site", "shop"}});
  ASSERT_TRUE(sync.ok()) << sync.status().ToString();
  EXPECT_EQ(sync->generation(), 4u);
  EXPECT_EQ(Names(*sync), (std::vector<std::string>{"all", "alpha-shop", "zeta-shop"}));
  ASSERT_EQ(sync->policies_size(), 3);
  EXPECT_EQ(sync->policies(0), Canonical(PolicyYaml("all", {})));
  Result<mirror::linkpb::PolicySync> none = BuildPolicySync(*catalog_, "acme", {{"site", "x"}});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(Names(*none), std::vector<std::string>{"all"});
  // A tenant without policies: generation 0, an empty set.
  ASSERT_TRUE(catalog_->CreateTenant("initech").ok());
  Result<mirror::linkpb::PolicySync> empty = BuildPolicySync(*catalog_, "initech", {});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->generation(), 0u);
  EXPECT_EQ(empty->policies_size(), 0);
}

TEST_F(PolicyCatalogTest, PusherSendsOnceAtRegisterAndAfterEachChangeOfItsTenant) {
  Enroll("acme", "edge-1", {{"site", "shop"}});
  Enroll("globex", "edge-2", {});
  Put("acme", "cams", {{"site", "shop"}});
  PolicyPusher pusher(*catalog_, metrics_, 8u << 20);
  auto acme = pusher.Register("acme", "edge-1");
  auto globex = pusher.Register("globex", "edge-2");
  EXPECT_EQ(pusher.open_sessions("acme"), 1u);

  std::vector<mirror::linkpb::Envelope> first = pusher.Take(*acme);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].request_id(), 0u);
  ASSERT_TRUE(first[0].has_policy_sync());
  EXPECT_EQ(first[0].policy_sync().generation(), 1u);
  EXPECT_EQ(Names(first[0].policy_sync()), std::vector<std::string>{"cams"});
  EXPECT_TRUE(pusher.Take(*acme).empty()) << "nothing changed";
  ASSERT_EQ(pusher.Take(*globex).size(), 1u);

  // Two changes before the next look: one sync, the current set.
  Put("acme", "more", {});
  EXPECT_EQ(pusher.OnPolicyChange("acme"), 1u);
  ASSERT_TRUE(catalog_->DeletePolicy("acme", "cams").ok());
  EXPECT_EQ(pusher.OnPolicyChange("acme"), 1u);
  std::vector<mirror::linkpb::Envelope> next = pusher.Take(*acme);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].policy_sync().generation(), 3u);
  EXPECT_EQ(Names(next[0].policy_sync()), std::vector<std::string>{"more"});
  EXPECT_TRUE(pusher.Take(*acme).empty());
  EXPECT_TRUE(pusher.Take(*globex).empty()) << "another tenant's change";

  // A change racing with the end of a session: the session is gone from the
  // registry; a look it may still take is harmless.
  pusher.Unregister(acme);
  pusher.Unregister(acme);
  EXPECT_EQ(pusher.OnPolicyChange("acme"), 0u);
  EXPECT_EQ(pusher.open_sessions("acme"), 0u);
  EXPECT_TRUE(pusher.Take(*acme).empty());
}

TEST_F(PolicyCatalogTest, RevokedAgentGetsNothingAndOversizedSyncIsNotSent) {
  Enroll("acme", "edge-1", {});
  Put("acme", "cams", {});
  {
    // A frame limit smaller than the sync: nothing is sent, the error counted.
    PolicyPusher small(*catalog_, metrics_, 64);
    auto s = small.Register("acme", "edge-1");
    EXPECT_TRUE(small.Take(*s).empty());
    EXPECT_NE(metrics_.Render().find(
                  "ferry_hub_errors_total{where=\"policy_sync\",code=\"RESOURCE_EXHAUSTED\"} 1"),
              std::string::npos)
        << metrics_.Render();
  }
  PolicyPusher pusher(*catalog_, metrics_, 8u << 20);
  auto s = pusher.Register("acme", "edge-1");
  ASSERT_TRUE(catalog_->RevokeAgent("acme", "edge-1").ok());
  EXPECT_TRUE(pusher.Take(*s).empty());
}

// ---- the real ferry-hub ----

// A child process whose stdout is a pipe read line by line as it comes
// (stderr goes to a log file). The destructor kills it if still running.
class LineProcess {
 public:
  LineProcess(const std::vector<std::string>& argv, const std::string& log_path)
      : log_path_(log_path) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe: " << std::strerror(errno);
      std::abort();
    }
    const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      const int null_fd = ::open("/dev/null", O_RDONLY);
      ::dup2(null_fd, 0);
      ::dup2(fds[1], 1);
      ::dup2(log_fd, 2);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    if (log_fd >= 0) ::close(log_fd);
    read_fd_ = fds[0];
    if (pid_ < 0) {
      ADD_FAILURE() << "fork: " << std::strerror(errno);
      std::abort();
    }
  }
  ~LineProcess() {
    if (read_fd_ >= 0) ::close(read_fd_);
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status_, 0);
    }
  }
  LineProcess(const LineProcess&) = delete;
  LineProcess& operator=(const LineProcess&) = delete;

  // The next stdout line; nullopt at end of output or after `timeout`.
  std::optional<std::string> ReadLine(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      if (size_t nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || eof_) return std::nullopt;
      pollfd p{read_fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return std::nullopt;
      char chunk[4096];
      const ssize_t n = ::read(read_fd_, chunk, sizeof(chunk));
      if (n <= 0) {
        eof_ = true;
        continue;
      }
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  // Waits for the exit; returns the exit code (-1 on timeout or a signal).
  int Wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    // Reading to the end of output is the wait: the pipe closes at exit.
    while (!eof_ && std::chrono::steady_clock::now() < deadline) {
      ReadLine(std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now()));
    }
    if (!eof_) return -1;
    ::waitpid(pid_, &status_, 0);
    reaped_ = true;
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : -1;
  }

  std::string Log() const {
    Result<Bytes> b = Env::Default()->ReadFile(log_path_, 1 << 20);
    return b.ok() ? std::string(b->begin(), b->end()) : "";
  }

 private:
  pid_t pid_ = -1;
  int read_fd_ = -1;
  int status_ = 0;
  bool reaped_ = false;
  bool eof_ = false;
  std::string buffer_;
  std::string log_path_;
};

struct SyncLine {
  uint64_t generation = 0;
  std::vector<std::string> policies;
};

class PolicySyncProcessTest : public ::testing::Test {
 protected:
  static constexpr std::chrono::seconds kWait{60};

  void SetUp() override {
    hub_bin_ = BinDir() + "/ferry-hub";
    peer_ = BinDir() + "/ferry-link-peer";
    ctl_ = BinDir() + "/ferryctl";
    data_ = dir_.Sub("hub-data");
    const ::ferry::testing::HubInit init = ::ferry::testing::InitHub(data_);
    fingerprint_ = init.fingerprint;
    admin_ = init.admin_token;
    ASSERT_FALSE(admin_.empty());
    const std::string port_file = dir_.Sub("hub.port");
    hub_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{hub_bin_, "run", "--data-dir", data_, "--listen", "127.0.0.1:0",
                                 "--port-file", port_file, "--log-format", "text"},
        dir_.Sub("hub.log"));
    port_ = static_cast<uint16_t>(std::stoi(WaitForFile(port_file, hub_.get())));
    keyset_ = dir_.Sub("tenant.keyset");
    CommandResult keys = RunCommand(
        {ctl_, "keys", "init", "--out", keyset_, "--argon2-memory", "8", "--argon2-ops", "1"},
        {"FERRY_PASSPHRASE=pw"});
    ASSERT_EQ(keys.exit_code, 0) << keys.err;
  }
  void TearDown() override {
    if (hub_) {
      EXPECT_EQ(hub_->Stop(SIGTERM), 0) << hub_->Log();
    }
  }

  HttpResult Api(const std::string& method, const std::string& target, const std::string& body = "",
                 const std::string& type = "application/json") {
    return HttpRequest(port_, method, target, body, admin_, type);
  }
  void CreateTenant(const std::string& name) {
    HttpResult r = Api("POST", "/v1/tenants", "{\"name\":\"" + name + "\"}");
    ASSERT_EQ(r.status, 201) << r.body;
  }
  void PutPolicy(const std::string& tenant, const std::string& name,
                 const std::map<std::string, std::string>& labels,
                 const std::string& dataset = "videos") {
    HttpResult r = Api("PUT", "/v1/tenants/" + tenant + "/policies/" + name,
                       PolicyYaml(name, labels, dataset), "application/yaml");
    ASSERT_TRUE(r.status == 201 || r.status == 200) << r.status << " " << r.body;
  }
  void DeletePolicy(const std::string& tenant, const std::string& name) {
    HttpResult r = Api("DELETE", "/v1/tenants/" + tenant + "/policies/" + name);
    ASSERT_EQ(r.status, 204) << r.body;
  }

  // Enrolls an agent: `token_labels` through its join token (REST),
  // `own_labels` in its EnrollRequest. Returns its link key file.
  std::string EnrollAgent(const std::string& tenant, const std::string& name,
                          const std::map<std::string, std::string>& token_labels,
                          const std::map<std::string, std::string>& own_labels = {}) {
    json::object body;
    json::object labels;
    for (const auto& [k, v] : token_labels) labels[k] = v;
    body["labels"] = std::move(labels);
    HttpResult r =
        Api("POST", "/v1/tenants/" + tenant + "/enrollment-tokens", json::serialize(body));
    EXPECT_EQ(r.status, 201) << r.body;
    boost::system::error_code ec;
    json::value v = json::parse(r.body, ec);
    EXPECT_FALSE(ec) << r.body;
    const std::string token = ec ? "" : std::string(v.at("token").as_string());
    const std::string key = dir_.Sub(name + ".link.key");
    const std::string agent_keys = dir_.Sub(name + ".agent.keys");
    EXPECT_EQ(RunCommand({ctl_, "keys", "export-agent", "--keyset", keyset_, "--out", agent_keys})
                  .exit_code,
              0);
    std::vector<std::string> args = {peer_,    "enroll",    "--key",      key,       "--hub",
                                     Url(),    "--hub-key", fingerprint_, "--token", token,
                                     "--name", name,        "--keyset",   agent_keys};
    for (const auto& [k, val] : own_labels) args.insert(args.end(), {"--label", k + "=" + val});
    CommandResult enrolled = RunCommand(args);
    EXPECT_EQ(enrolled.exit_code, 0) << enrolled.err;
    return key;
  }

  std::unique_ptr<LineProcess> Watch(const std::string& key, int count, const std::string& tag) {
    return std::make_unique<LineProcess>(
        std::vector<std::string>{peer_, "watch-policies", "--key", key, "--hub", Url(), "--hub-key",
                                 fingerprint_, "--count", std::to_string(count), "--timeout-ms",
                                 "120000"},
        dir_.Sub(tag + ".log"));
  }

  // The next sync a watcher prints.
  SyncLine NextSync(LineProcess& watcher) {
    SyncLine out;
    std::optional<std::string> line = watcher.ReadLine(kWait);
    EXPECT_TRUE(line.has_value()) << "no policy sync; watcher log:\n"
                                  << watcher.Log() << "\nhub log:\n"
                                  << hub_->Log();
    if (!line) return out;
    boost::system::error_code ec;
    json::value v = json::parse(*line, ec);
    EXPECT_FALSE(ec) << *line;
    if (ec) return out;
    out.generation = v.at("generation").to_number<uint64_t>();
    for (const auto& p : v.at("policies").as_array()) out.policies.emplace_back(p.as_string());
    return out;
  }

  std::string Url() const { return "ws://127.0.0.1:" + std::to_string(port_); }

  TempDir dir_;
  std::string hub_bin_, peer_, ctl_, data_, fingerprint_, admin_, keyset_;
  std::unique_ptr<ChildProcess> hub_;
  uint16_t port_ = 0;
};

using NameList = std::vector<std::string>;

// At connect, each agent gets exactly the policies whose matchLabels its
// labels satisfy — labels from its join token or from its own enrollment —
// plus those without matchLabels, sorted by name.
TEST_F(PolicySyncProcessTest, AgentGetsTheMatchingPoliciesAtConnect) {
  CreateTenant("acme");
  PutPolicy("acme", "shop-cams", {{"site", "shop"}});
  PutPolicy("acme", "everyone", {});
  PutPolicy("acme", "dc-only", {{"site", "dc"}});
  PutPolicy("acme", "shop-tier2", {{"site", "shop"}, {"tier", "2"}});
  const std::string shop = EnrollAgent("acme", "edge-shop", {{"site", "shop"}});
  const std::string dc = EnrollAgent("acme", "edge-dc", {}, {{"site", "dc"}});
  const std::string none = EnrollAgent("acme", "edge-plain", {});

  auto w_shop = Watch(shop, 1, "watch-shop");
  auto w_dc = Watch(dc, 1, "watch-dc");
  auto w_none = Watch(none, 1, "watch-plain");
  SyncLine s = NextSync(*w_shop);
  EXPECT_EQ(s.generation, 4u);
  EXPECT_EQ(s.policies, (NameList{"everyone", "shop-cams"}));
  SyncLine d = NextSync(*w_dc);
  EXPECT_EQ(d.generation, 4u);
  EXPECT_EQ(d.policies, (NameList{"dc-only", "everyone"}));
  SyncLine n = NextSync(*w_none);
  EXPECT_EQ(n.policies, NameList{"everyone"});
  EXPECT_EQ(w_shop->Wait(kWait), 0) << w_shop->Log();
  EXPECT_EQ(w_dc->Wait(kWait), 0) << w_dc->Log();
  EXPECT_EQ(w_none->Wait(kWait), 0) << w_none->Log();
}

// A PUT and a DELETE while the agent is connected each reach its open
// session as the complete new set; a tenant without policies syncs an
// empty set.
TEST_F(PolicySyncProcessTest, PutAndDeleteReachTheOpenSession) {
  CreateTenant("acme");
  const std::string key = EnrollAgent("acme", "edge-1", {{"site", "shop"}});
  auto watcher = Watch(key, 4, "watch");
  SyncLine first = NextSync(*watcher);
  EXPECT_EQ(first.generation, 0u);
  EXPECT_TRUE(first.policies.empty());

  PutPolicy("acme", "cams", {{"site", "shop"}});
  SyncLine second = NextSync(*watcher);
  EXPECT_EQ(second.generation, 1u);
  EXPECT_EQ(second.policies, NameList{"cams"});

  PutPolicy("acme", "audio", {});
  SyncLine third = NextSync(*watcher);
  EXPECT_EQ(third.generation, 2u);
  EXPECT_EQ(third.policies, (NameList{"audio", "cams"}));

  DeletePolicy("acme", "cams");
  SyncLine fourth = NextSync(*watcher);
  EXPECT_EQ(fourth.generation, 3u);
  EXPECT_EQ(fourth.policies, NameList{"audio"});
  EXPECT_EQ(watcher->Wait(kWait), 0) << watcher->Log();
}

// A policy that does not select the agent still bumps the generation and
// is pushed — without that policy in the set.
TEST_F(PolicySyncProcessTest, NonMatchingChangeSendsTheSameSetUnderANewGeneration) {
  CreateTenant("acme");
  PutPolicy("acme", "cams", {{"site", "shop"}});
  const std::string key = EnrollAgent("acme", "edge-1", {{"site", "shop"}});
  auto watcher = Watch(key, 2, "watch");
  SyncLine first = NextSync(*watcher);
  EXPECT_EQ(first.policies, NameList{"cams"});
  PutPolicy("acme", "dc-only", {{"site", "dc"}});
  SyncLine second = NextSync(*watcher);
  EXPECT_EQ(second.generation, first.generation + 1);
  EXPECT_EQ(second.policies, NameList{"cams"});
  EXPECT_EQ(watcher->Wait(kWait), 0) << watcher->Log();
}

// Changes in one tenant never reach another tenant's agents: after acme's
// changes have reached acme's agent, globex's agent's next sync is its own
// tenant's first change.
TEST_F(PolicySyncProcessTest, AnotherTenantsAgentNeverReceivesThem) {
  CreateTenant("acme");
  CreateTenant("globex");
  const std::string acme_key = EnrollAgent("acme", "edge-a", {});
  const std::string globex_key = EnrollAgent("globex", "edge-g", {});
  auto acme = Watch(acme_key, 3, "watch-acme");
  auto globex = Watch(globex_key, 2, "watch-globex");
  EXPECT_TRUE(NextSync(*acme).policies.empty());
  EXPECT_TRUE(NextSync(*globex).policies.empty());

  PutPolicy("acme", "secret-plan", {});
  EXPECT_EQ(NextSync(*acme).policies, NameList{"secret-plan"});
  DeletePolicy("acme", "secret-plan");
  EXPECT_TRUE(NextSync(*acme).policies.empty());

  PutPolicy("globex", "own", {});
  SyncLine g = NextSync(*globex);
  EXPECT_EQ(g.generation, 1u);
  EXPECT_EQ(g.policies, NameList{"own"});
  EXPECT_EQ(acme->Wait(kWait), 0) << acme->Log();
  EXPECT_EQ(globex->Wait(kWait), 0) << globex->Log();
}

// Sessions that end while pushes are in flight: watchers that leave after
// their first sync, during a stream of changes. The hub stays up and a
// new session gets the final set.
TEST_F(PolicySyncProcessTest, SessionsEndingDuringPushesAreHarmless) {
  CreateTenant("acme");
  std::vector<std::string> keys;
  for (int i = 0; i < 6; ++i) keys.push_back(EnrollAgent("acme", "edge-" + std::to_string(i), {}));
  std::vector<std::unique_ptr<LineProcess>> watchers;
  for (size_t i = 0; i < keys.size(); ++i) {
    watchers.push_back(Watch(keys[i], 1, "watch-" + std::to_string(i)));
  }
  for (int i = 0; i < 20; ++i) PutPolicy("acme", "p", {}, "set" + std::to_string(i));
  for (auto& w : watchers) EXPECT_EQ(w->Wait(kWait), 0) << w->Log();
  auto last = Watch(keys[0], 1, "watch-last");
  SyncLine s = NextSync(*last);
  EXPECT_EQ(s.generation, 20u);
  EXPECT_EQ(s.policies, NameList{"p"});
  EXPECT_EQ(last->Wait(kWait), 0) << last->Log();
  EXPECT_EQ(HttpRequest(port_, "GET", "/healthz").status, 200);
}

// watch-policies gives up with exit code 1 when fewer syncs than asked for
// arrive in time.
TEST_F(PolicySyncProcessTest, WatcherFailsWhenTheSyncsDoNotCome) {
  CreateTenant("acme");
  const std::string key = EnrollAgent("acme", "edge-1", {});
  LineProcess watcher({peer_, "watch-policies", "--key", key, "--hub", Url(), "--hub-key",
                       fingerprint_, "--count", "2", "--timeout-ms", "300"},
                      dir_.Sub("watch.log"));
  EXPECT_EQ(NextSync(watcher).generation, 0u);
  EXPECT_EQ(watcher.Wait(kWait), 1);
  EXPECT_NE(watcher.Log().find("received 1 of 2 policy syncs"), std::string::npos) << watcher.Log();
}

}  // namespace
}  // namespace ferry::hub
