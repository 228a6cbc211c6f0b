#include "cloud-hub/policy_pusher.h"

#include <algorithm>
#include <utility>

#include "core/log.h"
#include "mirror/replication/envelope_codec.h"

namespace ferry::hub {

namespace linkpb = mirror::linkpb;

namespace {
// How long Take waits before trying again after a catalog error.
constexpr std::chrono::seconds kRetryAfterError{5};
// Attempts at reading a generation and its policies without a change in
// between.
constexpr int kConsistentReadAttempts = 3;
}  // namespace

bool PolicySelects(const mirror::MirrorPolicy& policy,
                   const std::map<std::string, std::string>& labels) {
  return std::all_of(policy.match_labels.begin(), policy.match_labels.end(), [&](const auto& kv) {
    auto it = labels.find(kv.first);
    return it != labels.end() && it->second == kv.second;
  });
}

Result<linkpb::PolicySync> BuildPolicySync(Catalog& catalog, const std::string& tenant,
                                           const std::map<std::string, std::string>& labels) {
  // The generation and the list are two reads: a change landing between
  // them would pair a generation with another generation's set. Read the
  // generation on both sides of the list and retry when it moved; should it
  // keep moving, the generation read first goes out with a set at least as
  // new (a later sync, with a higher generation, follows that change).
  ASSIGN_OR_RETURN(uint64_t generation, catalog.PolicyGeneration(tenant));
  std::vector<PolicyRecord> records;
  for (int attempt = 0; attempt < kConsistentReadAttempts; ++attempt) {
    ASSIGN_OR_RETURN(records, catalog.ListPolicies(tenant));
    ASSIGN_OR_RETURN(uint64_t after, catalog.PolicyGeneration(tenant));
    if (after == generation) break;
    if (attempt + 1 < kConsistentReadAttempts) generation = after;
  }
  std::sort(records.begin(), records.end(),
            [](const PolicyRecord& a, const PolicyRecord& b) { return a.name < b.name; });
  linkpb::PolicySync sync;
  sync.set_generation(generation);
  for (const PolicyRecord& record : records) {
    Result<mirror::MirrorPolicy> policy = mirror::ParseMirrorPolicy(record.spec_json);
    if (!policy.ok()) {
      log::Error("policy {} of tenant {} no longer parses; not sent to agents: {}", record.name,
                 tenant, policy.status().ToString());
      continue;
    }
    if (!PolicySelects(*policy, labels)) continue;
    sync.add_policies(mirror::MirrorPolicyToJson(*policy));
  }
  return sync;
}

PolicyPusher::PolicyPusher(Catalog& catalog, Metrics& metrics, uint64_t max_frame_bytes)
    : catalog_(catalog),
      metrics_(metrics),
      max_frame_bytes_(std::min<uint64_t>(max_frame_bytes, mirror::kDefaultMaxFrameBytes)) {}

std::shared_ptr<PolicyPusher::Session> PolicyPusher::Register(const std::string& tenant,
                                                              const std::string& agent) {
  auto session = std::make_shared<Session>(tenant, agent);
  std::lock_guard lock(mu_);
  sessions_.emplace(tenant, session);
  return session;
}

void PolicyPusher::Unregister(const std::shared_ptr<Session>& session) {
  if (!session) return;
  std::lock_guard lock(mu_);
  auto [first, last] = sessions_.equal_range(session->tenant());
  for (auto it = first; it != last; ++it) {
    if (it->second == session) {
      sessions_.erase(it);
      return;
    }
  }
}

size_t PolicyPusher::OnPolicyChange(const std::string& tenant) {
  std::lock_guard lock(mu_);
  size_t marked = 0;
  auto [first, last] = sessions_.equal_range(tenant);
  for (auto it = first; it != last; ++it) {
    it->second->wanted_.store(true);
    ++marked;
  }
  return marked;
}

size_t PolicyPusher::open_sessions(const std::string& tenant) const {
  std::lock_guard lock(mu_);
  return sessions_.count(tenant);
}

std::vector<linkpb::Envelope> PolicyPusher::Take(Session& session) {
  std::vector<linkpb::Envelope> out;
  if (!session.wanted_.load()) return out;
  const auto now = std::chrono::steady_clock::now();
  if (now < session.retry_after_) return out;
  // Cleared before reading: a change landing while this sync is built sets
  // it again, and the next look sends that change too.
  session.wanted_.store(false);
  Result<Agent> agent = catalog_.GetAgent(session.tenant(), session.agent());
  Result<linkpb::PolicySync> sync = agent.ok()
                                        ? BuildPolicySync(catalog_, session.tenant(), agent->labels)
                                        : Result<linkpb::PolicySync>(agent.status());
  if (!sync.ok()) {
    log::Error("policy sync for agent {} of tenant {}: {} (trying again in {} s)", session.agent(),
               session.tenant(), sync.status().ToString(), kRetryAfterError.count());
    metrics_.CountError("policy_sync", std::string(StatusCodeName(sync.status().code())));
    session.retry_after_ = now + kRetryAfterError;
    session.wanted_.store(true);
    return out;
  }
  if (agent->revoked) return out;  // it may not replicate; it gets no policies
  linkpb::Envelope e;
  e.set_request_id(0);
  *e.mutable_policy_sync() = std::move(*sync);
  const uint64_t size = e.ByteSizeLong();
  if (size > max_frame_bytes_) {
    log::Error(
        "policy sync for agent {} of tenant {} (generation {}, {} policies) is {} bytes, over the "
        "frame limit of {} bytes: not sent; the agent keeps its previous policies",
        session.agent(), session.tenant(), e.policy_sync().generation(),
        e.policy_sync().policies_size(), size, max_frame_bytes_);
    metrics_.CountError("policy_sync", "RESOURCE_EXHAUSTED");
    return out;
  }
  log::Info("policy sync to agent {}: generation {}, {} policies", session.agent(),
            e.policy_sync().generation(), e.policy_sync().policies_size());
  out.push_back(std::move(e));
  return out;
}

}  // namespace ferry::hub
