#include "tests/testing/fleet.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <thread>

#include "core/sqlite.h"

namespace ferry::testing {

namespace json = boost::json;

json::value ParseJson(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  EXPECT_FALSE(ec) << "not JSON: " << text.substr(0, 500);
  return ec ? json::value() : v;
}

Fleet::Fleet(std::string dir, const Options& options) : dir_(std::move(dir)) {
  hub_data_ = options.hub_data.empty() ? dir_ + "/hub" : options.hub_data;
  const HubInit init = InitHub(hub_data_);
  fingerprint_ = init.fingerprint;
  admin_ = init.admin_token;
  keyset_ = dir_ + "/tenant.keyset";
  const std::string ctl = BinDir() + "/ferryctl";
  EXPECT_EQ(RunCommand({ctl, "keys", "init", "--out", keyset_, "--argon2-memory", "8",
                        "--argon2-ops", "1"},
                       {"FERRY_PASSPHRASE=pw"})
                .exit_code,
            0);
  agent_keys_ = dir_ + "/agent.keys";
  EXPECT_EQ(RunCommand({ctl, "keys", "export-agent", "--keyset", keyset_, "--out", agent_keys_})
                .exit_code,
            0);
  agent_state_ = options.agent_state.empty() ? dir_ + "/agent-state" : options.agent_state;
}

void Fleet::StartHub() {
  const std::string port_file = dir_ + "/hub.port";
  std::remove(port_file.c_str());
  hub_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{BinDir() + "/ferry-hub", "run", "--data-dir", hub_data_, "--listen",
                               "127.0.0.1:" + std::to_string(hub_port_), "--port-file", port_file,
                               "--log-format", "text"},
      dir_ + "/hub-" + std::to_string(++hub_starts_) + ".log");
  hub_port_ = static_cast<uint16_t>(std::stoi(WaitForFile(port_file, hub_.get())));
}

void Fleet::StopHub(int signal) {
  const int code = hub_->Stop(signal);
  if (signal == SIGTERM) {
    EXPECT_EQ(code, 0) << hub_->Log();
  }
  hub_.reset();
}

HttpResult Fleet::HubApi(const std::string& method, const std::string& target,
                         const std::string& body) {
  return HttpRequest(hub_port_, method, target, body, admin_, "application/json");
}

void Fleet::CreateTenant() {
  HttpResult r = HubApi("POST", "/v1/tenants", R"({"name":"edge"})");
  EXPECT_EQ(r.status, 201) << r.body;
}

void Fleet::ConfigureAgent(const std::string& extra, uint16_t link_port) {
  config_ = dir_ + "/agent.yaml";
  const std::string y = "agent: {name: cam-1}\nstateDir: " + agent_state_ +
                        "\nhubs:\n  - {name: hub-a, url: \"ws://127.0.0.1:" +
                        std::to_string(link_port != 0 ? link_port : hub_port_) +
                        "\"}\nkeyset: {file: " + agent_keys_ +
                        "}\napi: {listen: \"127.0.0.1:0\"}\n"
                        "replication: {backoffInitial: 200ms, backoffMax: 1s}\n" +
                        extra;
  WriteFileOrDie(config_, AsBytes(y));
  HttpResult token = HubApi("POST", "/v1/tenants/edge/enrollment-tokens", "{}");
  ASSERT_EQ(token.status, 201) << token.body;
  CommandResult r =
      RunCommand({BinDir() + "/ferry-agent", "enroll", "--config", config_, "--hub",
                  "ws://127.0.0.1:" + std::to_string(hub_port_), "--hub-key", fingerprint_,
                  "--token", std::string(ParseJson(token.body).at("token").as_string())});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
}

void Fleet::StartAgent() {
  const std::string port_file = agent_state_ + "/api.port";
  std::remove(port_file.c_str());
  agent_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{BinDir() + "/ferry-agent", "run", "--config", config_,
                               "--log-format", "text"},
      dir_ + "/agent-" + std::to_string(++agent_starts_) + ".log");
  agent_port_ = static_cast<uint16_t>(std::stoi(WaitForFile(port_file, agent_.get())));
}

void Fleet::StopAgent(int signal) {
  const int code = agent_->Stop(signal);
  if (signal == SIGTERM) {
    EXPECT_EQ(code, 0) << agent_->Log();
  }
  agent_.reset();
}

HttpResult Fleet::AgentApi(const std::string& method, const std::string& target,
                           const std::string& body, const std::string& type) {
  return HttpRequest(agent_port_, method, target, body, "", type);
}

json::value Fleet::AgentStatus() {
  HttpResult r = AgentApi("GET", "/v1/status");
  if (r.status != 200) return json::value();
  return ParseJson(r.body);
}

CommandResult Fleet::Ctl(std::vector<std::string> args, bool hub) {
  args.insert(args.begin(), BinDir() + "/ferryctl");
  if (hub) {
    for (const std::string& a : {std::string("--hub"), hub_http(), std::string("--token"), admin_,
                                 std::string("--tenant"), std::string("edge")}) {
      args.push_back(a);
    }
  }
  return RunCommand(args, {"FERRY_PASSPHRASE=pw"});
}

bool Fleet::WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string Fleet::Logs() {
  std::string out;
  if (agent_) out += "agent log:\n" + agent_->Log() + "\n";
  if (hub_) out += "hub log:\n" + hub_->Log() + "\n";
  return out;
}

int Fleet::ExpectDatabasesIntact() {
  int checked = 0;
  for (const std::string& db :
       {hub_data_ + "/catalog.db", hub_data_ + "/tenants/edge/store/index.db",
        agent_state_ + "/agent.db", agent_state_ + "/outbox/index.db"}) {
    auto opened = sqlite::Database::Open(db, {.read_only = true, .create = false});
    EXPECT_TRUE(opened.ok()) << db << ": " << opened.status().ToString();
    if (!opened.ok()) continue;
    EXPECT_TRUE((*opened)->IntegrityCheck().ok()) << "integrity_check of " << db;
    ++checked;
  }
  return checked;
}

Fleet::OutboxCheck Fleet::VerifyOutbox() {
  OutboxCheck check;
  const std::string outbox = agent_state_ + "/outbox";
  CommandResult list = Ctl({"snapshot", "list", "--store", outbox, "--json"}, false);
  EXPECT_EQ(list.exit_code, 0) << list.err;
  if (list.exit_code != 0) return check;
  const boost::json::value in_outbox = ParseJson(list.out);
  if (!in_outbox.is_array()) return check;
  for (const boost::json::value& snap : in_outbox.as_array()) {
    const std::string id(snap.at("id").as_string());
    CommandResult v = Ctl({"verify", "--store", outbox, "--keyset", keyset_, id}, false);
    if (v.exit_code == 0) {
      ++check.intact;
    } else {
      EXPECT_NE(v.err.find("was reclaimed from this store"), std::string::npos)
          << "outbox snapshot " << id << ": " << v.err;
      ++check.reclaimed;
    }
  }
  return check;
}

}  // namespace ferry::testing
