// The link between two real processes: a serving ferry-link-peer (the hub's
// side: identity, store, enrolled agents, join tokens) and pushing ones (the
// agent's side), over loopback TCP, with ferryctl making and restoring the
// snapshots. Covers enrollment and its refusals, pinning, signer checks, and
// resumption after the connection is cut mid-upload.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <string>
#include <vector>

#include "tests/testing/process.h"
#include "tests/testing/test_util.h"

namespace ferry::testing {
namespace {

// The last line of stdout, parsed (push prints one JSON report).
boost::json::object LastJson(const CommandResult& r) {
  std::string out = Trim(r.out);
  const size_t nl = out.rfind('\n');
  if (nl != std::string::npos) out = out.substr(nl + 1);
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(out, ec);
  EXPECT_FALSE(ec) << "not JSON: " << r.out << "\nstderr: " << r.err;
  return ec || !v.is_object() ? boost::json::object() : v.as_object();
}

uint64_t U64(const boost::json::object& o, const char* key) {
  const boost::json::value* v = o.if_contains(key);
  return v && v->is_int64() ? static_cast<uint64_t>(v->as_int64())
                            : (v && v->is_uint64() ? v->as_uint64() : 0);
}

class LinkProcessesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    peer_ = BinDir() + "/ferry-link-peer";
    ctl_ = BinDir() + "/ferryctl";
    state_ = dir_.Sub("hub");
    CommandResult init = RunCommand({peer_, "init", "--state", state_});
    ASSERT_EQ(init.exit_code, 0) << init.err;
    hub_key_ = Trim(init.out);
    // A fast Argon2 setting: the tests are not about the passphrase.
    keyset_ = dir_.Sub("tenant.keyset");
    CommandResult keys = RunCommand(
        {ctl_, "keys", "init", "--out", keyset_, "--argon2-memory", "8", "--argon2-ops", "1"},
        {"FERRY_PASSPHRASE=pw"});
    ASSERT_EQ(keys.exit_code, 0) << keys.err;
    agent_keys_ = dir_.Sub("agent.keys");
    CommandResult exp =
        RunCommand({ctl_, "keys", "export-agent", "--keyset", keyset_, "--out", agent_keys_});
    ASSERT_EQ(exp.exit_code, 0) << exp.err;
  }

