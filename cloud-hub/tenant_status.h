// TenantStatus: a tenant's recovery points as the hub sees them — per mirror
// policy and per agent the policy selects: the newest snapshot the hub holds
// for that policy, its age against the policy's RPO, and what the agent last
// reported (its backlog for this hub, its last error). Served as
// GET /v1/tenants/{tenant}/status and as gauges in /metrics (docs/api.md).
//
// "Last good snapshot" of (policy, agent): for each dataset of the policy,
// the newest committed snapshot of the agent labelled ferry.policy=<policy>
// that holds the dataset (the agent labels every run that way); the oldest
// of those bounds the recovery point, and none exists while any dataset has
// no snapshot. Its age is now minus its capture time (the manifest's, on the
// agent's clock; never below 0).
//
// Errors: the catalog's (kNotFound for an unknown tenant). A stored policy
// that no longer parses is left out and logged.
// Thread-safety: thread-safe (the catalog is).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cloud-hub/catalog.h"

namespace ferry::hub {

// One (policy, agent) pair, or one agent over all its policies.
struct RecoveryPoint {
  std::optional<SnapshotRecord> last_snapshot;
  std::optional<int64_t> age_seconds;  // with last_snapshot
  // Only when an RPO applies: age <= rpo (false without a snapshot).
  std::optional<bool> rpo_met;
};

struct AgentStatus {
  Agent agent;                        // live (not revoked), with its report
  std::vector<std::string> policies;  // names of the policies that select it
  // The agent's newest snapshot of any policy; rpo_met = every selecting
  // policy with an RPO is met (none with an RPO: unset).
  RecoveryPoint point;
};

struct PolicyStatus {
  std::string policy;
  std::optional<int64_t> rpo_seconds;
  struct Row {
    size_t agent = 0;  // index into TenantStatus::agents
    RecoveryPoint point;
  };
  std::vector<Row> agents;  // by agent name
};

struct TenantStatus {
  int64_t generated_unix = 0;
  std::vector<PolicyStatus> policies;  // by name
  std::vector<AgentStatus> agents;     // live agents, by name
  // More (policy, agent) pairs or agents than the limit: the rest are left
  // out (agent-level rpo_met then covers only the pairs included).
  bool truncated = false;
};

// Computes the status of `tenant` at `now_unix`, with at most `max_rows`
// (policy, agent) rows and `max_rows` agents.
Result<TenantStatus> ComputeTenantStatus(Catalog& catalog, const std::string& tenant,
                                         int64_t now_unix, size_t max_rows);

}  // namespace ferry::hub
