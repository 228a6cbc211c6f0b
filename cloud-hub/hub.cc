#include "cloud-hub/hub.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <mutex>
#include <thread>

#include "cloud-hub/policy_pusher.h"
#include "cloud-hub/rest_api.h"
#include "core/crash_site.h"
#include "core/env.h"
#include "core/log.h"
#include "mirror/link/link_channel.h"
#include "mirror/replication/replication_receiver.h"
#include "mirror/transport/link_server.h"

namespace ferry::hub {

namespace {

std::string IdentityPath(const std::string& dir) { return dir + "/hub.key"; }
std::string CatalogPath(const std::string& dir) { return dir + "/catalog.db"; }

int64_t NowUnix() { return static_cast<int64_t>(std::time(nullptr)); }

// What one link session may do, as decided by the catalog: commits signed
// by its agent's own signing key, into its own tenant; enrollment with a
// join token.
// Where an agent's stream batches go: its tenant's HubStreams, accepted
// only when signed by the agent's own signing key.
class AgentStreamSink final : public mirror::StreamSink {
 public:
  AgentStreamSink(HubStreams& streams, Catalog& catalog, Metrics& metrics, Agent agent)
      : streams_(streams), catalog_(catalog), metrics_(metrics), agent_(std::move(agent)) {}

  Result<mirror::StreamPosition> Position(const std::string& stream) override {
    return streams_.Position(agent_.tenant, agent_.name, stream);
  }

  Result<mirror::StreamPosition> Append(const snapshot::StreamBatchHeader& header,
                                        ByteView sealed) override {
    if (!sodium::ConstantTimeEqual(header.signer, agent_.signing_key)) {
      return PermissionDeniedError("stream batch is signed by " + HexEncode(header.signer) +
                                   ", not by agent " + agent_.name + "'s signing key");
    }
    // Revocation takes effect at once, also on a session already open
    // (checked once a second at most: batches may come many times a second).
    const auto now = std::chrono::steady_clock::now();
    if (now - last_revocation_check_ > std::chrono::seconds(1)) {
      ASSIGN_OR_RETURN(Agent current, catalog_.GetAgent(agent_.tenant, agent_.name));
      if (current.revoked) return PermissionDeniedError("agent " + agent_.name + " was revoked");
      last_revocation_check_ = now;
    }
    ASSIGN_OR_RETURN(mirror::StreamPosition before,
                     streams_.Position(agent_.tenant, agent_.name, header.stream));
    ASSIGN_OR_RETURN(mirror::StreamPosition p,
                     streams_.Append(agent_.tenant, agent_.name, header, sealed));
    if (p.next > before.next) {
      metrics_.stream_batches.fetch_add(1);
      metrics_.stream_records.fetch_add(p.next - std::max(before.next, header.first_offset));
      metrics_.stream_bytes.fetch_add(sealed.size());
    }
    return p;
  }

 private:
  HubStreams& streams_;
  Catalog& catalog_;
  Metrics& metrics_;
  const Agent agent_;
  std::chrono::steady_clock::time_point last_revocation_check_{};
};

class HubPolicy final : public mirror::ReceiverPolicy {
 public:
  // `enroll_throttle` counts the join tokens refused from `peer_address`.
  HubPolicy(Catalog& catalog, Metrics& metrics, std::optional<Agent> agent, HubStreams& streams,
            AuthThrottle& enroll_throttle, std::string peer_address)
      : catalog_(catalog),
        metrics_(metrics),
        agent_(std::move(agent)),
        enroll_throttle_(enroll_throttle),
        peer_address_(std::move(peer_address)) {
    if (agent_) stream_sink_.emplace(streams, catalog, metrics, *agent_);
  }

  mirror::StreamSink* streams() override { return stream_sink_ ? &*stream_sink_ : nullptr; }

