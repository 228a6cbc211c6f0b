// Hub: one running ferry-hub — its identity, catalog, per-tenant chunk
// stores, the link endpoint (agents' sessions, scoped to their tenant) and
// the REST API, all on one port.
//
// Data dir (docs/data-dir.md, "Hub"): hub.key (the link identity, 0600),
// catalog.db (+ WAL), tenants/<tenant>/store/ (chunk stores),
// tenants/<tenant>/streams/<agent>/<stream>/ (stream batches), hub.lock.
//
// Errors: Start fails with kFailedPrecondition for a data dir that was not
// initialized (run `ferry-hub init`), kUnavailable when another hub holds
// the data dir or the port cannot be bound.
// Thread-safety: thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "cloud-hub/auth_throttle.h"
#include "cloud-hub/catalog.h"
#include "cloud-hub/hub_streams.h"
#include "cloud-hub/metrics.h"
#include "cloud-hub/tenant_stores.h"
#include "core/status.h"
#include "mirror/identity.h"
#include "mirror/transport/link_connection.h"

namespace ferry::hub {

struct HubConfig {
  std::string data_dir;
  std::string listen_address = "127.0.0.1";
  uint16_t port = 7070;  // 0 = any free port (see Hub::port())
  int io_threads = 2;
  // Link sessions at once; beyond it upgrades get 503.
  size_t max_sessions = 1024;
  uint64_t max_frame_bytes = 8u << 20;
  uint64_t upload_window_bytes = 64u << 20;
  size_t max_http_body_bytes = 1u << 20;
  // A session with nothing received for this long is closed.
  std::chrono::milliseconds session_idle_timeout{120'000};
  // The ws:// URL agents should use (returned with enrollment tokens).
  std::string public_url;
  // Failed tokens per peer address, counted apart for API tokens (REST:
  // 429 while throttled) and join tokens (link enrollment: refused with
  // RESOURCE_EXHAUSTED and the session closed). See AuthThrottle.
  AuthThrottleOptions auth_throttle;
};

// `ferry-hub init`: creates the data dir, the identity key, the catalog and
// a first admin token for every tenant (returned; stored hashed). With
// `tenant` non-empty also creates that tenant. kAlreadyExists if the dir
// already holds a hub.
struct InitResult {
  std::string fingerprint;
  std::string admin_token;
};
Result<InitResult> InitDataDir(const std::string& data_dir, const std::string& tenant);

class Hub {
 public:
  static Result<std::unique_ptr<Hub>> Start(const HubConfig& config);
  ~Hub();

  uint16_t port() const;
  const std::string& fingerprint() const { return fingerprint_; }
  Catalog& catalog() { return *catalog_; }
  Metrics& metrics() { return metrics_; }

  // Graceful stop: no new connections; each session ends at its next frame
  // boundary outside a commit (the agent is told the hub is shutting down);
  // after `grace` the rest are cut. Then everything is flushed. Idempotent.
  Status Shutdown(std::chrono::milliseconds grace);

  struct State;

 private:
  Hub() = default;
  // Runs one link session (on its own thread) to its end.
  void ServeLinkSession(std::shared_ptr<mirror::transport::LinkConnection> connection);

  std::string fingerprint_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<TenantStores> stores_;
  std::unique_ptr<HubStreams> streams_;
  Metrics metrics_;
  std::unique_ptr<State> state_;
  int lock_fd_ = -1;
  bool shut_down_ = false;
};

}  // namespace ferry::hub