  std::string AddToken(int ttl_seconds = 3600) {
    CommandResult r = RunCommand({peer_, "add-token", "--state", state_, "--tenant", "acme",
                                  "--ttl", std::to_string(ttl_seconds)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return Trim(r.out);
  }

  void StartHub(std::vector<std::string> extra = {}) {
    const std::string port_file = dir_.Sub("hub.port");
    std::remove(port_file.c_str());
    std::vector<std::string> argv = {peer_, "serve", "--state", state_, "--port-file", port_file};
    argv.insert(argv.end(), extra.begin(), extra.end());
    hub_ = std::make_unique<ChildProcess>(argv, dir_.Sub("hub.log"));
    port_ = static_cast<uint16_t>(std::stoi(WaitForFile(port_file, hub_.get())));
  }
  void StopHub() { ASSERT_EQ(hub_->Stop(SIGTERM), 0) << hub_->Log(); }
  std::string HubUrl(uint16_t port = 0) {
    return "ws://127.0.0.1:" + std::to_string(port ? port : port_);
  }

  CommandResult Enroll(const std::string& key_file, const std::string& token,
                       const std::string& keys_file = "") {
    return RunCommand({peer_, "enroll", "--key", key_file, "--hub", HubUrl(), "--hub-key", hub_key_,
                       "--token", token, "--name", "edge-1", "--keyset",
                       keys_file.empty() ? agent_keys_ : keys_file});
  }
  CommandResult Push(const std::string& key_file, const std::string& store,
                     std::vector<std::string> extra = {}, uint16_t port = 0) {
    std::vector<std::string> argv = {peer_,        "push",      "--key",  key_file,  "--hub",
                                     HubUrl(port), "--hub-key", hub_key_, "--store", store};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv);
  }

  // Captures `tree` into a new agent-side store with the agent key file.
  std::string Snapshot(const std::string& tree, const std::string& store,
                       const std::string& keys_file = "") {
    CommandResult r = RunCommand({ctl_, "snapshot", "create", "--store", store, "--keyset",
                                  keys_file.empty() ? agent_keys_ : keys_file, tree});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::string out = Trim(r.out);
    return out.substr(out.rfind('\n') + 1);
  }

  void ExpectHubRestores(const std::string& snapshot, const std::string& tree) {
    const std::string out = dir_.Sub("restored");
    CommandResult r = RunCommand(
        {ctl_, "restore", "--store", state_ + "/store", "--keyset", keyset_, "--to", out, snapshot},
        {"FERRY_PASSPHRASE=pw"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(DiffTrees(tree, out), "");
  }

  std::string MakeTree(const std::string& name, int files, size_t size, uint64_t seed) {
    const std::string root = dir_.Sub(name);
    MakeDirsOrDie(root + "/sub");
    for (int i = 0; i < files; ++i) {
      WriteFileOrDie(root + (i % 2 ? "/sub/f" : "/f") + std::to_string(i),
                     i % 3 ? SeededBytes(seed + i, size) : CompressibleBytes(seed + i, size, 0.4));
    }
    return root;
  }

  TempDir dir_;
  std::string peer_, ctl_, state_, hub_key_, keyset_, agent_keys_;
  std::unique_ptr<ChildProcess> hub_;
  uint16_t port_ = 0;
};

TEST_F(LinkProcessesTest, EnrolledAgentPushesAndTheHubRestoresByteForByte) {
  const std::string token = AddToken();
  StartHub();
  const std::string tree = MakeTree("tree", 12, 300'000, 1);
  const std::string store = dir_.Sub("agent-store");
  const std::string snap = Snapshot(tree, store);
  const std::string key = dir_.Sub("agent.key");

  CommandResult enroll = Enroll(key, token);
  ASSERT_EQ(enroll.exit_code, 0) << enroll.err;
  EXPECT_NE(enroll.out.find("tenant acme"), std::string::npos) << enroll.out;

  CommandResult push = Push(key, store);
  ASSERT_EQ(push.exit_code, 0) << push.err << hub_->Log();
  boost::json::object report = LastJson(push);
  EXPECT_EQ(report["snapshot"].as_string(), snap);
  EXPECT_GT(U64(report, "chunks_sent"), 0u);
  EXPECT_EQ(U64(report, "chunks_sent"), U64(report, "chunks_referenced"));
  // Everything on the wire is ciphertext of at least the sealed bytes.
  EXPECT_GE(U64(report, "wire_bytes_sent"), U64(report, "bytes_sent"));

  // Again: the hub has it all; nothing is uploaded.
  CommandResult again = Push(key, store);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  boost::json::object second = LastJson(again);
  EXPECT_EQ(U64(second, "chunks_sent"), 0u);
  EXPECT_TRUE(second["already_present"].as_bool());

  StopHub();
  ExpectHubRestores(snap, tree);
}

TEST_F(LinkProcessesTest, UnknownAgentKeyIsRefusedEverythingButEnrollment) {
  StartHub();
  const std::string store = dir_.Sub("agent-store");
  Snapshot(MakeTree("tree", 2, 50'000, 2), store);
  CommandResult push = Push(dir_.Sub("stranger.key"), store);
  EXPECT_EQ(push.exit_code, 1);
  EXPECT_NE(push.err.find("PERMISSION_DENIED"), std::string::npos) << push.err;
  EXPECT_NE(push.err.find("join token"), std::string::npos) << push.err;
  EXPECT_EQ(U64(LastJson(push), "chunks_sent"), 0u);
  // The hub logged the unknown key.
  StopHub();
  EXPECT_NE(hub_->Log().find("unknown key"), std::string::npos) << hub_->Log();
}

TEST_F(LinkProcessesTest, WrongPinnedHubKeyIsRefusedNamingBothFingerprints) {
  StartHub();
  const std::string other = Trim(RunCommand({peer_, "init", "--state", dir_.Sub("other")}).out);
  const std::string store = dir_.Sub("agent-store");
  Snapshot(MakeTree("tree", 1, 10'000, 3), store);
  CommandResult push = RunCommand({peer_, "push", "--key", dir_.Sub("agent.key"), "--hub", HubUrl(),
                                   "--hub-key", other, "--store", store});
  EXPECT_EQ(push.exit_code, 1);
  EXPECT_NE(push.err.find("UNAUTHENTICATED"), std::string::npos) << push.err;
  EXPECT_NE(push.err.find(other), std::string::npos) << push.err;
  EXPECT_NE(push.err.find(hub_key_), std::string::npos) << push.err;
}

TEST_F(LinkProcessesTest, JoinTokensAreOneTimeAndExpire) {
  const std::string token = AddToken();
  const std::string expired = AddToken(-10);
  StartHub();

  CommandResult unknown = Enroll(dir_.Sub("a.key"), "fjt1-not-a-token");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("PERMISSION_DENIED: peer: join token is not valid"), std::string::npos)
      << unknown.err;

  CommandResult late = Enroll(dir_.Sub("a.key"), expired);
  EXPECT_EQ(late.exit_code, 1);
  EXPECT_NE(late.err.find("join token expired"), std::string::npos) << late.err;

  ASSERT_EQ(Enroll(dir_.Sub("a.key"), token).exit_code, 0);
  CommandResult reused = Enroll(dir_.Sub("b.key"), token);
  EXPECT_EQ(reused.exit_code, 1);
  EXPECT_NE(reused.err.find("join token was already used"), std::string::npos) << reused.err;

  // Enrollment survives a restart of the hub; the spent token stays spent.
  StopHub();
  StartHub();
  const std::string store = dir_.Sub("agent-store");
  Snapshot(MakeTree("tree", 1, 10'000, 4), store);
  EXPECT_EQ(Push(dir_.Sub("a.key"), store).exit_code, 0);
  EXPECT_EQ(Push(dir_.Sub("b.key"), store).exit_code, 1);
  EXPECT_EQ(Enroll(dir_.Sub("c.key"), token).exit_code, 1);
}

TEST_F(LinkProcessesTest, CommitSignedByAnotherAgentsKeyIsRefused) {
  const std::string token = AddToken();
  StartHub();
  const std::string key = dir_.Sub("agent.key");
  ASSERT_EQ(Enroll(key, token).exit_code, 0);
  // A snapshot signed by a different agent key file of the same tenant.
  const std::string other_keys = dir_.Sub("other-agent.keys");
  ASSERT_EQ(RunCommand({ctl_, "keys", "export-agent", "--keyset", keyset_, "--out", other_keys})
                .exit_code,
            0);
  const std::string store = dir_.Sub("agent-store");
  Snapshot(MakeTree("tree", 2, 40'000, 5), store, other_keys);
  CommandResult push = Push(key, store);
  EXPECT_EQ(push.exit_code, 1);
  EXPECT_NE(push.err.find("PERMISSION_DENIED"), std::string::npos) << push.err;
  EXPECT_NE(push.err.find("signing key"), std::string::npos) << push.err;
  StopHub();
  // Nothing was committed.
  CommandResult list =
      RunCommand({ctl_, "snapshot", "list", "--json", "--store", state_ + "/store"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  boost::json::value listed = boost::json::parse(list.out);
  ASSERT_TRUE(listed.is_array()) << list.out;
  EXPECT_TRUE(listed.as_array().empty()) << list.out;
}

// The link drops every few MiB (a TCP reset in the middle of the upload);
// each new push asks again what is missing, so across all attempts the
// chunks sent are what the hub lacked at the start plus at most one
// in-flight window per cut.
TEST_F(LinkProcessesTest, PushResumesAfterCutsSendingOnlyWhatIsMissing) {
  const std::string token = AddToken();
  constexpr uint64_t kWindow = 256 << 10;
  StartHub({"--upload-window", std::to_string(kWindow)});
  const std::string key = dir_.Sub("agent.key");
  ASSERT_EQ(Enroll(key, token).exit_code, 0);

  // One 24 MiB incompressible file: chunks of 16 KiB (the minimum) or more,
  // all distinct, so the window holds at most kWindow / 16 KiB of them.
  const std::string tree = dir_.Sub("tree");
  MakeDirsOrDie(tree);
  WriteFileOrDie(tree + "/big", SeededBytes(6, 24 << 20));
  const std::string store = dir_.Sub("agent-store");
  const std::string snap = Snapshot(tree, store);

  CuttingRelay relay(port_);
  relay.SetCutAfterBytes(5 << 20);
  uint64_t sent = 0, referenced = 0;
  int attempts = 0;
  bool done = false;
  while (!done && attempts < 20) {
    ++attempts;
    CommandResult push = Push(key, store, {"--upload-batch", "65536"}, relay.port());
    boost::json::object r = LastJson(push);
    sent += U64(r, "chunks_sent");
    referenced = std::max(referenced, U64(r, "chunks_referenced"));
    done = push.exit_code == 0;
    if (!done) {
      EXPECT_NE(push.err.find("UNAVAILABLE"), std::string::npos) << push.err;
    }
  }
  ASSERT_TRUE(done) << "push did not complete in " << attempts << " attempts\n" << hub_->Log();
  EXPECT_GE(relay.cuts(), 4) << "the link was not cut as intended";
  EXPECT_EQ(relay.cuts(), attempts - 1);
  const uint64_t window_chunks = kWindow / (16 << 10) + 1;
  std::printf("%d attempts, %d cuts: %llu chunks sent for %llu referenced\n", attempts,
              relay.cuts(), static_cast<unsigned long long>(sent),
              static_cast<unsigned long long>(referenced));
  EXPECT_GE(sent, referenced);
  EXPECT_LE(sent, referenced + static_cast<uint64_t>(relay.cuts()) * window_chunks)
      << "sent " << sent << " chunks for " << referenced << " referenced across " << relay.cuts()
      << " cuts";

  StopHub();
  ExpectHubRestores(snap, tree);
}

}  // namespace
}  // namespace ferry::testing