  Status AuthorizeCommit(const snapshot::ParsedManifest& manifest) override {
    commit_started_ = std::chrono::steady_clock::now();
    if (!agent_) return PermissionDeniedError("this key is not enrolled");
    // Revocation takes effect at once, also on a session already open.
    ASSIGN_OR_RETURN(Agent current, catalog_.GetAgent(agent_->tenant, agent_->name));
    if (current.revoked) return PermissionDeniedError("agent " + agent_->name + " was revoked");
    if (!sodium::ConstantTimeEqual(manifest.signer, current.signing_key)) {
      return PermissionDeniedError("manifest is signed by " + HexEncode(manifest.signer) +
                                   ", not by agent " + current.name + "'s signing key " +
                                   HexEncode(current.signing_key));
    }
    // A parent must be one of this agent's own snapshots (when the hub has it).
    if (!manifest.body.parent().empty()) {
      const std::string parent = HexEncode(AsBytes(manifest.body.parent()));
      Result<SnapshotRecord> p = catalog_.GetSnapshot(agent_->tenant, parent);
      if (p.ok() && p->agent != agent_->name) {
        return PermissionDeniedError("parent snapshot " + parent.substr(0, 12) +
                                     " belongs to another agent");
      }
    }
    return OkStatus();
  }

  Result<mirror::linkpb::EnrollResponse> Enroll(const mirror::linkpb::EnrollRequest& request,
                                                const sodium::PublicKey& peer) override {
    if (request.signing_key().size() != sizeof(sodium::PublicKey)) {
      return InvalidArgumentError("enrollment needs the agent's 32-byte manifest signing key");
    }
    // An address that sent too many bad join tokens is refused before its
    // token is looked at; the session then ends with this error (logged
    // with the session's end; the throttle began with a warning).
    if (Status admitted = enroll_throttle_.Admit(peer_address_); !admitted.ok()) {
      metrics_.auth_throttled_link.fetch_add(1);
      return admitted;
    }
    sodium::PublicKey signing{};
    std::memcpy(signing.data(), request.signing_key().data(), signing.size());
    std::map<std::string, std::string> labels(request.labels().begin(), request.labels().end());
    Result<Agent> redeemed =
        catalog_.RedeemJoinToken(request.token(), request.agent_name(), peer, signing, labels);
    if (!redeemed.ok()) {
      // Unknown, spent, expired or of another agent: a failed guess.
      // (A bad name or a name conflict is not about the token.)
      if (redeemed.status().code() == StatusCode::kPermissionDenied) {
        metrics_.auth_failures_link.fetch_add(1);
        if (enroll_throttle_.RecordFailure(peer_address_)) {
          const AuthThrottleOptions& o = enroll_throttle_.options();
          log::Warn(
              "{} failed join tokens from {} within {} ms: its enrollments are refused for {} ms",
              o.max_failures, AuthThrottle::AddressKey(peer_address_), o.window.count(),
              o.window.count());
        }
      }
      return redeemed.status();
    }
    Agent agent = std::move(*redeemed);
    log::Info("enrolled agent {} of tenant {} ({})", agent.name, agent.tenant,
              mirror::Fingerprint(peer));
    mirror::linkpb::EnrollResponse response;
    response.set_tenant(agent.tenant);
    response.set_agent_name(agent.name);
    return response;
  }

  Status OnCommitted(const snapshot::ParsedManifest& m) override {
    if (!agent_) return PermissionDeniedError("this key is not enrolled");
    SnapshotRecord r;
    r.id = HexEncode(m.id);
    r.tenant = agent_->tenant;
    r.agent = agent_->name;
    for (const auto& d : m.body.datasets()) {
      r.datasets.push_back(d.name());
      r.logical_bytes += d.stats().bytes();
    }
    r.created_unix_ns = m.body.created_unix_ns();
    r.committed_unix = NowUnix();
    if (!m.body.parent().empty()) r.parent = HexEncode(AsBytes(m.body.parent()));
    r.chunks = m.body.refs().count();
    r.sealed_bytes = m.body.refs().sealed_bytes();
    r.labels.insert(m.body.labels().begin(), m.body.labels().end());
    FERRY_CRASH_SITE("hub.catalog.before_record");
    RETURN_IF_ERROR(catalog_.RecordSnapshot(r));
    FERRY_CRASH_SITE("hub.catalog.after_record");
    metrics_.commits.fetch_add(1);
    metrics_.ObserveCommitSeconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - commit_started_).count());
    return OkStatus();
  }

