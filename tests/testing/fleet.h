// Fleet: a real ferry-hub and a real ferry-agent on loopback, for tests that
// drive both processes: the hub's data dir initialized with a tenant
// ("edge"), a tenant keyset (passphrase "pw") and the agent's key file, the
// agent's config written and enrolled, both processes started, stopped,
// killed and restarted, and their APIs and ferryctl at hand. Everything
// lives under one directory (a TempDir's path).
//
// The agent is "cam-1", its hub "hub-a"; the config declares what the test
// passes as extra YAML (datasets, streams, policies). Its link URL may point
// at a relay in front of the hub (link_port).
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tests/testing/http_client.h"
#include "tests/testing/process.h"
#include "tests/testing/test_util.h"

namespace ferry::testing {

class Fleet {
 public:
  struct Options {
    std::string hub_data;     // default DIR/hub (e.g. on a small filesystem)
    std::string agent_state;  // default DIR/agent-state
  };
  // Initializes the hub's data dir and the keys under `dir`; starts nothing.
  explicit Fleet(std::string dir) : Fleet(std::move(dir), Options{}) {}
  Fleet(std::string dir, const Options& options);

  // --- hub ---
  // Starts the hub (on its previous port after the first start).
  void StartHub();
  // Sends `signal` (SIGTERM: a clean stop, expected to exit 0; SIGKILL: a
  // crash) and waits for the exit.
  void StopHub(int signal);
  uint16_t hub_port() const { return hub_port_; }
  std::string hub_http() const { return "http://127.0.0.1:" + std::to_string(hub_port_); }
  const std::string& hub_data() const { return hub_data_; }
  const std::string& admin_token() const { return admin_; }
  ChildProcess* hub() { return hub_.get(); }
  // A request with the admin token.
  HttpResult HubApi(const std::string& method, const std::string& target,
                    const std::string& body = "");
  // Creates the tenant "edge" (once, with the hub running).
  void CreateTenant();

  // --- agent ---
  // Writes agent.yaml (hub-a reached at `link_port`, 0 = the hub's port)
  // with `extra` top-level YAML, and enrolls the agent directly with the
  // hub (which must be running).
  void ConfigureAgent(const std::string& extra, uint16_t link_port = 0);
  void StartAgent();
  void StopAgent(int signal);
  uint16_t agent_port() const { return agent_port_; }
  ChildProcess* agent() { return agent_.get(); }
  const std::string& agent_state() const { return agent_state_; }
  HttpResult AgentApi(const std::string& method, const std::string& target,
                      const std::string& body = "", const std::string& type = "application/json");
  // GET /v1/status, parsed (null if the agent does not answer).
  boost::json::value AgentStatus();

  // --- ferryctl ---
  // ferryctl with FERRY_PASSPHRASE set; `hub` appends --hub, --token and
  // --tenant edge for the hub.
  CommandResult Ctl(std::vector<std::string> args, bool hub = true);
  const std::string& keyset() const { return keyset_; }

  // Polls `condition` (a separate process's state) every 50 ms until it
  // holds or `timeout` passes; returns whether it held.
  static bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

  // Both logs, for failure messages.
  std::string Logs();

  // --- checks a fault suite ends with, both daemons stopped ---
  // Every SQLite file of both (hub catalog, hub store index, agent.db, outbox
  // index) passes integrity_check; a failure fails the test. Returns how
  // many files were checked.
  int ExpectDatabasesIntact();
  // Verifies every snapshot in the agent's outbox: each one verifies, or says
  // exactly that its chunks were reclaimed (delivered) — never that one is
  // missing or damaged (a failure fails the test).
  struct OutboxCheck {
    int intact = 0;
    int reclaimed = 0;
  };
  OutboxCheck VerifyOutbox();

 private:
  const std::string dir_;
  std::string hub_data_, fingerprint_, admin_, keyset_, agent_keys_, config_, agent_state_;
  std::unique_ptr<ChildProcess> hub_, agent_;
  uint16_t hub_port_ = 0, agent_port_ = 0;
  int hub_starts_ = 0, agent_starts_ = 0;
};

// Parses JSON, failing the test (and returning null) when it is not.
boost::json::value ParseJson(const std::string& text);

}  // namespace ferry::testing
