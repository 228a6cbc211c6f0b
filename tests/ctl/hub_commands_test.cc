// ferryctl against a real ferry-hub process on an ephemeral loopback port:
// every hub command's success path and its main errors, with the message and
// the exit code asserted (ctl/exit_codes.h), and `--output json|yaml`
// parsed for the documented fields (docs/api.md). Snapshots reach the hub
// through ferry-link-peer (the link's test peer) or a real ferry-agent.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <memory>
#include <string>
#include <vector>

#include "core/env.h"
#include "tests/testing/process.h"
#include "tests/testing/test_util.h"

namespace ferry::testing {
namespace {

namespace json = boost::json;

json::value Json(const CommandResult& r) {
  boost::system::error_code ec;
  json::value v = json::parse(r.out, ec);
  EXPECT_FALSE(ec) << "not JSON: " << r.out << "\nstderr: " << r.err;
  return v;
}

std::string Str(const json::value& v, const char* key) {
  if (!v.is_object()) return "";
  const json::value* x = v.get_object().if_contains(key);
  return x && x->is_string() ? std::string(x->get_string()) : "";
}

const json::array& Arr(const json::value& v, const char* key) {
  static const json::array kEmpty;
  if (!v.is_object()) return kEmpty;
  const json::value* x = v.get_object().if_contains(key);
  return x && x->is_array() ? x->get_array() : kEmpty;
}

bool Has(const json::value& v, const char* key) {
  return v.is_object() && v.get_object().contains(key);
}

// The value after `label` on a "label   value" line of a show command.
std::string Field(const std::string& text, const std::string& label) {
  std::string v = FieldAfter(text, label);
  return v.erase(0, v.find_first_not_of(' '));
}

std::string Describe(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

class FerryctlHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctl_ = BinDir() + "/ferryctl";
    peer_ = BinDir() + "/ferry-link-peer";
    data_ = dir_.Sub("hub");
    const HubInit init = InitHub(data_);
    fingerprint_ = init.fingerprint;
    admin_ = init.admin_token;
    ASSERT_FALSE(admin_.empty());
    StartHub(0, "hub");
    url_ = "http://127.0.0.1:" + std::to_string(port_);
    config_ = dir_.Sub("ferryctl.yaml");
  }

  // ferry-hub run on 127.0.0.1:`port` (0: any), logging to <name>.log.
  void StartHub(int port, const std::string& name) {
    const std::string port_file = dir_.Sub(name + ".port");
    hub_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{BinDir() + "/ferry-hub", "run", "--data-dir", data_, "--listen",
                                 "127.0.0.1:" + std::to_string(port), "--port-file", port_file,
                                 "--log-format", "text"},
        dir_.Sub(name + ".log"));
    port_ = std::stoi(WaitForFile(port_file, hub_.get()));
  }

  // ferryctl with its hub list in the test's folder and no inherited
  // FERRY_HUB/TOKEN/TENANT.
  CommandResult Ctl(std::vector<std::string> args, std::vector<std::string> env = {}) {
    args.insert(args.begin(), ctl_);
    env.push_back("FERRY_CONFIG=" + config_);
    env.push_back("FERRY_PASSPHRASE=pw");
    env.push_back("FERRY_HUB=");
    env.push_back("FERRY_TOKEN=");
    env.push_back("FERRY_TENANT=");
    env.push_back("FERRY_NO_PROGRESS=1");
    return RunCommand(args, env);
  }

  // Saves the hub as the current one, with tenant `tenant`.
  void AddHub(const std::string& tenant = "acme") {
    CommandResult r = Ctl({"config", "add-hub", "main", "--url", url_, "--token", admin_,
                           "--fingerprint", fingerprint_, "--tenant", tenant});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
  }
  void CreateTenant(const std::string& name) {
    CommandResult r = Ctl({"tenant", "create", name});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
  }

  std::string Keyset() {
    const std::string path = dir_.Sub("tenant.keyset");
    if (Result<bool> e = Env::Default()->FileExists(path); e.ok() && *e) return path;
    CommandResult r =
        Ctl({"keys", "init", "--out", path, "--argon2-memory", "8", "--argon2-ops", "1"});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    return path;
  }

