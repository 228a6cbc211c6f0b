// StreamShipper: one per hub. Keeps a link session of its own to the hub
// (beside the Replicator's, so that a long snapshot upload never delays
// stream records) and ships every stream's durable records to it as sealed
// batches (snapshot/stream_batch.h) as soon as they are durable.
//
// On each session it first asks the hub where its copy of each stream ends
// (StreamQuery) and resumes exactly there: after a cut nothing the hub
// acknowledged is sent again, and nothing is skipped. Up to kMaxInFlight
// batches travel at once; each StreamAck goes to Streams::Acknowledged
// (retention). A hub that lacks records the agent no longer holds, or holds
// more than the agent has, stops that stream (the status says why); the
// others go on.
//
// Batches are sealed under a data key made per session (rotated every
// kBatchesPerKey batches), wrapped to the tenant public key, and signed with
// the agent's signing key; the hub accepts only the key it enrolled.
//
// Thread-safety: thread-safe; one thread of its own.
#pragma once

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "edge-agent/agent_config.h"
#include "edge-agent/backoff.h"
#include "edge-agent/replicator.h"
#include "edge-agent/streams.h"
#include "mirror/identity.h"
#include "snapshot/keyset.h"

namespace ferry::agent {

struct ShipperDeps {
  const AgentConfig* config = nullptr;
  const mirror::StaticIdentity* identity = nullptr;
  const snapshot::Keyset* keyset = nullptr;
  Streams* streams = nullptr;
  HubLink hub;
};

class StreamShipper {
 public:
  static constexpr size_t kMaxInFlight = 4;
  // Payload bytes per batch (a record larger than this travels alone).
  static constexpr size_t kBatchBytes = 1u << 20;
  static constexpr size_t kBatchRecords = 65536;
  static constexpr uint64_t kBatchesPerKey = 4096;

  explicit StreamShipper(ShipperDeps deps);
  ~StreamShipper();
  StreamShipper(const StreamShipper&) = delete;
  StreamShipper& operator=(const StreamShipper&) = delete;

  void Start();
  // Ends the session and the thread; batches in flight are sent again by
  // the next session if their ack did not arrive.
  void Stop();

  // {"hub", "connected", "state", "last_error", "last_error_unix",
  //  "streams": {name: {"acked": N, "blocked": "..."}}, "batches", "records", "reconnects",
  //  "failed_sessions"}
  boost::json::object StatusJson() const;

 private:
  struct Session;
  void Loop();
  // One session, until it fails or Stop. Returns why it ended.
  Status RunSession();
  Status StartStreams(Session& session);
  // Sends what is durable and not yet sent, within the in-flight limit.
  // Returns whether anything was sent.
  Result<bool> SendMore(Session& session);
  Status AwaitOldestAck(Session& session);
  void SetError(const std::string& error);
  bool stopping() const;

  const ShipperDeps deps_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                                           // guarded by mu_
  std::string state_ = "starting";                              // guarded by mu_
  std::string last_error_;                                      // guarded by mu_
  int64_t last_error_unix_ = 0;                                 // guarded by mu_
  std::map<std::string, uint64_t> acked_;                       // guarded by mu_
  std::map<std::string, std::string> blocked_;                  // guarded by mu_
  std::shared_ptr<mirror::transport::LinkConnection> current_;  // guarded by mu_
  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> batches_{0};  // acknowledged by the hub, all sessions
  std::atomic<uint64_t> records_{0};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<uint64_t> failed_sessions_{0};
  std::thread thread_;
};

}  // namespace ferry::agent
