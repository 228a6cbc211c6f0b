// RestApi: the hub's JSON REST API and its operational endpoints, answered
// on the link's port (LinkServer passes every request that is not the link
// upgrade here). Reference: docs/api.md.
//
//   GET /healthz   alive (no auth)          GET /readyz   catalog and stores usable (no auth)
//   GET /metrics   Prometheus text (no auth)
//   /v1/...        Bearer-token API: tenants, enrollment tokens, agents,
//                  snapshots, sealed chunks and data keys, policies, API tokens,
//                  the tenant's status (recovery points against RPOs), and
//                  the agents' streams as sealed batches.
//
// Every /v1 request is authorized against its token's tenant and role;
// failed tokens are throttled per peer address (RestContext::auth_throttle).
// Errors are {"error": {"code": "NOT_FOUND", "message": "..."}} with the
// HTTP status that matches the code.
// Thread-safety: thread-safe; Handle runs on the server's I/O threads and
// must not block for long.
#pragma once

#include <functional>
#include <string>

#include "cloud-hub/auth_throttle.h"
#include "cloud-hub/catalog.h"
#include "cloud-hub/hub_streams.h"
#include "cloud-hub/metrics.h"
#include "cloud-hub/tenant_stores.h"
#include "core/clock.h"
#include "mirror/transport/link_server.h"

namespace ferry::hub {

struct RestContext {
  Catalog* catalog = nullptr;
  TenantStores* stores = nullptr;
  HubStreams* streams = nullptr;
  Metrics* metrics = nullptr;
  // The hub's link fingerprint (returned with enrollment tokens).
  std::string hub_fingerprint;
  // ws:// URL agents should use, if configured (returned with tokens).
  std::string public_link_url;
  // Called after a policy changed (the link endpoint pushes it to agents).
  std::function<void(const std::string& tenant)> on_policy_change;
  // Failed bearer tokens per peer address: a /v1 request from an address
  // it throttles is answered 429 (Retry-After) before its token is looked
  // at; a 401 for a token that was presented counts as a failure. Null: no
  // throttling. Must outlive the API.
  AuthThrottle* auth_throttle = nullptr;
  // "Now" for the status page and the RPO gauges (ages of snapshots); null =
  // the real clock. Must outlive the API.
  Clock* clock = nullptr;
};

class RestApi {
 public:
  explicit RestApi(RestContext context);
  // `peer_address`: the client's IP address (for the auth throttle; "" when
  // unknown: such requests share one budget).
  mirror::transport::HttpResponse Handle(const mirror::transport::HttpRequest& request,
                                         const std::string& peer_address = "");

 private:
  RestContext ctx_;
};

}  // namespace ferry::hub