  // A tree snapshotted into a local store and pushed to the hub by
  // ferry-link-peer enrolled as `agent`; returns the snapshot id.
  std::string PushSnapshot(const std::string& agent, const std::string& tree,
                           const std::vector<std::string>& labels = {}) {
    const std::string keys = dir_.Sub(agent + ".agent.keys");
    const std::string key = dir_.Sub(agent + ".link.key");
    const std::string store = dir_.Sub(agent + ".store");
    if (Result<bool> e = Env::Default()->FileExists(keys); !e.ok() || !*e) {
      CommandResult x = Ctl({"keys", "export-agent", "--keyset", Keyset(), "--out", keys});
      EXPECT_EQ(x.exit_code, 0) << Describe(x);
      CommandResult t = Ctl({"agent", "enroll-token", "--name", agent, "-o", "json"});
      EXPECT_EQ(t.exit_code, 0) << Describe(t);
      CommandResult en =
          RunCommand({peer_, "enroll", "--key", key, "--hub",
                      "ws://127.0.0.1:" + std::to_string(port_), "--hub-key", fingerprint_,
                      "--token", Str(Json(t), "token"), "--name", agent, "--keyset", keys});
      EXPECT_EQ(en.exit_code, 0) << Describe(en);
    }
    std::vector<std::string> create = {ctl_,  "snapshot", "create", "--store",
                                       store, "--keyset", keys};
    for (const std::string& l : labels) {
      create.push_back("--label");
      create.push_back(l);
    }
    create.push_back(tree);
    CommandResult snap = RunCommand(create);
    EXPECT_EQ(snap.exit_code, 0) << Describe(snap);
    const std::string out = Trim(snap.out);
    const std::string id = out.substr(out.rfind('\n') + 1);
    CommandResult push =
        RunCommand({peer_, "push", "--key", key, "--hub", "ws://127.0.0.1:" + std::to_string(port_),
                    "--hub-key", fingerprint_, "--store", store});
    EXPECT_EQ(push.exit_code, 0) << Describe(push);
    return id;
  }

  std::string MakeTree(const std::string& name, uint64_t seed) {
    const std::string tree = dir_.Sub(name);
    MakeDirsOrDie(tree + "/sub");
    WriteFileOrDie(tree + "/a.bin", SeededBytes(seed, 300000));
    WriteFileOrDie(tree + "/sub/b.txt", CompressibleBytes(seed + 1, 100000, 0.3));
    return tree;
  }

  TempDir dir_;
  std::string ctl_, peer_, data_, fingerprint_, admin_, url_, config_;
  std::unique_ptr<ChildProcess> hub_;
  int port_ = 0;
};

