// Agent: one running ferry-agent — its state dir, the outbox store, the
// scheduler that runs mirror policies (hooks, capture in one cut, queue for
// every target), one Replicator per enrolled hub, and what the local API
// shows (status, metrics).
//
// State dir (docs/data-dir.md, "Agent"): agent.key (link identity, 0600),
// agent.db (AgentState), outbox/ (a LocalStore), agent.lock, api.port.
//
// Scheduling: each policy's next run comes from its schedule in its time
// zone (mirror/policy/schedule.h). A policy seen for the first time runs at
// once (its RPO clock starts now). Runs of the agent's policies are
// serialized, so one policy never overlaps itself: schedule instants that
// pass while a run is still going are skipped and counted. A run interrupted
// by a crash is run again at start. When the outbox holds more than
// limits.outboxQuota of snapshots waiting for targets, capture pauses (status,
// log, metric) and resumes once deliveries free space; nothing queued is
// ever dropped.
//
// Thread-safety: thread-safe.
#pragma once

#include <atomic>
#include <boost/json.hpp>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "edge-agent/agent_clock.h"
#include "edge-agent/agent_config.h"
#include "edge-agent/agent_state.h"
#include "edge-agent/replicator.h"
#include "edge-agent/stream_shipper.h"
#include "edge-agent/streams.h"
#include "mirror/identity.h"
#include "mirror/policy/mirror_policy.h"
#include "snapshot/keyset.h"
#include "snapshot/local_store.h"

namespace ferry::agent {

// The files of a state dir.
struct StatePaths {
  std::string dir;
  std::string Identity() const { return dir + "/agent.key"; }
  std::string Database() const { return dir + "/agent.db"; }
  std::string Outbox() const { return dir + "/outbox"; }
  std::string Lock() const { return dir + "/agent.lock"; }
  std::string ApiPort() const { return dir + "/api.port"; }
};

// The outbox's LocalStore options for a memory budget: packs small enough
// that the packs in flight stay a fraction of it.
snapshot::LocalStoreOptions OutboxOptions(const Limits& limits);

struct RunResult {
  std::string policy;
  std::string cut;
  struct Captured {
    std::string dataset;
    std::string snapshot;  // hex id
    uint64_t new_sealed_bytes = 0;
  };
  std::vector<Captured> snapshots;
  Status status;
};

// {"runs":[{"policy","cut","snapshots":[{"dataset","snapshot","new_sealed_bytes"}],
//   "error":{"code","message"} (only for a failed run)}]}: the answer of
// POST /v1/snapshots (docs/api.md).
boost::json::object RunResultsJson(const std::vector<RunResult>& runs);

class Agent {
 public:
  struct Options {
    double time_scale = 1.0;  // AgentClock (tests only)
    bool replicate = true;    // false: capture only (`ferry-agent snapshot` without a daemon)
  };
  static Result<std::unique_ptr<Agent>> Start(AgentConfig config, Options options);
  ~Agent();

  // Stops the scheduler (a capture in progress finishes first) and the
  // replicators, and flushes the outbox. Idempotent.
  Status Stop();

  // Runs `policy` now (empty: every policy that holds `dataset`, or every
  // policy when both are empty) and waits for the runs to finish.
  // kNotFound for an unknown policy or a dataset no policy holds.
  Result<std::vector<RunResult>> RunNow(const std::string& policy, const std::string& dataset);

  boost::json::object StatusJson();
  std::string MetricsText();
  const AgentConfig& config() const { return config_; }
  // The configured streams (empty when agent.yaml declares none).
  Streams& streams() { return *streams_; }

 private:
  struct PolicyEntry {
    mirror::MirrorPolicy policy;
    std::string source;  // "local" or the hub it came from
  };
  struct Request {
    std::vector<std::string> policies;
    bool done = false;
    std::vector<RunResult> results;
  };

  Agent(AgentConfig config, Options options);
  Status Init();
  Status Reconcile();
  void SchedulerLoop();
  // Builds the list of policies in force: local ones selecting this agent,
  // then each hub's (first hub in config order wins a name).
  void ReloadPolicies();
  std::vector<PolicyEntry> Policies();
  RunResult RunPolicy(const mirror::MirrorPolicy& policy, bool scheduled, int64_t due);
  bool OutboxFull(uint64_t* used);
  void OnPolicySync(const std::string& hub, const mirror::linkpb::PolicySync& sync);
  void OnCommitted();
  // Frees the outbox packs no pending snapshot needs (rate-limited unless
  // `force`).
  void Reclaim(bool force);
  uint64_t BandwidthFor(const std::string& policy);
  // The newest failed run among the policies that target `hub` (for the
  // replicators' reports to hubs).
  AgentError RunErrorFor(const std::string& hub);

  const AgentConfig config_;
  const Options options_;
  const AgentClock clock_;
  const StatePaths paths_;
  int lock_fd_ = -1;
  std::unique_ptr<mirror::StaticIdentity> identity_;
  std::unique_ptr<snapshot::Keyset> keyset_;
  std::unique_ptr<AgentState> state_;
  std::unique_ptr<snapshot::LocalStore> outbox_;
  std::unique_ptr<Streams> streams_;
  std::vector<std::unique_ptr<Replicator>> replicators_;
  std::vector<std::unique_ptr<StreamShipper>> shippers_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                          // guarded by mu_
  bool stopped_ = false;                           // guarded by mu_
  bool policies_dirty_ = true;                     // guarded by mu_
  std::vector<PolicyEntry> policies_;              // guarded by mu_
  std::vector<std::string> policy_errors_;         // guarded by mu_
  std::deque<std::shared_ptr<Request>> requests_;  // guarded by mu_
  std::condition_variable request_done_;
  bool paused_ = false;                            // guarded by mu_ (outbox full)
  bool kick_ = false;                              // guarded by mu_: outbox space freed
  uint64_t outbox_used_ = 0;                       // guarded by mu_
  std::string running_;                            // guarded by mu_: the policy being run
  std::map<std::string, RunResult> last_results_;  // guarded by mu_
  // Policies whose last run failed: their targets and the error.
  struct RunError {
    std::vector<std::string> targets;
    AgentError error;
  };
  std::map<std::string, RunError> run_errors_;  // guarded by mu_

  static constexpr std::chrono::milliseconds kReclaimInterval{5000};
  std::mutex reclaim_mu_;
  // Held by the scheduler around a policy run, from its first capture until
  // its snapshots are queued: outbox reclaim skips (and is retried after)
  // while it is held, or it would take the run's chunks, which no queued
  // snapshot needs yet. Lock order: reclaim_mu_, then capture_mu_ (tried).
  std::mutex capture_mu_;
  std::chrono::steady_clock::time_point last_reclaim_{};  // guarded by reclaim_mu_
  std::atomic<bool> reclaim_wanted_{false};  // a reclaim was skipped (rate limit, a run)
  std::atomic<uint64_t> snapshots_taken_{0};
  std::atomic<uint64_t> capture_errors_{0};
  std::atomic<uint64_t> runs_skipped_{0};
  std::atomic<uint64_t> bytes_reclaimed_{0};
  std::thread scheduler_;
};

}  // namespace ferry::agent
