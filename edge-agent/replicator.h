// Replicator: one per configured hub. Keeps a link session to it (for the
// policies the hub pushes, and for uploads), and delivers the outbox's
// snapshots queued for that hub, strictly in capture order, with the link's
// replication engine (only the chunks the hub lacks travel; a cut resumes by
// asking again). While the hub is unreachable it retries with exponential
// backoff and jitter; once it has been down for replication.failoverAfter,
// the snapshots go to the next configured hub (in the config's order) until
// it is back, and are recorded as committed there.
//
// The failover hub is expected to hold what the target holds (a mirror of
// it): chunks the outbox reclaimed once the target had them are not sent
// again. A failover hub that lacks them cannot take the snapshot; the
// status says so and the snapshot waits for its target.
//
// A snapshot is marked committed only on the hub's CommitAck. A failed
// attempt stays queued (never dropped) and is retried; its reason is shown in
// the status.
//
// On each session with its own hub (not a failover hub) whose HelloAck lists
// the "agent_report" capability, it reports what the hub cannot know: the
// snapshots and bytes still to deliver to that hub and the agent's last error
// (this replicator's, or a failed run of a policy that targets the hub,
// whichever is newer). One report right after the HelloAck, then one
// whenever the values change, at most one every kReportMinInterval
// (coalesced), sent from this replicator's thread between the frames of the
// session (docs/format/link.md, "Agent report").
//
// Thread-safety: thread-safe; one thread of its own.
#pragma once

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "edge-agent/agent_config.h"
#include "edge-agent/agent_state.h"
#include "edge-agent/backoff.h"
#include "mirror/identity.h"
#include "mirror/replication/frame_channel.h"
#include "mirror/replication/token_bucket.h"
#include "mirror/transport/link_connection.h"
#include "snapshot/local_store.h"

namespace ferry::agent {

// A hub the agent may talk to: its URL and the pinned key.
struct HubLink {
  std::string name;
  std::string url;
  std::string fingerprint;
};

// An error with the time it happened (Unix seconds, real clock); empty = none.
struct AgentError {
  std::string message;
  int64_t unix = 0;
};

struct ReplicatorDeps {
  const AgentConfig* config = nullptr;
  const mirror::StaticIdentity* identity = nullptr;
  AgentState* state = nullptr;
  snapshot::LocalStore* outbox = nullptr;
  std::vector<HubLink> hubs;  // every enrolled hub, in the config's order
  // A hub sent its policies (called on the replicator's thread).
  std::function<void(const std::string& hub, const mirror::linkpb::PolicySync&)> on_policy_sync;
  // A delivery was committed.
  std::function<void()> on_committed;
  // The upload limit in force now for a policy's snapshots (0 = unlimited).
  std::function<uint64_t(const std::string& policy)> bandwidth_for;
  // The newest failed run of a policy that targets `hub` and has not run
  // well since (empty: none). Called on the replicator's thread. Optional.
  std::function<AgentError(const std::string& hub)> run_error_for;
};

class Replicator {
 public:
  Replicator(ReplicatorDeps deps, std::string hub);
  ~Replicator();
  Replicator(const Replicator&) = delete;
  Replicator& operator=(const Replicator&) = delete;

  const std::string& hub() const { return hub_; }
  void Start();
  // Ends the session and the thread (an upload in progress is cut; it
  // resumes on the next start).
  void Stop();
  // New work is queued.
  void Wake();
  // Re-reads the bandwidth limit (windows change with the time of day).
  void RefreshBandwidth();
  // Something the hub's report shows may have changed (a policy run failed
  // or went well again): the next report is built within
  // kReportMinInterval. Cheap; any thread.
  void ReportChanged() { report_dirty_.store(true); }

  // Reports are coalesced to at most one per this interval per session;
  // without a known change they are rebuilt (and sent only if different)
  // every kReportRecheck.
  static constexpr std::chrono::milliseconds kReportMinInterval{2000};
  static constexpr std::chrono::milliseconds kReportRecheck{30000};

  // {"hub", "connected", "endpoint", "state", "last_error", "down_since_unix",
  //  "last_error_unix", "current": {...}, "commits", "bytes_sent", "reconnects"}
  boost::json::object StatusJson() const;
  uint64_t bytes_sent() const { return bytes_sent_total_.load(); }
  uint64_t commits() const { return commits_.load(); }
  bool connected() const { return connected_.load(); }

 private:
  struct Session;
  void Loop();
  // Connects to the hub, or to the failover hub when the hub has been down
  // long enough. Null on failure (status updated).
  std::unique_ptr<Session> Connect();
  std::unique_ptr<Session> ConnectTo(const HubLink& link, bool failover);
  // Pushes one delivery. Returns false if the session must be dropped.
  bool Deliver(Session& session, const Delivery& delivery);
  void Backoff();
  void SetError(const std::string& error);
  void SetErrorLocked(const std::string& error);  // mu_ held
  // On this thread, from the sender (SenderOptions::unsolicited): the
  // AgentReport to send on `session` now, if one is due and the values
  // differ from the last one sent on it.
  std::vector<mirror::linkpb::Envelope> MaybeReport(Session& session);
  AgentError LastError();
  const HubLink* Find(const std::string& name) const;

  const ReplicatorDeps deps_;
  const std::string hub_;
  mirror::TokenBucket bucket_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool wake_ = false;
  std::string state_ = "starting";  // guarded by mu_
  std::string endpoint_;            // guarded by mu_
  std::string last_error_;          // guarded by mu_
  int64_t last_error_unix_ = 0;     // guarded by mu_ (real Unix s; 0 with no error)
  int64_t down_since_ = 0;          // guarded by mu_ (real Unix s; 0 = up)
  std::string current_policy_;      // guarded by mu_
  boost::json::object current_;     // guarded by mu_
  std::shared_ptr<mirror::transport::LinkConnection> current_connection_;  // guarded by mu_
  uint64_t current_wire_start_ = 0;                                        // guarded by mu_
  ReconnectBackoff backoff_;                                               // guarded by mu_
  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> bytes_sent_total_{0};
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<bool> report_dirty_{true};
  std::thread thread_;
};

}  // namespace ferry::agent