  Status OnAgentReport(const mirror::linkpb::AgentReport& report) override {
    if (!agent_) return PermissionDeniedError("this key is not enrolled");
    AgentReportRecord r;
    r.pending_bytes = report.pending_bytes();
    r.pending_snapshots = report.pending_snapshots();
    r.last_error = report.last_error();
    r.last_error_unix = report.last_error_unix();
    r.reported_unix = report.reported_unix();
    r.received_unix = NowUnix();
    // Best-effort: a report that cannot be stored (a busy catalog, a
    // revocation racing with it) is logged and counted, and replication
    // goes on; the agent sends another when its values change.
    if (Status s = catalog_.SaveAgentReport(agent_->tenant, agent_->name, r); !s.ok()) {
      log::Warn("agent report of {}/{} not stored: {}", agent_->tenant, agent_->name, s.ToString());
      metrics_.CountError("agent_report", std::string(StatusCodeName(s.code())));
      return OkStatus();
    }
    metrics_.agent_reports.fetch_add(1);
    return OkStatus();
  }

 private:
  static ByteView AsBytes(const std::string& s) {
    return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  Catalog& catalog_;
  Metrics& metrics_;
  const std::optional<Agent> agent_;
  AuthThrottle& enroll_throttle_;
  const std::string peer_address_;
  std::optional<AgentStreamSink> stream_sink_;
  std::chrono::steady_clock::time_point commit_started_{};
};

}  // namespace

struct Hub::State {
  HubConfig config;
  std::atomic<bool> draining{false};
  // Open sessions of enrolled agents, per tenant, for policy pushes.
  std::unique_ptr<PolicyPusher> policies;
  // Failed API tokens (REST) and join tokens (link) per peer address.
  std::unique_ptr<AuthThrottle> api_throttle;
  std::unique_ptr<AuthThrottle> join_throttle;
  std::unique_ptr<RestApi> rest;
  std::unique_ptr<mirror::transport::LinkServer> server;
};

Result<InitResult> InitDataDir(const std::string& data_dir, const std::string& tenant) {
  Env& env = *Env::Default();
  RETURN_IF_ERROR(env.CreateDirs(data_dir, 0700));
  ASSIGN_OR_RETURN(bool has_catalog, env.FileExists(CatalogPath(data_dir)));
  ASSIGN_OR_RETURN(bool has_key, env.FileExists(IdentityPath(data_dir)));
  if (has_catalog || has_key) {
    return AlreadyExistsError(data_dir + " already holds a hub (hub.key or catalog.db exists)");
  }
  ASSIGN_OR_RETURN(mirror::StaticIdentity identity,
                   mirror::StaticIdentity::LoadOrCreate(env, IdentityPath(data_dir)));
  ASSIGN_OR_RETURN(std::unique_ptr<Catalog> catalog, Catalog::Open(CatalogPath(data_dir)));
  if (!tenant.empty()) RETURN_IF_ERROR(catalog->CreateTenant(tenant));
  InitResult result;
  result.fingerprint = identity.fingerprint();
  ASSIGN_OR_RETURN(result.admin_token,
                   catalog->CreateApiToken("", Role::kAdmin, "created by ferry-hub init"));
  return result;
}