TEST_F(FerryctlHubTest, ConfigSavesHubsOwnerOnlyAndPicksTheCurrentOne) {
  AddHub();
  struct stat st;
  ASSERT_EQ(::stat(config_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  CommandResult second = Ctl({"config", "add-hub", "other", "--url", "http://127.0.0.1:1",
                              "--token", "fry_x", "--no-check", "--tenant", "globex"});
  ASSERT_EQ(second.exit_code, 0) << Describe(second);
  CommandResult list = Ctl({"config", "list", "-o", "json"});
  ASSERT_EQ(list.exit_code, 0) << Describe(list);
  const json::value v = Json(list);
  ASSERT_EQ(Arr(v, "hubs").size(), 2u);
  EXPECT_EQ(Str(Arr(v, "hubs")[0], "name"), "main");
  EXPECT_TRUE(Arr(v, "hubs")[0].at("current").as_bool());  // the first one added
  EXPECT_EQ(list.out.find(admin_), std::string::npos) << "config list must not print tokens";

  // The current hub answers; `use` switches to one that does not (exit 6).
  EXPECT_EQ(Ctl({"tenant", "list"}).exit_code, 0);
  ASSERT_EQ(Ctl({"config", "use", "other"}).exit_code, 0);
  CommandResult down = Ctl({"tenant", "list"});
  EXPECT_EQ(down.exit_code, 6) << Describe(down);
  EXPECT_NE(down.err.find("cannot reach the hub at http://127.0.0.1:1"), std::string::npos)
      << down.err;
  // --hub NAME and FERRY_HUB override the current hub; --hub URL needs a token.
  EXPECT_EQ(Ctl({"tenant", "list", "--hub", "main"}).exit_code, 0);
  EXPECT_EQ(Ctl({"tenant", "list"}, {"FERRY_HUB=main"}).exit_code, 0);
  CommandResult url_only = Ctl({"tenant", "list", "--hub", url_});
  EXPECT_EQ(url_only.exit_code, 5) << Describe(url_only);
  EXPECT_NE(url_only.err.find("no API token"), std::string::npos) << url_only.err;
  EXPECT_EQ(Ctl({"tenant", "list", "--hub", url_, "--token", admin_}).exit_code, 0);
  EXPECT_EQ(Ctl({"tenant", "list", "--hub", url_}, {"FERRY_TOKEN=" + admin_}).exit_code, 0);

  // Saving a name again (a token rotation) keeps what is not given.
  ASSERT_EQ(Ctl({"config", "add-hub", "main", "--url", url_, "--token", admin_}).exit_code, 0);
  CommandResult kept = Ctl({"config", "list", "-o", "json"});
  const json::value kept_v = Json(kept);
  EXPECT_EQ(Str(Arr(kept_v, "hubs")[0], "fingerprint"), fingerprint_) << kept.out;
  EXPECT_EQ(Str(Arr(kept_v, "hubs")[0], "tenant"), "acme") << kept.out;

  CommandResult unknown = Ctl({"config", "use", "nope"});
  EXPECT_EQ(unknown.exit_code, 4) << Describe(unknown);
  EXPECT_NE(unknown.err.find("known: main, other"), std::string::npos) << unknown.err;
}

TEST_F(FerryctlHubTest, NoHubConfiguredSaysWhatToRun) {
  CommandResult r = Ctl({"agent", "list"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_NE(r.err.find("ferryctl config add-hub"), std::string::npos) << r.err;
}

TEST_F(FerryctlHubTest, RefusedTokenIsExit5AndIsNotSaved) {
  CommandResult r = Ctl({"config", "add-hub", "main", "--url", url_, "--token",
                         "fry_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"});
  EXPECT_EQ(r.exit_code, 5) << Describe(r);
  EXPECT_NE(r.err.find("refused the token"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not saved"), std::string::npos) << r.err;
  Result<bool> saved = Env::Default()->FileExists(config_);
  ASSERT_TRUE(saved.ok());
  EXPECT_FALSE(*saved);
  CommandResult bad = Ctl({"tenant", "list", "--hub", url_, "--token", "fry_nope"});
  EXPECT_EQ(bad.exit_code, 5) << Describe(bad);
}

TEST_F(FerryctlHubTest, ABadConfigFileNamesTheKeyAndLine) {
  WriteFileOrDie(config_, AsBytes(std::string("apiVersion: ferry/v1\nhubs:\n  - name: a\n    "
                                              "url: http://x:1\n    tokn: y\n")));
  CommandResult r = Ctl({"config", "list"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_NE(r.err.find(config_ + ":5:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hubs[0].tokn: unknown key"), std::string::npos) << r.err;
}

TEST_F(FerryctlHubTest, TenantsAreCreatedAndListed) {
  AddHub();
  CommandResult created = Ctl({"tenant", "create", "acme", "-o", "json"});
  ASSERT_EQ(created.exit_code, 0) << Describe(created);
  EXPECT_EQ(Str(Json(created), "name"), "acme");
  EXPECT_TRUE(Has(Json(created), "created_unix"));
  CommandResult again = Ctl({"tenant", "create", "acme"});
  EXPECT_EQ(again.exit_code, 1) << Describe(again);
  EXPECT_NE(again.err.find("acme"), std::string::npos) << again.err;
  CommandResult bad = Ctl({"tenant", "create", "Bad_Name"});
  EXPECT_EQ(bad.exit_code, 2) << Describe(bad);
  CommandResult list = Ctl({"tenant", "list", "-o", "yaml"});
  ASSERT_EQ(list.exit_code, 0) << Describe(list);
  EXPECT_NE(list.out.find("name: acme"), std::string::npos) << list.out;
  CommandResult table = Ctl({"tenant", "list"});
  EXPECT_EQ(table.out.rfind("NAME", 0), 0u) << table.out;
}

TEST_F(FerryctlHubTest, EnrollTokenPrintsTheCommandThatEnrollsARealAgent) {
  AddHub();
  CreateTenant("acme");
  CommandResult t = Ctl({"agent", "enroll-token", "--name", "cam-1", "--label", "site=shop",
                         "--agent-config", dir_.Sub("agent.yaml")});
  ASSERT_EQ(t.exit_code, 0) << Describe(t);
  const std::string command = Trim(t.out);
  ASSERT_EQ(command.rfind("ferry-agent enroll --config " + dir_.Sub("agent.yaml") +
                              " --hub ws://127.0.0.1:" + std::to_string(port_) + " --hub-key " +
                              fingerprint_ + " --token fjt_",
                          0),
            0u)
      << command;
  const std::string keys = dir_.Sub("agent.keys");
  ASSERT_EQ(Ctl({"keys", "export-agent", "--keyset", Keyset(), "--out", keys}).exit_code, 0);
  WriteFileOrDie(
      dir_.Sub("agent.yaml"),
      AsBytes("agent: {name: cam-1}\nstateDir: " + dir_.Sub("agent-state") +
              "\nhubs:\n  - {name: hub-1, url: \"ws://127.0.0.1:" + std::to_string(port_) +
              "\"}\ndatasets:\n  - {name: d, path: " + dir_.path() + "}\nkeyset: {file: " + keys +
              "}\n"));
  // Run exactly the printed command (with the binary's full path).
  std::vector<std::string> argv = {BinDir() + "/ferry-agent"};
  size_t pos = command.find(' ') + 1;
  while (pos < command.size()) {
    const size_t end = command.find(' ', pos);
    argv.push_back(command.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
    pos = end == std::string::npos ? command.size() : end + 1;
  }
  CommandResult enrolled = RunCommand(argv);
  ASSERT_EQ(enrolled.exit_code, 0) << Describe(enrolled);

  CommandResult list = Ctl({"agent", "list", "-o", "json"});
  ASSERT_EQ(list.exit_code, 0) << Describe(list);
  const json::value listed = Json(list);
  const json::array& agents = Arr(listed, "agents");
  ASSERT_EQ(agents.size(), 1u) << list.out;
  EXPECT_EQ(Str(agents[0], "name"), "cam-1");
  EXPECT_EQ(Str(agents[0].at("labels"), "site"), "shop");
  for (const char* field : {"link_key_fingerprint", "enrolled_unix", "last_seen_unix", "revoked"}) {
    EXPECT_TRUE(Has(agents[0], field)) << field;
  }
  CommandResult show = Ctl({"agent", "show", "cam-1"});
  ASSERT_EQ(show.exit_code, 0) << Describe(show);
  EXPECT_EQ(Field(show.out, "state"), "active") << show.out;
  EXPECT_EQ(Field(show.out, "labels"), "site=shop") << show.out;

  CommandResult revoked = Ctl({"agent", "revoke", "cam-1", "-o", "json"});
  ASSERT_EQ(revoked.exit_code, 0) << Describe(revoked);
  EXPECT_TRUE(Json(revoked).at("revoked").as_bool());
  CommandResult missing = Ctl({"agent", "show", "cam-9"});
  EXPECT_EQ(missing.exit_code, 4) << Describe(missing);
  EXPECT_NE(missing.err.find("cam-9"), std::string::npos) << missing.err;
}

TEST_F(FerryctlHubTest, EnrollTokenRefusesAHubThatPresentsAnotherKey) {
  const std::string other = "fry1:" + std::string(32, 'a');
  CommandResult add = Ctl({"config", "add-hub", "main", "--url", url_, "--token", admin_,
                           "--fingerprint", other, "--tenant", "acme"});
  ASSERT_EQ(add.exit_code, 0) << Describe(add);
  CreateTenant("acme");
  CommandResult t = Ctl({"agent", "enroll-token"});
  EXPECT_EQ(t.exit_code, 5) << Describe(t);
  EXPECT_NE(t.err.find("pinned key mismatch"), std::string::npos) << t.err;
  EXPECT_NE(t.err.find(other), std::string::npos) << t.err;
  EXPECT_NE(t.err.find(fingerprint_), std::string::npos) << t.err;
  EXPECT_EQ(t.out.find("fjt_"), std::string::npos) << "no token may be printed: " << t.out;
}

TEST_F(FerryctlHubTest, TenantScopeAndMissingTenantAreClearErrors) {
  AddHub("");
  CommandResult none = Ctl({"policy", "list"});
  EXPECT_EQ(none.exit_code, 2) << Describe(none);
  EXPECT_NE(none.err.find("no tenant given"), std::string::npos) << none.err;
  CommandResult unknown = Ctl({"policy", "list", "--tenant", "ghost"});
  EXPECT_EQ(unknown.exit_code, 4) << Describe(unknown);
  // A reader token of tenant acme cannot touch globex nor write (403: exit 5).
  CreateTenant("acme");
  CreateTenant("globex");
  CommandResult token =
      Ctl({"token", "create", "--tenant", "acme", "--role", "reader", "-o", "json"});
  ASSERT_EQ(token.exit_code, 0) << Describe(token);
  const std::string reader = Str(Json(token), "token");
  ASSERT_EQ(reader.rfind("fry_", 0), 0u) << token.out;
  EXPECT_EQ(Ctl({"policy", "list", "--tenant", "acme", "--token", reader}).exit_code, 0);
  CommandResult other = Ctl({"policy", "list", "--tenant", "globex", "--token", reader});
  EXPECT_EQ(other.exit_code, 5) << Describe(other);
  EXPECT_NE(other.err.find("another tenant"), std::string::npos) << other.err;
  WriteFileOrDie(dir_.Sub("p.yaml"),
                 AsBytes(std::string("apiVersion: ferry/v1\nkind: MirrorPolicy\nmetadata: {name: "
                                     "p}\nspec:\n  datasets: [x]\n  schedule: {every: 1h}\n"
                                     "  targets: [{hub: cloud}]\n")));
  CommandResult write =
      Ctl({"policy", "apply", "-f", dir_.Sub("p.yaml"), "--tenant", "acme", "--token", reader});
  EXPECT_EQ(write.exit_code, 5) << Describe(write);
  // Revoked: the token is refused from then on.
  CommandResult list = Ctl({"token", "list", "--tenant", "acme", "-o", "json"});
  ASSERT_EQ(list.exit_code, 0) << Describe(list);
  std::string id;
  const json::value tokens = Json(list);
  for (const json::value& t : Arr(tokens, "tokens")) {
    if (Str(t, "role") == "reader") id = Str(t, "id");
  }
  ASSERT_FALSE(id.empty()) << list.out;
  ASSERT_EQ(Ctl({"token", "revoke", id}).exit_code, 0);
  EXPECT_EQ(Ctl({"policy", "list", "--tenant", "acme", "--token", reader}).exit_code, 5);
}

TEST_F(FerryctlHubTest, PolicyApplyValidatesEveryFileBeforeApplyingAny) {
  AddHub();
  CreateTenant("acme");
  const std::string dir = dir_.Sub("policies");
  MakeDirsOrDie(dir);
  const std::string good =
      "apiVersion: ferry/v1\nkind: MirrorPolicy\nmetadata: {name: cams}\nspec:\n"
      "  agents: {matchLabels: {site: shop}}\n  datasets: [videos]\n"
      "  schedule: {every: 1h}\n  targets: [{hub: cloud}]\n  rpo: 2h\n";
  WriteFileOrDie(dir + "/a.yaml",
                 AsBytes(good + "---\n# second\napiVersion: ferry/v1\nkind: MirrorPolicy\n"
                                "metadata: {name: logs}\nspec:\n  datasets: [logs]\n"
                                "  schedule: \"*/15 * * * *\"\n  targets: [{hub: cloud}]\n"));
  WriteFileOrDie(dir + "/b.yaml",
                 AsBytes(std::string("apiVersion: ferry/v1\nkind: MirrorPolicy\nmetadata: {name: "
                                     "bad}\nspec:\n  datasets: [x]\n  schedule: {every: 1h}\n"
                                     "  targets: [{hub: cloud}]\n  retention: {daily: -1}\n")));
  CommandResult bad = Ctl({"policy", "apply", "-f", dir});
  EXPECT_EQ(bad.exit_code, 2) << Describe(bad);
  EXPECT_NE(bad.err.find(dir + "/b.yaml"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("spec.retention.daily"), std::string::npos) << bad.err;
  CommandResult empty = Ctl({"policy", "list", "-o", "json"});
  ASSERT_EQ(empty.exit_code, 0) << Describe(empty);
  EXPECT_TRUE(Arr(Json(empty), "policies").empty()) << "nothing may be applied: " << empty.out;

  std::remove((dir + "/b.yaml").c_str());
  CommandResult applied = Ctl({"policy", "apply", "-f", dir});
  ASSERT_EQ(applied.exit_code, 0) << Describe(applied);
  EXPECT_EQ(applied.out, "policy/cams created\npolicy/logs created\n");
  CommandResult same = Ctl({"policy", "apply", "-f", dir + "/a.yaml"});
  EXPECT_EQ(same.out, "policy/cams unchanged\npolicy/logs unchanged\n") << Describe(same);

  // get -o yaml gives back a document that applies as "unchanged".
  CommandResult yaml = Ctl({"policy", "get", "cams", "-o", "yaml"});
  ASSERT_EQ(yaml.exit_code, 0) << Describe(yaml);
  WriteFileOrDie(dir_.Sub("cams.yaml"), AsBytes(yaml.out));
  CommandResult round = Ctl({"policy", "apply", "-f", dir_.Sub("cams.yaml")});
  EXPECT_EQ(round.out, "policy/cams unchanged\n") << Describe(round) << yaml.out;
  WriteFileOrDie(dir_.Sub("cams.yaml"),
                 AsBytes(good.substr(0, good.find("  rpo")) + "  rpo: 3h\n"));
  CommandResult changed = Ctl({"policy", "apply", "-f", dir_.Sub("cams.yaml"), "-o", "json"});
  ASSERT_EQ(changed.exit_code, 0) << Describe(changed);
  EXPECT_EQ(Str(Arr(Json(changed), "policies")[0], "result"), "configured") << changed.out;

  CommandResult list = Ctl({"policy", "list", "-o", "json"});
  const json::value listed = Json(list);
  const json::array& policies = Arr(listed, "policies");
  ASSERT_EQ(policies.size(), 2u);
  for (const char* field : {"name", "tenant", "generation", "updated_unix", "policy"}) {
    EXPECT_TRUE(Has(policies[0], field)) << field;
  }
  CommandResult table = Ctl({"policy", "list"});
  EXPECT_NE(table.out.find("cams  site=shop"), std::string::npos) << table.out;

  ASSERT_EQ(Ctl({"policy", "delete", "logs"}).exit_code, 0);
  CommandResult gone = Ctl({"policy", "get", "logs"});
  EXPECT_EQ(gone.exit_code, 4) << Describe(gone);
  CommandResult missing_file = Ctl({"policy", "apply", "-f", dir_.Sub("nope.yaml")});
  EXPECT_EQ(missing_file.exit_code, 4) << Describe(missing_file);
}

TEST_F(FerryctlHubTest, SnapshotsAreListedShownRestoredAndVerifiedFromTheHub) {
  AddHub();
  CreateTenant("acme");
  const std::string tree = MakeTree("tree", 7);
  const std::string id1 = PushSnapshot("cam-1", tree);
  WriteFileOrDie(tree + "/sub/new.txt", SeededBytes(9, 5000));
  const std::string id2 = PushSnapshot("cam-1", tree);
  const std::string other = PushSnapshot("cam-2", MakeTree("tree2", 11));
  ASSERT_NE(id1, id2);

  CommandResult list = Ctl({"snapshot", "list", "--agent", "cam-1", "-o", "json"});
  ASSERT_EQ(list.exit_code, 0) << Describe(list);
  const json::value listed = Json(list);
  const json::array& snaps = Arr(listed, "snapshots");
  ASSERT_EQ(snaps.size(), 2u) << list.out;
  EXPECT_EQ(Str(snaps[0], "id"), id2);  // newest first
  for (const char* f : {"id", "agent", "datasets", "created", "created_unix_ns", "chunks",
                        "sealed_bytes", "logical_bytes", "labels"}) {
    EXPECT_TRUE(Has(snaps[0], f)) << f;
  }
  CommandResult all = Ctl({"snapshot", "list"});
  ASSERT_EQ(all.exit_code, 0) << Describe(all);
  EXPECT_NE(all.out.find(other.substr(0, 12)), std::string::npos) << all.out;
  CommandResult future = Ctl({"snapshot", "list", "--since", "2200-01-01", "-o", "json"});
  ASSERT_EQ(future.exit_code, 0) << Describe(future);
  EXPECT_TRUE(Arr(Json(future), "snapshots").empty());

  CommandResult show = Ctl({"snapshot", "show", id1.substr(0, 10)});
  ASSERT_EQ(show.exit_code, 0) << Describe(show);
  EXPECT_EQ(Field(show.out, "snapshot"), id1) << show.out;
  EXPECT_EQ(Field(show.out, "agent"), "cam-1") << show.out;
  CommandResult unknown = Ctl({"snapshot", "show", std::string(64, 'e')});
  EXPECT_EQ(unknown.exit_code, 4) << Describe(unknown);

  // Restore the older one by id and cam-1's latest, compare byte for byte.
  const std::string keyset = Keyset();
  CommandResult r1 = Ctl({"restore", "--keyset", keyset, id1, "--to", dir_.Sub("r1")});
  ASSERT_EQ(r1.exit_code, 0) << Describe(r1);
  EXPECT_NE(r1.err.find("restored " + id1.substr(0, 12) + " from " + url_), std::string::npos)
      << r1.err;
  CommandResult r2 = Ctl({"restore", "--keyset", keyset, "latest", "--agent", "cam-1", "--to",
                          dir_.Sub("r2"), "-o", "json"});
  ASSERT_EQ(r2.exit_code, 0) << Describe(r2);
  const json::value j2 = Json(r2);
  EXPECT_EQ(Str(j2, "id"), id2);
  EXPECT_GT(j2.at("bytes_downloaded").to_number<uint64_t>(), 0u);
  EXPECT_EQ(DiffTrees(tree, dir_.Sub("r2")), "");
  // The first restore lacks the file added after it.
  Result<bool> added = Env::Default()->FileExists(dir_.Sub("r1/sub/new.txt"));
  ASSERT_TRUE(added.ok());
  EXPECT_FALSE(*added);
  // One folder of it.
  CommandResult part =
      Ctl({"restore", "--keyset", keyset, id2, "--path", "sub", "--to", dir_.Sub("r3")});
  ASSERT_EQ(part.exit_code, 0) << Describe(part);
  EXPECT_EQ(DiffTrees(tree + "/sub", dir_.Sub("r3/sub")), "");

  CommandResult verify = Ctl({"verify", "--keyset", keyset, id2, "-o", "json"});
  ASSERT_EQ(verify.exit_code, 0) << Describe(verify);
  EXPECT_TRUE(Json(verify).at("ok").as_bool());
  EXPECT_GT(Json(verify).at("chunks_read").to_number<uint64_t>(), 0u);

  CommandResult wrong =
      Ctl({"restore", "--keyset", keyset, id1, "--to", dir_.Sub("r4")}, {"FERRY_PASSPHRASE=nope"});
  EXPECT_EQ(wrong.exit_code, 5) << Describe(wrong);
  EXPECT_NE(wrong.err.find("wrong passphrase"), std::string::npos) << wrong.err;
}

TEST_F(FerryctlHubTest, VerifyFromTheHubCatchesADamagedChunk) {
  AddHub();
  CreateTenant("acme");
  const std::string id = PushSnapshot("cam-1", MakeTree("tree", 3));
  ASSERT_EQ(hub_->Stop(SIGTERM), 0) << hub_->Log();
  // Flip one byte in the middle of every pack of the tenant's store.
  const std::string packs = data_ + "/tenants/acme/store/packs";
  std::vector<std::string> files;
  std::vector<std::string> stack = {packs};
  while (!stack.empty()) {
    const std::string d = stack.back();
    stack.pop_back();
    Result<std::vector<std::string>> names = Env::Default()->ListDir(d);
    if (!names.ok()) continue;
    for (const std::string& n : *names) {
      const std::string p = d + "/" + n;
      struct stat st;
      if (::stat(p.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        stack.push_back(p);
      } else if (st.st_size > 4096) {
        files.push_back(p);
      }
    }
  }
  ASSERT_FALSE(files.empty()) << "no packs under " << packs;
  for (const std::string& f : files) {
    Bytes b = ReadFileOrDie(f);
    b[b.size() / 2] ^= 0x40;
    WriteFileOrDie(f, b);
  }
  StartHub(port_, "hub2");  // the same port: the saved hub URL stays right
  CommandResult verify = Ctl({"verify", "--keyset", Keyset(), id});
  EXPECT_EQ(verify.exit_code, 7) << Describe(verify);
  CommandResult restore = Ctl({"restore", "--keyset", Keyset(), id, "--to", dir_.Sub("r")});
  EXPECT_EQ(restore.exit_code, 7) << Describe(restore);
}

TEST_F(FerryctlHubTest, StatusFlagsAnRpoMissedAndShowsTheLastSnapshot) {
  AddHub();
  CreateTenant("acme");
  const std::string policy =
      "apiVersion: ferry/v1\nkind: MirrorPolicy\nmetadata: {name: cams}\nspec:\n"
      "  agents: {matchLabels: {}}\n  datasets: [tree]\n"
      "  schedule: {every: 1h}\n  targets: [{hub: cloud}]\n  rpo: 1m\n";
  WriteFileOrDie(dir_.Sub("p.yaml"), AsBytes(policy));
  ASSERT_EQ(Ctl({"policy", "apply", "-f", dir_.Sub("p.yaml")}).exit_code, 0);
  // cam-1 has a fresh snapshot of the policy; cam-2 has none of it.
  const std::string id = PushSnapshot("cam-1", MakeTree("tree", 5), {"ferry.policy=cams"});
  PushSnapshot("cam-2", MakeTree("tree2", 6));
  CommandResult status = Ctl({"status", "-o", "json"});
  ASSERT_EQ(status.exit_code, 0) << Describe(status);
  const json::value v = Json(status);
  ASSERT_EQ(Arr(v, "policies").size(), 1u) << status.out;
  const json::value& p = Arr(v, "policies")[0];
  EXPECT_EQ(Str(p, "policy"), "cams");
  std::map<std::string, const json::value*> by_agent;
  for (const json::value& a : Arr(p, "agents")) by_agent[Str(a, "agent")] = &a;
  ASSERT_EQ(by_agent.size(), 2u) << status.out;
  EXPECT_TRUE(by_agent["cam-1"]->at("rpo_met").as_bool()) << status.out;
  EXPECT_EQ(Str(by_agent["cam-1"]->at("last_snapshot"), "id"), id);
  EXPECT_FALSE(by_agent["cam-2"]->at("rpo_met").as_bool()) << status.out;
  EXPECT_TRUE(by_agent["cam-2"]->at("last_snapshot").is_null()) << status.out;

  CommandResult table = Ctl({"status"});
  ASSERT_EQ(table.exit_code, 0) << Describe(table);
  EXPECT_NE(table.out.find("cams    cam-1  " + id.substr(0, 12)), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("MISSED"), std::string::npos) << table.out;
  EXPECT_NE(table.err.find("1 RPO is missed"), std::string::npos) << table.err;
}

TEST_F(FerryctlHubTest, BadHubUrlsAndUnknownHubNamesAreClearErrors) {
  CommandResult https = Ctl({"tenant", "list", "--hub", "https://hub.example", "--token", "x"});
  EXPECT_EQ(https.exit_code, 2) << Describe(https);
  EXPECT_NE(https.err.find("plain http://"), std::string::npos) << https.err;
  CommandResult junk = Ctl({"tenant", "list", "--hub", "ftp://x", "--token", "x"});
  EXPECT_EQ(junk.exit_code, 2) << Describe(junk);
  EXPECT_NE(junk.err.find("must start with http://"), std::string::npos) << junk.err;
  CommandResult name = Ctl({"tenant", "list", "--hub", "prod"});
  EXPECT_EQ(name.exit_code, 4) << Describe(name);
  EXPECT_NE(name.err.find("neither a URL nor a hub"), std::string::npos) << name.err;
}

}  // namespace
}  // namespace ferry::testing
