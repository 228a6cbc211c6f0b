#include "edge-agent/stream_shipper.h"

#include <algorithm>
#include <deque>

#include "core/log.h"
#include "edge-agent/agent_clock.h"
#include "mirror/link/link_channel.h"
#include "mirror/replication/replication_sender.h"
#include "mirror/transport/link_client.h"
#include "snapshot/stream_batch.h"

namespace ferry::agent {

namespace json = boost::json;

struct StreamShipper::Session {
  std::shared_ptr<mirror::transport::LinkConnection> connection;
  std::unique_ptr<mirror::LinkChannel> channel;
  std::unique_ptr<mirror::ReplicationSender> sender;
  struct Stream {
    std::string name;
    snapshot::StreamLog* log = nullptr;
    uint64_t next_to_send = 0;
  };
  std::vector<Stream> streams;  // those not blocked
  struct InFlight {
    uint64_t request_id;
    size_t stream;  // index in `streams`
    uint64_t end;   // one past the batch's last record
    uint32_t count;
  };
  std::deque<InFlight> in_flight;
  snapshot::StreamBatchKey key;
  uint64_t batches_under_key = 0;
  ~Session() {
    if (channel) channel->Close(OkStatus());
  }
};

namespace {
constexpr std::chrono::milliseconds kIdleWait{100};
// A session that stayed up this long counts as one that worked, even if it
// had nothing to ship.
constexpr std::chrono::seconds kHealthySession{30};
}  // namespace

StreamShipper::StreamShipper(ShipperDeps deps) : deps_(std::move(deps)) {}

StreamShipper::~StreamShipper() { Stop(); }

void StreamShipper::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void StreamShipper::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    // Wakes a wait for an ack at once.
    if (current_) current_->Close(CancelledError("agent is stopping"));
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool StreamShipper::stopping() const {
  std::lock_guard lock(mu_);
  return stop_;
}

void StreamShipper::SetError(const std::string& error) {
  std::lock_guard lock(mu_);
  last_error_ = error;
  last_error_unix_ = error.empty() ? 0 : AgentClock::RealNow();
}

void StreamShipper::Loop() {
  log::ScopedFields fields(
      std::vector<std::pair<std::string, std::string>>{{"stream_shipper", deps_.hub.name}});
  // The same reconnect policy as snapshots (replication.backoffInitial and
  // backoffMax), started over by a session that worked: one the hub
  // acknowledged a batch in, or that stayed up for kHealthySession.
  ReconnectBackoff backoff(deps_.config->replication.backoff_initial,
                           deps_.config->replication.backoff_max);
  while (!stopping()) {
    const auto started = std::chrono::steady_clock::now();
    const uint64_t acked_before = batches_.load();  // batches the hub acknowledged
    Status ended = RunSession();
    connected_ = false;
    if (stopping()) break;
    failed_sessions_.fetch_add(1);
    SetError(ended.ToString());
    log::Warn("stream session with {} ended: {}", deps_.hub.name, ended.ToString());
    if (batches_.load() != acked_before ||
        std::chrono::steady_clock::now() - started >= kHealthySession) {
      backoff.Reset();
    }
    std::unique_lock lock(mu_);
    state_ = "backoff";
    cv_.wait_for(lock, backoff.Next(), [&] { return stop_; });
  }
}

Status StreamShipper::RunSession() {
  {
    std::lock_guard lock(mu_);
    state_ = "connecting";
  }
  mirror::transport::LinkClientOptions options;
  options.connect_timeout = std::chrono::seconds(10);
  ASSIGN_OR_RETURN(auto connection,
                   mirror::transport::LinkClient::Connect(deps_.hub.url, *deps_.identity,
                                                          deps_.hub.fingerprint, options));
  Session session;
  session.connection = connection;
  {
    std::lock_guard lock(mu_);
    if (stop_) return CancelledError("stopping");
    current_ = connection;
  }
  struct Forget {
    StreamShipper& self;
    ~Forget() {
      std::lock_guard lock(self.mu_);
      self.current_.reset();
    }
  } forget{*this};
  session.channel = std::make_unique<mirror::LinkChannel>(connection);
  mirror::SenderOptions sender_options;
  sender_options.software = "ferry-agent";
  sender_options.timeout = std::chrono::seconds(30);
  session.sender = std::make_unique<mirror::ReplicationSender>(*session.channel, sender_options);
  RETURN_IF_ERROR(session.sender->Hello());
  if (!session.sender->peer().enrolled()) {
    return PermissionDeniedError("hub " + deps_.hub.name + " does not know this agent's key");
  }
  if (!session.sender->PeerHas(mirror::kStreamsCapability)) {
    return UnimplementedError("hub " + deps_.hub.name + " (" + session.sender->peer().software() +
                              ") does not take streams");
  }
  RETURN_IF_ERROR(StartStreams(session));
  connected_ = true;
  ++reconnects_;
  SetError("");
  {
    std::lock_guard lock(mu_);
    state_ = "shipping";
  }
  uint64_t seen = deps_.streams->generation();
  while (!stopping()) {
    ASSIGN_OR_RETURN(bool sent, SendMore(session));
    if (!session.in_flight.empty()) {
      // Wait for an ack once the window is full, or when there is nothing
      // more to send now.
      if (!sent || session.in_flight.size() >= kMaxInFlight) {
        RETURN_IF_ERROR(AwaitOldestAck(session));
      }
      continue;
    }
    if (sent) continue;
    // Idle: wait for the next append, then look at what the hub sent
    // (pushed policies are dropped here; keepalive pings go out).
    seen = deps_.streams->WaitForAppend(seen, kIdleWait);
    RETURN_IF_ERROR(session.sender->Listen(std::chrono::milliseconds(0)));
  }
  return CancelledError("stopping");
}

Status StreamShipper::StartStreams(Session& session) {
  for (const StreamConfig& c : deps_.config->streams) {
    {
      std::lock_guard lock(mu_);
      if (blocked_.count(c.name)) continue;
    }
    snapshot::StreamLog* log = deps_.streams->Log(c.name);
    if (log == nullptr) continue;
    ASSIGN_OR_RETURN(mirror::StreamPosition at, session.sender->QueryStream(c.name));
    const uint64_t start = log->start_offset();
    const uint64_t end = log->end_offset();
    const bool hub_empty = at.start == 0 && at.next == 0;
    std::string blocked;
    if (!hub_empty && at.next < start) {
      blocked = "the hub holds offsets up to " + std::to_string(at.next) +
                " but this agent's log starts at " + std::to_string(start) + ": records [" +
                std::to_string(at.next) + ", " + std::to_string(start) + ") are lost to it";
    } else if (at.next > end) {
      blocked = "the hub holds offsets up to " + std::to_string(at.next) +
                ", past this agent's end " + std::to_string(end) +
                " (was the agent's state dir replaced?)";
    }
    if (!blocked.empty()) {
      log::Error("stream {} is not replicated to {}: {}", c.name, deps_.hub.name, blocked);
      std::lock_guard lock(mu_);
      blocked_[c.name] = blocked;
      continue;
    }
    const uint64_t from = hub_empty ? start : at.next;
    if (!hub_empty) deps_.streams->Acknowledged(c.name, deps_.hub.name, at.next);
    {
      std::lock_guard lock(mu_);
      acked_[c.name] = hub_empty ? 0 : at.next;
    }
    log::Info("stream {}: the hub {} holds [{}, {}); shipping from {}", c.name, deps_.hub.name,
              at.start, at.next, from);
    session.streams.push_back({c.name, log, from});
  }
  return OkStatus();
}

Result<bool> StreamShipper::SendMore(Session& session) {
  bool sent = false;
  for (size_t i = 0; i < session.streams.size(); ++i) {
    Session::Stream& s = session.streams[i];
    while (session.in_flight.size() < kMaxInFlight) {
      // Only durable records: a machine crash could give a non-durable
      // offset to another record.
      const uint64_t durable = s.log->durable_end_offset();
      if (s.next_to_send >= durable) break;
      ASSIGN_OR_RETURN(std::vector<snapshot::StreamRecord> records,
                       s.log->Read(s.next_to_send, kBatchRecords, kBatchBytes));
      while (!records.empty() && records.back().offset >= durable) records.pop_back();
      if (records.empty()) break;
      if (session.batches_under_key == 0 || session.batches_under_key >= kBatchesPerKey) {
        snapshot::Keyset::NewDataKey k = deps_.keyset->MakeDataKey();
        session.key.key = std::move(k.key);
        session.key.wrapped = std::move(k.wrapped);
        session.batches_under_key = 0;
      }
      std::vector<ByteView> views;
      views.reserve(records.size());
      for (const auto& r : records) views.emplace_back(r.data);
      ASSIGN_OR_RETURN(Bytes sealed,
                       snapshot::SealStreamBatch(s.name, s.next_to_send, views, session.key,
                                                 deps_.keyset->signing_key()));
      ++session.batches_under_key;
      const uint32_t count = static_cast<uint32_t>(records.size());
      ASSIGN_OR_RETURN(uint64_t id, session.sender->SendStreamAppend(
                                        s.name, s.next_to_send, count,
                                        std::string(reinterpret_cast<const char*>(sealed.data()),
                                                    sealed.size())));
      s.next_to_send += count;
      session.in_flight.push_back({id, i, s.next_to_send, count});
      sent = true;
    }
  }
  return sent;
}

Status StreamShipper::AwaitOldestAck(Session& session) {
  const Session::InFlight f = session.in_flight.front();
  ASSIGN_OR_RETURN(mirror::StreamPosition p, session.sender->WaitStreamAck(f.request_id));
  session.in_flight.pop_front();
  const Session::Stream& s = session.streams[f.stream];
  if (p.next < f.end) {
    return DataLossError("hub acknowledged stream " + s.name + " up to " + std::to_string(p.next) +
                         " for a batch ending at " + std::to_string(f.end));
  }
  ++batches_;
  records_ += f.count;
  {
    std::lock_guard lock(mu_);
    acked_[s.name] = p.next;
  }
  deps_.streams->Acknowledged(s.name, deps_.hub.name, p.next);
  return OkStatus();
}

json::object StreamShipper::StatusJson() const {
  std::lock_guard lock(mu_);
  json::object o;
  o["hub"] = deps_.hub.name;
  o["connected"] = connected_.load();
  o["state"] = state_;
  o["last_error"] = last_error_;
  o["last_error_unix"] = last_error_unix_;
  json::object streams;
  for (const auto& [name, acked] : acked_) streams[name] = json::object{{"acked", acked}};
  for (const auto& [name, why] : blocked_) {
    json::object& s = streams[name].emplace_object();
    s["blocked"] = why;
  }
  o["streams"] = std::move(streams);
  o["batches"] = batches_.load();
  o["records"] = records_.load();
  o["reconnects"] = reconnects_.load();
  o["failed_sessions"] = failed_sessions_.load();
  return o;
}

}  // namespace ferry::agent
