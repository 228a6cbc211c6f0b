// LocalApi: the agent's HTTP API on loopback or a unix socket (docs/api.md,
// "Agent local API"):
//   POST /v1/snapshots   {"policy": P} | {"dataset": D} | {}  run now, wait, report
//   GET  /v1/status      what the agent is doing (Agent::StatusJson)
//   GET  /metrics        Prometheus text format
//   GET  /healthz        "ok"
// No authentication: it only listens where local users are trusted (a
// loopback address, or a unix socket whose file mode decides who may talk).
// Bad requests get a JSON error {"error":{"code","message"}}.
//
// Also the client side, for `ferry-agent snapshot` and `status`.
// Thread-safety: thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "core/status.h"
#include "edge-agent/agent.h"

namespace ferry::agent {

class LocalApi {
 public:
  // Binds the API of `config.api` and serves `agent` on a thread of its own.
  // With a TCP port of 0, the bound port is written to `port_file`.
  static Result<std::unique_ptr<LocalApi>> Start(Agent& agent, const ApiConfig& config,
                                                 const std::string& port_file);
  ~LocalApi();
  void Stop();
  uint16_t port() const { return port_; }

  struct Impl;

 private:
  LocalApi() = default;
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

struct ApiResponse {
  int status = 0;
  std::string body;
};

// One request to a running agent's API. kUnavailable when no agent answers
// (nothing listening).
Result<ApiResponse> CallLocalApi(const ApiConfig& config, const std::string& port_file,
                                 const std::string& method, const std::string& target,
                                 const std::string& body, std::chrono::seconds timeout);

}  // namespace ferry::agent
