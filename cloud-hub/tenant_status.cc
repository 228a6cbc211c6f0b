#include "cloud-hub/tenant_status.h"

#include <algorithm>

#include "cloud-hub/policy_pusher.h"
#include "core/log.h"
#include "mirror/policy/mirror_policy.h"

namespace ferry::hub {
namespace {

constexpr int64_t kNanosPerSecond = 1'000'000'000;

// Age of a snapshot at `now_unix`: the capture time is the agent's clock, so
// a snapshot "from the future" (a clock ahead of the hub's) reads as 0.
int64_t AgeSeconds(const SnapshotRecord& s, int64_t now_unix) {
  return std::max<int64_t>(0, now_unix - s.created_unix_ns / kNanosPerSecond);
}

RecoveryPoint PointOf(std::optional<SnapshotRecord> snapshot, std::optional<int64_t> rpo,
                      int64_t now_unix) {
  RecoveryPoint p;
  p.last_snapshot = std::move(snapshot);
  if (p.last_snapshot) p.age_seconds = AgeSeconds(*p.last_snapshot, now_unix);
  if (rpo) p.rpo_met = p.age_seconds.has_value() && *p.age_seconds <= *rpo;
  return p;
}

// The snapshot that bounds (policy, agent)'s recovery point: the oldest of
// each dataset's newest, none while a dataset has none.
Result<std::optional<SnapshotRecord>> LastGood(Catalog& catalog, const std::string& tenant,
                                               const std::string& agent,
                                               const mirror::MirrorPolicy& policy) {
  std::optional<SnapshotRecord> bound;
  std::vector<std::string> datasets = policy.datasets;
  if (datasets.empty()) datasets.emplace_back();  // any dataset
  for (const std::string& dataset : datasets) {
    ASSIGN_OR_RETURN(std::optional<SnapshotRecord> newest,
                     catalog.LastPolicySnapshot(tenant, agent, policy.name, dataset));
    if (!newest) return std::optional<SnapshotRecord>();
    if (!bound || newest->created_unix_ns < bound->created_unix_ns) bound = std::move(newest);
  }
  return bound;
}

}  // namespace

Result<TenantStatus> ComputeTenantStatus(Catalog& catalog, const std::string& tenant,
                                         int64_t now_unix, size_t max_rows) {
  TenantStatus out;
  out.generated_unix = now_unix;
  ASSIGN_OR_RETURN(std::vector<PolicyRecord> records, catalog.ListPolicies(tenant));
  ASSIGN_OR_RETURN(std::vector<Agent> agents, catalog.ListAgents(tenant));

  for (Agent& a : agents) {
    if (a.revoked) continue;
    if (out.agents.size() >= max_rows) {
      out.truncated = true;
      break;
    }
    AgentStatus s;
    s.agent = std::move(a);
    out.agents.push_back(std::move(s));
  }

  std::vector<mirror::MirrorPolicy> policies;
  for (const PolicyRecord& r : records) {
    Result<mirror::MirrorPolicy> p = mirror::ParseMirrorPolicy(r.spec_json);
    if (!p.ok()) {
      log::Error("status: policy {} of tenant {} no longer parses; left out: {}", r.name, tenant,
                 p.status().ToString());
      continue;
    }
    policies.push_back(std::move(*p));
  }
  std::sort(policies.begin(), policies.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });

  // Agent-level RPO: met while every selecting policy with an RPO is met.
  std::vector<std::optional<bool>> agent_rpo(out.agents.size());
  size_t rows = 0;
  for (const mirror::MirrorPolicy& policy : policies) {
    PolicyStatus ps;
    ps.policy = policy.name;
    ps.rpo_seconds = policy.rpo_seconds;
    for (size_t i = 0; i < out.agents.size(); ++i) {
      AgentStatus& as = out.agents[i];
      if (!PolicySelects(policy, as.agent.labels)) continue;
      if (rows >= max_rows) {
        out.truncated = true;
        break;
      }
      ++rows;
      as.policies.push_back(policy.name);
      ASSIGN_OR_RETURN(std::optional<SnapshotRecord> last,
                       LastGood(catalog, tenant, as.agent.name, policy));
      PolicyStatus::Row row;
      row.agent = i;
      row.point = PointOf(std::move(last), policy.rpo_seconds, now_unix);
      if (row.point.rpo_met) {
        agent_rpo[i] = agent_rpo[i].value_or(true) && *row.point.rpo_met;
      }
      ps.agents.push_back(std::move(row));
    }
    out.policies.push_back(std::move(ps));
  }

  for (size_t i = 0; i < out.agents.size(); ++i) {
    AgentStatus& as = out.agents[i];
    ASSIGN_OR_RETURN(std::optional<SnapshotRecord> last,
                     catalog.LastAgentSnapshot(tenant, as.agent.name));
    as.point = PointOf(std::move(last), std::nullopt, now_unix);
    as.point.rpo_met = agent_rpo[i];
  }
  return out;
}

}  // namespace ferry::hub
