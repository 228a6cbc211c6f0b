// PolicyPusher: sends every open session of an enrolled agent the mirror
// policies that select it — once right after the HelloAck, then again after
// every change of its tenant's policies. Wire rules: docs/format/link.md
// ("Policy sync").
//
// The REST thread only marks the tenant's sessions (OnPolicyChange never
// blocks on the network); each session's own thread builds and sends the
// sync between two frames (ServeOptions::unsolicited calls Take), so a
// sync never interleaves with an answer, a slow agent holds up nobody else,
// and a change racing with the end of a session is harmless (a session
// that is gone is never asked again). Syncs coalesce: however many changes
// happen between two looks, the session sends one complete, current set.
//
// Thread-safety: thread-safe; Take for one session from one thread at a
// time (its session's).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cloud-hub/catalog.h"
#include "cloud-hub/metrics.h"
#include "mirror/policy/mirror_policy.h"
#include "mirror/replication/frame_channel.h"

namespace ferry::hub {

// Whether `policy` selects an agent with `labels`: every key of
// spec.agents.matchLabels is a label of the agent with the same value (an
// empty matchLabels selects every agent).
bool PolicySelects(const mirror::MirrorPolicy& policy,
                   const std::map<std::string, std::string>& labels);

// The PolicySync for an agent of `tenant` with `labels`: the tenant's policy
// generation and, sorted by name, the canonical JSON (MirrorPolicyToJson)
// of every policy of the tenant that selects the agent. The set is the one
// of that generation (read again if a change landed in between). A stored
// policy that no longer parses is left out and logged. Catalog errors as
// returned (kNotFound for an unknown tenant).
Result<mirror::linkpb::PolicySync> BuildPolicySync(
    Catalog& catalog, const std::string& tenant, const std::map<std::string, std::string>& labels);

class PolicyPusher {
 public:
  // One open session of an enrolled agent.
  class Session {
   public:
    Session(std::string tenant, std::string agent)
        : tenant_(std::move(tenant)), agent_(std::move(agent)) {}
    const std::string& tenant() const { return tenant_; }
    const std::string& agent() const { return agent_; }

   private:
    friend class PolicyPusher;
    const std::string tenant_;
    const std::string agent_;
    // Set by Register and OnPolicyChange, cleared by Take.
    std::atomic<bool> wanted_{true};
    // After a catalog error, when Take tries again (its thread only).
    std::chrono::steady_clock::time_point retry_after_{};
  };

  // `catalog` and `metrics` must outlive the pusher. `max_frame_bytes`: the
  // largest Envelope sent (the smaller of it and the protocol default,
  // kDefaultMaxFrameBytes, counts: agents do not announce their own limit).
  PolicyPusher(Catalog& catalog, Metrics& metrics, uint64_t max_frame_bytes);

  // A session of agent `agent` in `tenant` opened; it wants a sync at once.
  std::shared_ptr<Session> Register(const std::string& tenant, const std::string& agent);
  // The session ended. Idempotent.
  void Unregister(const std::shared_ptr<Session>& session);
  // A policy of `tenant` was put or deleted: every open session of the
  // tenant wants a sync. Returns how many. Cheap; never blocks on I/O.
  size_t OnPolicyChange(const std::string& tenant);
  // Open sessions of `tenant` (for tests and metrics).
  size_t open_sessions(const std::string& tenant) const;

  // On the session's thread: the frames to send now — one PolicySync
  // (request_id 0) when the session wants one, else none. The agent's labels
  // are read from the catalog each time; a revoked agent gets nothing. A
  // sync over the frame limit is not sent: it is logged as an error and
  // counted (errors{where="policy_sync",code="RESOURCE_EXHAUSTED"}), and
  // the agent keeps the set it has until a later change fits. On a catalog
  // error the sync is tried again 5 s later.
  std::vector<mirror::linkpb::Envelope> Take(Session& session);

 private:
  Catalog& catalog_;
  Metrics& metrics_;
  const uint64_t max_frame_bytes_;
  mutable std::mutex mu_;
  std::multimap<std::string, std::shared_ptr<Session>> sessions_;  // GUARDED_BY(mu_), by tenant
};

}  // namespace ferry::hub