Result<std::unique_ptr<Hub>> Hub::Start(const HubConfig& config) {
  Env& env = *Env::Default();
  ASSIGN_OR_RETURN(bool has_key, env.FileExists(IdentityPath(config.data_dir)));
  if (!has_key) {
    return FailedPreconditionError(config.data_dir +
                                   " is not a hub data dir: run `ferry-hub init --data-dir " +
                                   config.data_dir + "` first");
  }
  auto hub = std::unique_ptr<Hub>(new Hub());
  // One hub per data dir.
  const std::string lock_path = config.data_dir + "/hub.lock";
  hub->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (hub->lock_fd_ < 0) {
    return UnavailableError("open " + lock_path + ": " + std::strerror(errno));
  }
  if (::flock(hub->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return UnavailableError("another ferry-hub is running on " + config.data_dir);
  }
  ASSIGN_OR_RETURN(mirror::StaticIdentity identity,
                   mirror::StaticIdentity::Load(env, IdentityPath(config.data_dir)));
  hub->fingerprint_ = identity.fingerprint();
  ASSIGN_OR_RETURN(hub->catalog_, Catalog::Open(CatalogPath(config.data_dir)));
  hub->stores_ = std::make_unique<TenantStores>(config.data_dir);
  hub->streams_ = std::make_unique<HubStreams>(config.data_dir);
  hub->state_ = std::make_unique<State>();
  State& state = *hub->state_;
  state.config = config;
  state.policies =
      std::make_unique<PolicyPusher>(*hub->catalog_, hub->metrics_, config.max_frame_bytes);
  state.api_throttle = std::make_unique<AuthThrottle>(config.auth_throttle);
  state.join_throttle = std::make_unique<AuthThrottle>(config.auth_throttle);

  RestContext rest;
  rest.catalog = hub->catalog_.get();
  rest.stores = hub->stores_.get();
  rest.streams = hub->streams_.get();
  rest.metrics = &hub->metrics_;
  rest.hub_fingerprint = hub->fingerprint_;
  rest.public_link_url = config.public_url;
  rest.auth_throttle = state.api_throttle.get();
  // Runs on an I/O thread: it only marks the tenant's sessions, whose own
  // threads then send the sync (PolicyPusher).
  PolicyPusher* pusher = state.policies.get();
  rest.on_policy_change = [pusher](const std::string& tenant) { pusher->OnPolicyChange(tenant); };
  state.rest = std::make_unique<RestApi>(std::move(rest));

  Hub* self = hub.get();
  mirror::transport::LinkServerCallbacks callbacks;
  callbacks.authorize = [self](const sodium::PublicKey& key) {
    Result<Agent> agent = self->catalog_->FindAgentByLinkKey(key);
    return agent.ok() && !agent->revoked ? mirror::transport::PeerAuthorization::kKnown
                                         : mirror::transport::PeerAuthorization::kUnknown;
  };
  callbacks.on_session = [self](std::shared_ptr<mirror::transport::LinkConnection> connection) {
    self->ServeLinkSession(std::move(connection));
  };
  callbacks.http_from = [self](const mirror::transport::HttpRequest& request,
                               const std::string& peer_address) {
    return self->state_->rest->Handle(request, peer_address);
  };

  mirror::transport::LinkServerOptions options;
  options.address = config.listen_address;
  options.port = config.port;
  options.io_threads = config.io_threads;
  options.max_sessions = config.max_sessions;
  options.max_http_body_bytes = config.max_http_body_bytes;
  options.link.max_frame_bytes = config.max_frame_bytes;
  ASSIGN_OR_RETURN(state.server,
                   mirror::transport::LinkServer::Start(identity, options, std::move(callbacks)));
  log::Info("hub {} serving on {}:{} (data dir {})", hub->fingerprint_, config.listen_address,
            state.server->port(), config.data_dir);
  return hub;
}

void Hub::ServeLinkSession(std::shared_ptr<mirror::transport::LinkConnection> connection) {
  State& state = *state_;
  std::optional<Agent> agent;
  if (connection->peer_enrolled()) {
    Result<Agent> a = catalog_->FindAgentByLinkKey(connection->peer_key());
    if (a.ok() && !a->revoked) agent = *a;
  }
  const std::string who =
      agent ? agent->tenant + "/" + agent->name : "unknown key " + connection->peer_fingerprint();
  metrics_.sessions_open.fetch_add(1);
  metrics_.sessions_total.fetch_add(1);
  // Bookkeeping only (last seen, the sessions list): a catalog error does
  // not refuse the session, but it is logged and counted.
  auto catalog_failed = [&](const char* what, const Status& s) {
    if (s.ok()) return;
    log::Warn("catalog: could not record {} of {}: {}", what, who, s.ToString());
    metrics_.CountError("catalog", std::string(StatusCodeName(s.code())));
  };
  int64_t session_id = 0;
  if (agent) {
    catalog_failed("the last-seen time",
                   catalog_->TouchAgent(agent->tenant, agent->name, NowUnix()));
    Result<int64_t> id =
        catalog_->OpenSession(agent->tenant, agent->name, connection->remote_endpoint(), NowUnix());
    catalog_failed("the session", id.status());
    if (id.ok()) session_id = *id;
  }

  // Every line this session's thread logs names it (JSON keys).
  log::ScopedFields fields({{"session", std::to_string(session_id)},
                            {"tenant", agent ? agent->tenant : ""},
                            {"agent", agent ? agent->name : ""},
                            {"peer", connection->peer_fingerprint()}});
  Status ended;
  mirror::ReplicationReceiver::Stats stats;
  {
    // An unknown key gets a session too, but the receiver then allows only
    // Hello and enrollment, and has no store.
    Result<snapshot::ChunkStore*> store =
        agent ? stores_->Get(agent->tenant) : Result<snapshot::ChunkStore*>(nullptr);
    if (!store.ok()) {
      log::Error("session {}: chunk store unavailable: {}", who, store.status().ToString());
      connection->Close(store.status());
      ended = store.status();
    } else {
      HubPolicy policy(*catalog_, metrics_, agent, *streams_, *state.join_throttle,
                       AuthThrottle::AddressOfEndpoint(connection->remote_endpoint()));
      mirror::ReceiverOptions receiver_options;
      receiver_options.max_frame_bytes = state.config.max_frame_bytes;
      receiver_options.upload_window_bytes = state.config.upload_window_bytes;
      receiver_options.software = "ferry-hub";
      mirror::LinkChannel channel(connection, state.config.max_frame_bytes);
      std::unique_ptr<mirror::ReplicationReceiver> receiver =
          agent ? std::make_unique<mirror::ReplicationReceiver>(
                      **store, policy, connection->peer_key(), true, receiver_options)
                : std::make_unique<mirror::ReplicationReceiver>(policy, connection->peer_key(),
                                                                receiver_options);
      mirror::ServeOptions serve;
      serve.idle_timeout = state.config.session_idle_timeout;
      serve.draining = &state.draining;
      // An enrolled agent gets its policies right after the HelloAck and
      // after every change; the registration ends with the session.
      std::shared_ptr<PolicyPusher::Session> live;
      if (agent) {
        live = state.policies->Register(agent->tenant, agent->name);
        serve.unsolicited = [&state, &live] { return state.policies->Take(*live); };
      }
      // Unregistered however the session ends (an exception included).
      struct Unregister {
        PolicyPusher& pusher;
        const std::shared_ptr<PolicyPusher::Session>& session;
        ~Unregister() { pusher.Unregister(session); }
      } unregister{*state.policies, live};
      ended = mirror::ServeSession(channel, *receiver, serve);
      stats = receiver->stats();
    }
  }
  const auto counters = connection->counters();
  metrics_.link_bytes_in.fetch_add(counters.bytes_received);
  metrics_.link_bytes_out.fetch_add(counters.bytes_sent);
  metrics_.chunks_received.fetch_add(stats.chunks_received);
  metrics_.chunks_stored.fetch_add(stats.chunks_new);
  metrics_.chunk_bytes_stored.fetch_add(stats.bytes_new);
  metrics_.sessions_open.fetch_sub(1);
  if (!ended.ok() && ended.code() != StatusCode::kUnavailable &&
      ended.code() != StatusCode::kCancelled) {
    metrics_.CountError("link", std::string(StatusCodeName(ended.code())));
  }
  if (agent) {
    catalog_failed("the last-seen time",
                   catalog_->TouchAgent(agent->tenant, agent->name, NowUnix()));
    if (session_id != 0) {
      catalog_failed("the end of the session",
                     catalog_->CloseSession(session_id, NowUnix(), stats.bytes_received,
                                            stats.chunks_new, stats.commits, ended.ToString()));
    }
  }
  log::Info(
      "session {} from {} ended ({}): {} chunks received, {} new, {} commits, {} stream "
      "records",
      who, connection->remote_endpoint(), ended.ToString(), stats.chunks_received, stats.chunks_new,
      stats.commits, stats.stream_records);
}

uint16_t Hub::port() const { return state_->server->port(); }

Status Hub::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return OkStatus();
  shut_down_ = true;
  State& state = *state_;
  log::Info("shutting down: no new connections; sessions end at their next batch (grace {} ms)",
            grace.count());
  state.server->StopAccepting();
  state.draining.store(true);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  // Sessions notice `draining` within 200 ms (ServeSession's receive slice).
  while (state.server->active_sessions() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (size_t left = state.server->active_sessions(); left > 0) {
    log::Warn("{} sessions still open after the grace period: cutting them", left);
  }
  state.server->Stop();
  Status flushed = stores_->FlushAll();
  if (!flushed.ok()) log::Error("flushing chunk stores: {}", flushed.ToString());
  Status closed = streams_->CloseAll();
  if (!closed.ok()) log::Error("closing streams: {}", closed.ToString());
  return flushed.ok() ? closed : flushed;
}

Hub::~Hub() {
  if (state_ && state_->server) Shutdown(std::chrono::milliseconds(0)).IgnoreError();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

}  // namespace ferry::hub
