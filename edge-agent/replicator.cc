#include "edge-agent/replicator.h"

#include <algorithm>

#include "core/bytes.h"
#include "core/crash_site.h"
#include "core/log.h"
#include "core/version.h"
#include "edge-agent/agent_clock.h"
#include "mirror/link/link_channel.h"
#include "mirror/replication/envelope_codec.h"
#include "mirror/replication/replication_receiver.h"
#include "mirror/replication/replication_sender.h"
#include "mirror/transport/link_client.h"

namespace ferry::agent {

namespace json = boost::json;
using mirror::transport::LinkConnection;

struct Replicator::Session {
  HubLink link;
  std::shared_ptr<LinkConnection> connection;
  std::unique_ptr<mirror::LinkChannel> channel;
  std::unique_ptr<mirror::ReplicationSender> sender;
  bool failover = false;  // connected to another hub than hub_
  // Reports on this session (the replicator's thread only).
  bool reported = false;  // the first one goes out right after the HelloAck
  std::chrono::steady_clock::time_point last_report{};
  std::chrono::steady_clock::time_point last_check{};
  mirror::linkpb::AgentReport last_sent;  // reported_unix left 0
  ~Session() {
    if (channel) channel->Close(OkStatus());
  }
};

namespace {

constexpr std::chrono::milliseconds kIdlePoll{40};

// Errors that another attempt will not fix by itself (the snapshot stays
// queued and is retried, more slowly, but the status says "failed").
bool Permanent(const Status& s) {
  switch (s.code()) {
    case StatusCode::kPermissionDenied:
    case StatusCode::kInvalidArgument:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kNotFound:
    case StatusCode::kUnauthenticated:
      return true;
    default:
      return false;
  }
}

}  // namespace

Replicator::Replicator(ReplicatorDeps deps, std::string hub)
    : deps_(std::move(deps)),
      hub_(std::move(hub)),
      bucket_(0, 1u << 20),
      backoff_(deps_.config->replication.backoff_initial, deps_.config->replication.backoff_max) {}

Replicator::~Replicator() { Stop(); }

void Replicator::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Replicator::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Replicator::Wake() {
  report_dirty_.store(true);  // new snapshots are pending
  {
    std::lock_guard lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void Replicator::RefreshBandwidth() {
  std::string policy;
  {
    std::lock_guard lock(mu_);
    policy = current_policy_;
  }
  if (!policy.empty() && deps_.bandwidth_for) bucket_.SetRate(deps_.bandwidth_for(policy));
}

const HubLink* Replicator::Find(const std::string& name) const {
  for (const HubLink& h : deps_.hubs) {
    if (h.name == name) return &h;
  }
  return nullptr;
}

void Replicator::SetError(const std::string& error) {
  std::lock_guard lock(mu_);
  SetErrorLocked(error);
}

void Replicator::SetErrorLocked(const std::string& error) {
  last_error_ = error;
  last_error_unix_ = error.empty() ? 0 : AgentClock::RealNow();
  report_dirty_.store(true);
}

AgentError Replicator::LastError() {
  AgentError e;
  {
    std::lock_guard lock(mu_);
    e = {last_error_, last_error_unix_};
  }
  if (deps_.run_error_for) {
    AgentError run = deps_.run_error_for(hub_);
    if (!run.message.empty() && (e.message.empty() || run.unix >= e.unix)) e = std::move(run);
  }
  return e;
}

std::vector<mirror::linkpb::Envelope> Replicator::MaybeReport(Session& session) {
  std::vector<mirror::linkpb::Envelope> out;
  // A failover hub hears from its own replicator; this one reports to its
  // hub only, and only to a hub that accepts reports (older hubs end the
  // session on a message they do not know).
  if (session.failover || !session.sender->PeerHas(mirror::kAgentReportCapability)) return out;
  const auto now = std::chrono::steady_clock::now();
  if (session.reported && now - session.last_report < kReportMinInterval) return out;
  // Consumed only once a report may go out: a change during the interval
  // is picked up when it ends.
  const bool dirty = report_dirty_.exchange(false);
  if (session.reported && !dirty && now - session.last_check < kReportRecheck) return out;
  session.last_check = now;

  mirror::linkpb::AgentReport report;
  Result<std::vector<AgentState::Backlog>> backlogs = deps_.state->Backlogs();
  if (!backlogs.ok()) {
    log::Warn("report to {}: agent state: {}", hub_, backlogs.status().ToString());
    report_dirty_.store(true);  // try again after the interval
    session.reported = true;
    session.last_report = now;
    return out;
  }
  for (const AgentState::Backlog& b : *backlogs) {
    if (b.target != hub_) continue;
    report.set_pending_bytes(std::min<uint64_t>(b.bytes, INT64_MAX));
    report.set_pending_snapshots(
        static_cast<uint32_t>(std::min<uint64_t>(b.snapshots, UINT32_MAX)));
  }
  const AgentError error = LastError();
  if (!error.message.empty()) {
    report.set_last_error(mirror::BoundedUtf8(error.message, mirror::kMaxAgentReportErrorBytes));
    report.set_last_error_unix(std::max<int64_t>(error.unix, 0));
  }
  if (session.reported && report.SerializeAsString() == session.last_sent.SerializeAsString()) {
    return out;  // nothing new to say
  }
  session.last_sent = report;
  session.reported = true;
  session.last_report = now;
  report.set_reported_unix(std::max<int64_t>(AgentClock::RealNow(), 0));
  mirror::linkpb::Envelope e;
  e.set_request_id(0);
  *e.mutable_agent_report() = std::move(report);
  out.push_back(std::move(e));
  return out;
}

std::unique_ptr<Replicator::Session> Replicator::ConnectTo(const HubLink& link, bool failover) {
  mirror::transport::LinkClientOptions options;
  options.connect_timeout = std::chrono::seconds(10);
  auto connection =
      mirror::transport::LinkClient::Connect(link.url, *deps_.identity, link.fingerprint, options);
  if (!connection.ok()) {
    SetError("connect to " + link.name + " (" + link.url + "): " + connection.status().ToString());
    return nullptr;
  }
  auto session = std::make_unique<Session>();
  session->link = link;
  session->failover = failover;
  session->connection = *connection;
  session->channel = std::make_unique<mirror::LinkChannel>(session->connection);
  mirror::SenderOptions options_s;
  options_s.software = "ferry-agent";
  options_s.bandwidth = &bucket_;
  const std::string from = link.name;
  options_s.on_policy_sync = [this, from](const mirror::linkpb::PolicySync& sync) {
    if (deps_.on_policy_sync) deps_.on_policy_sync(from, sync);
  };
  // Asked by the sender between its frames, on this thread, while the
  // session (which owns the sender) lives.
  Session* raw = session.get();
  options_s.unsolicited = [this, raw] { return MaybeReport(*raw); };
  session->sender =
      std::make_unique<mirror::ReplicationSender>(*session->channel, *deps_.outbox, options_s);
  if (Status s = session->sender->Hello(); !s.ok()) {
    SetError("hello to " + link.name + ": " + s.ToString());
    return nullptr;
  }
  return session;
}

std::unique_ptr<Replicator::Session> Replicator::Connect() {
  const HubLink* primary = Find(hub_);
  if (primary != nullptr) {
    if (auto s = ConnectTo(*primary, /*failover=*/false)) {
      std::lock_guard lock(mu_);
      if (down_since_ != 0) log::Info("hub {} is reachable again", hub_);
      down_since_ = 0;
      endpoint_ = hub_;
      return s;
    }
  } else {
    SetError("hub " + hub_ + " is not enrolled (run ferry-agent enroll)");
  }
  int64_t down_for = 0;
  {
    std::lock_guard lock(mu_);
    const int64_t now = AgentClock::RealNow();
    if (down_since_ == 0) {
      down_since_ = now;
      log::Warn("hub {} is unreachable: {}", hub_, last_error_);
    }
    down_for = now - down_since_;
  }
  if (down_for < deps_.config->replication.failover_after.count()) return nullptr;
  // Failover: the next hub after this one in the config's order.
  const auto& hubs = deps_.config->hubs;
  auto self = std::find_if(hubs.begin(), hubs.end(), [&](const auto& h) { return h.name == hub_; });
  const size_t start = self == hubs.end() ? 0 : static_cast<size_t>(self - hubs.begin()) + 1;
  for (size_t i = 0; i < hubs.size(); ++i) {
    const auto& candidate = hubs[(start + i) % hubs.size()];
    if (candidate.name == hub_) continue;
    const HubLink* link = Find(candidate.name);
    if (link == nullptr) continue;
    const std::string primary_error = [&] {
      std::lock_guard lock(mu_);
      return last_error_;
    }();
    if (auto s = ConnectTo(*link, /*failover=*/true)) {
      std::lock_guard lock(mu_);
      endpoint_ = link->name;
      SetErrorLocked("failing over to " + link->name + " (" + hub_ + " down for " +
                     std::to_string(down_for) + " s: " + primary_error + ")");
      return s;
    }
  }
  return nullptr;
}

void Replicator::Backoff() {
  std::unique_lock lock(mu_);
  state_ = "backoff";
  cv_.wait_for(lock, backoff_.Next(), [&] { return stop_; });
}

bool Replicator::Deliver(Session& session, const Delivery& d) {
  const std::string id_hex = HexEncode(d.snapshot.id);
  log::ScopedFields fields({{"hub", session.link.name}, {"snapshot", id_hex.substr(0, 16)}});
  const uint64_t limit = deps_.bandwidth_for ? deps_.bandwidth_for(d.snapshot.policy) : 0;
  bucket_.SetRate(limit);
  if (Status s = deps_.state->MarkSending(d.snapshot.seq, d.target, session.link.name); !s.ok()) {
    SetError("agent state: " + s.ToString());
    return false;
  }
  const uint64_t wire_before = session.connection->counters().bytes_sent;
  {
    std::lock_guard lock(mu_);
    state_ = "sending";
    current_policy_ = d.snapshot.policy;
    current_ = json::object{{"seq", d.snapshot.seq},
                            {"snapshot", id_hex},
                            {"policy", d.snapshot.policy},
                            {"dataset", d.snapshot.dataset},
                            {"bytes_total", d.snapshot.new_sealed_bytes}};
    current_connection_ = session.connection;
    current_wire_start_ = wire_before;
  }
  // Ids of the last snapshot of the dataset this hub committed are not asked about.
  std::optional<snapshot::SnapshotId> held;
  if (Result<std::optional<snapshot::SnapshotId>> last =
          deps_.state->LastCommittedAt(session.link.name, d.snapshot.dataset);
      last.ok()) {
    held = *last;
  }
  Result<mirror::PushReport> report = session.sender->Push(d.snapshot.id, held);
  const mirror::PushReport& progress = session.sender->progress();
  bytes_sent_total_ += progress.bytes_sent;
  {
    std::lock_guard lock(mu_);
    current_ = {};
    current_policy_.clear();
    current_connection_.reset();
  }
  if (report.ok()) {
    FERRY_CRASH_SITE("agent.delivery.before_record");
    Status s = deps_.state->MarkCommitted(d.snapshot.seq, d.target, session.link.name,
                                          progress.bytes_sent, AgentClock::RealNow());
    FERRY_CRASH_SITE("agent.delivery.after_record");
    if (!s.ok()) {
      SetError("agent state: " + s.ToString());
      return false;
    }
    ++commits_;
    report_dirty_.store(true);  // less is pending
    log::Info("snapshot {} of {} committed at {}: {} of {} chunks sent ({} bytes){}",
              id_hex.substr(0, 16), d.snapshot.dataset, session.link.name, report->chunks_sent,
              report->chunks_referenced, report->bytes_sent,
              report->already_present ? ", already there" : "");
    {
      std::lock_guard lock(mu_);
      backoff_.Reset();
      if (!session.failover) SetErrorLocked("");
    }
    if (deps_.on_committed) deps_.on_committed();
    return !session.failover;  // after a failover delivery, try the hub again first
  }
  const Status& err = report.status();
  const bool permanent = Permanent(err);
  deps_.state
      ->MarkAttemptFailed(d.snapshot.seq, d.target, err.ToString(), progress.bytes_sent, permanent)
      .IgnoreError();
  if (session.failover && err.code() == StatusCode::kNotFound) {
    // The failover hub lacks chunks that only the target still holds (the
    // outbox reclaimed them once the target had them): it cannot take this
    // snapshot; it waits for the target.
    SetError("failover hub " + session.link.name + " cannot take snapshot " + id_hex.substr(0, 16) +
             " (" + err.message() + "); it waits for " + hub_);
  } else {
    SetError("push of " + id_hex.substr(0, 16) + " to " + session.link.name + ": " +
             err.ToString());
  }
  log::Warn("push of snapshot {} to {} failed ({} bytes sent this attempt): {}",
            id_hex.substr(0, 16), session.link.name, progress.bytes_sent, err.ToString());
  return false;
}

void Replicator::Loop() {
  log::ScopedFields fields(std::vector<std::pair<std::string, std::string>>{{"replicator", hub_}});
  std::unique_ptr<Session> session;
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stop_) break;
      wake_ = false;
    }
    if (!session) {
      {
        std::lock_guard lock(mu_);
        state_ = "connecting";
      }
      session = Connect();
      connected_ = session != nullptr;
      if (!session) {
        Backoff();
        continue;
      }
      ++reconnects_;
      std::lock_guard lock(mu_);
      state_ = "idle";
    }
    Result<std::optional<Delivery>> next = deps_.state->NextDelivery(hub_);
    if (!next.ok()) {
      SetError("agent state: " + next.status().ToString());
      Backoff();
      continue;
    }
    if (next->has_value()) {
      if (!Deliver(*session, **next)) {
        session.reset();
        connected_ = false;
        // A push that failed on a working link waits too, so that a snapshot
        // the hub refuses is not retried in a tight loop.
        Backoff();
      }
      continue;
    }
    if (session->failover) {  // nothing left for the failover hub: go back to ours
      session.reset();
      connected_ = false;
      continue;
    }
    {
      std::lock_guard lock(mu_);
      state_ = "idle";
      if (wake_ || stop_) continue;
    }
    // Idle: listen for what the hub pushes (policies), a short while at a
    // time so that new work (Wake) is picked up within kIdlePoll: the link
    // channel has no way to be woken from another thread.
    Status s = session->sender->Listen(kIdlePoll);
    if (!s.ok()) {
      SetError("session with " + session->link.name + " ended: " + s.ToString());
      session.reset();
      connected_ = false;
    }
  }
  session.reset();
  connected_ = false;
}

json::object Replicator::StatusJson() const {
  std::lock_guard lock(mu_);
  json::object o;
  o["hub"] = hub_;
  o["connected"] = connected_.load();
  o["endpoint"] = endpoint_;
  o["state"] = state_;
  o["last_error"] = last_error_;
  o["last_error_unix"] = last_error_unix_;
  o["down_since_unix"] = down_since_;
  if (!current_.empty()) {
    json::object current = current_;
    if (current_connection_) {
      current["wire_bytes_sent"] = current_connection_->counters().bytes_sent - current_wire_start_;
    }
    o["current"] = std::move(current);
  }
  o["commits"] = commits_.load();
  o["bytes_sent"] = bytes_sent_total_.load();
  o["reconnects"] = reconnects_.load();
  return o;
}

}  // namespace ferry::agent
