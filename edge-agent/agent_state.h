// AgentState: what ferry-agent remembers across restarts, in one SQLite file
// (stateDir/agent.db, WAL): the hubs it enrolled with (pinned keys), the
// policies each hub sent, each policy's schedule position, and the outbox
// queue — every captured snapshot and its delivery state per target hub.
// Schema and the crash rules: docs/format/agent-state.md.
//
// A snapshot is recorded here only after the outbox store committed it; a
// delivery is marked committed only after the hub's CommitAck. A crash
// between the two leaves an outbox snapshot the state does not know:
// Reconcile() finds it by its labels and queues it (nothing is lost).
//
// Errors: the SQLite errors of core/sqlite.h; kNotFound for unknown rows.
// Thread-safety: thread-safe (one connection behind a mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/sqlite.h"
#include "core/status.h"
#include "snapshot/types.h"

namespace ferry::agent {

inline constexpr int64_t kAgentStateSchemaVersion = 1;

struct EnrolledHub {
  std::string name;
  std::string url;
  std::string fingerprint;
  std::string tenant;
  std::string agent_name;
  int64_t enrolled_unix = 0;
};

struct HubPolicies {
  std::string hub;
  uint64_t generation = 0;
  std::vector<std::string> policies;  // canonical JSON, one per policy
};

struct PolicyRun {
  std::string policy;
  int64_t last_due_unix = 0;  // the last schedule instant handled (run or skipped)
  std::string running_cut;    // non-empty while a capture of this policy is under way
  int64_t last_ok_unix = 0;   // when the last run finished well
  std::string last_error;     // of the last run; empty if it went well
  uint64_t runs = 0;
  uint64_t skipped = 0;  // schedule instants missed because a run was still going
};

enum class DeliveryState { kPending, kSending, kCommitted, kFailed };
const char* DeliveryStateName(DeliveryState s);

struct QueuedSnapshot {
  int64_t seq = 0;  // capture order
  snapshot::SnapshotId id{};
  std::string policy;
  std::string dataset;
  std::string cut;  // snapshots of one policy run share it
  int64_t created_unix = 0;
  uint64_t new_sealed_bytes = 0;  // sealed bytes this capture added to the outbox
};

struct Delivery {
  QueuedSnapshot snapshot;
  std::string target;  // the hub the policy names
  DeliveryState state = DeliveryState::kPending;
  std::string hub;  // the hub that committed it (the target or a failover hub)
  uint64_t attempts = 0;
  uint64_t bytes_sent = 0;  // sealed bytes uploaded over all attempts
  std::string error;        // the last attempt's error
  int64_t committed_unix = 0;
};

class AgentState {
 public:
  static Result<std::unique_ptr<AgentState>> Open(const std::string& path);

  // --- hubs ---
  Status SaveEnrollment(const EnrolledHub& hub);
  Result<std::vector<EnrolledHub>> Enrollments();
  Status SaveHubPolicies(const HubPolicies& policies);
  Result<std::vector<HubPolicies>> AllHubPolicies();

  // --- schedule ---
  Result<std::optional<PolicyRun>> GetRun(const std::string& policy);
  Status PutRun(const PolicyRun& run);

  // --- outbox queue ---
  // Records a captured snapshot with one pending delivery per target (in one
  // transaction). Already recorded (same id): returns its seq unchanged.
  Result<int64_t> AddSnapshot(const QueuedSnapshot& snapshot,
                              const std::vector<std::string>& targets);
  Result<bool> HasSnapshot(const snapshot::SnapshotId& id);
  // The oldest delivery for `target` that is not committed, if any.
  Result<std::optional<Delivery>> NextDelivery(const std::string& target);
  // The newest snapshot of `dataset` that `hub` committed (as target or
  // failover), if any: what a push to that hub may take as held there.
  Result<std::optional<snapshot::SnapshotId>> LastCommittedAt(const std::string& hub,
                                                              const std::string& dataset);
  Status MarkSending(int64_t seq, const std::string& target, const std::string& hub);
  Status MarkAttemptFailed(int64_t seq, const std::string& target, const std::string& error,
                           uint64_t bytes_sent, bool permanent);
  Status MarkCommitted(int64_t seq, const std::string& target, const std::string& hub,
                       uint64_t bytes_sent, int64_t now_unix);
  // Every delivery (newest first, at most `limit`), for status.
  Result<std::vector<Delivery>> RecentDeliveries(size_t limit);
  // Snapshots that some target still waits for (their chunks must stay).
  Result<std::vector<snapshot::SnapshotId>> PendingSnapshotIds();
  // Per target: deliveries not committed and the sealed bytes they added.
  struct Backlog {
    std::string target;
    uint64_t snapshots = 0;
    uint64_t bytes = 0;
  };
  Result<std::vector<Backlog>> Backlogs();
  // The newest snapshot of a dataset, and the newest one every target has.
  struct DatasetSummary {
    std::string dataset;
    std::optional<QueuedSnapshot> last;
    std::optional<QueuedSnapshot> last_replicated;
  };
  Result<DatasetSummary> Summarize(const std::string& dataset);

 private:
  explicit AgentState(std::unique_ptr<sqlite::Database> db) : db_(std::move(db)) {}
  Status Migrate();

  std::mutex mu_;
  std::unique_ptr<sqlite::Database> db_;
};

}  // namespace ferry::agent
