#include "mirror/transport/internal/link_session.h"

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <exception>
#include <utility>

#include "core/log.h"
#include "core/version.h"
#include "mirror/identity.h"

namespace ferry::mirror::transport::internal {
namespace {

// Beast refuses a longer WebSocket message from its frame header, before
// reading or allocating the payload. The limit counts payload bytes only,
// so it is exactly the largest Noise message: no margin is needed.
constexpr size_t kMaxWsMessage = noise::kMaxMessageSize;

std::string Millis(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

ByteView View(const beast::flat_buffer& buffer) {
  auto data = buffer.cdata();
  return ByteView(static_cast<const uint8_t*>(data.data()), data.size());
}

const beast::error_category& WebSocketCategory() {
  static const beast::error_category& category =
      websocket::make_error_code(websocket::error::closed).category();
  return category;
}

const beast::error_category& HttpCategory() {
  static const beast::error_category& category =
      http::make_error_code(http::error::end_of_stream).category();
  return category;
}

bool IsConnectionLoss(const beast::error_code& ec) {
  return ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::connection_aborted || ec == asio::error::broken_pipe ||
         ec == http::error::end_of_stream || ec == beast::error::timeout;
}

// A printable excerpt of an HTTP body for an error message.
std::string BodyExcerpt(const std::string& body) {
  std::string out;
  for (char c : body) {
    if (out.size() >= 80) {
      out += "...";
      break;
    }
    out.push_back((c >= 0x20 && c < 0x7f) ? c : ' ');
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// ClientRuntime

ClientRuntime::ClientRuntime()
    : ioc_(std::make_shared<asio::io_context>(1)), work_(asio::make_work_guard(*ioc_)) {
  thread_ = std::thread([ioc = ioc_] {
    for (;;) {
      // Handlers do not throw by design; an exception here (bad_alloc) is
      // logged and the loop goes on serving the other operations.
      try {
        ioc->run();
        return;
      } catch (const std::exception& e) {
        log::Error("link client I/O thread: unexpected exception: {}", e.what());
      }
    }
  });
}

ClientRuntime::~ClientRuntime() {
  work_.reset();
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();  // cannot happen by design; never join ourselves
    } else {
      thread_.join();
    }
  }
}

// ---------------------------------------------------------------------------
// LinkSession: construction and handshake

LinkSession::LinkSession(std::shared_ptr<asio::io_context> ioc, beast::tcp_stream stream, Role role,
                         const LinkOptions& options, const noise::KeyPair& local_static)
    : ioc_(std::move(ioc)),
      ws_(std::move(stream)),
      executor_(ws_.get_executor()),
      role_(role),
      options_(options),
      local_static_{local_static.public_key, local_static.private_key.Clone()},
      read_buffer_(kMaxWsMessage),
      handshake_timer_(executor_),
      keepalive_timer_(executor_),
      close_timer_(executor_) {
  beast::error_code ec;
  // Small frames (acks, queries) go out at once instead of waiting behind
  // Nagle's algorithm for the peer's delayed ACK.
  beast::get_lowest_layer(ws_).socket().set_option(tcp::no_delay(true), ec);
  tcp::endpoint ep = beast::get_lowest_layer(ws_).socket().remote_endpoint(ec);
  if (ec) {
    remote_endpoint_ = "(unknown peer)";
  } else if (ep.address().is_v6()) {
    remote_endpoint_ = "[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
  } else {
    remote_endpoint_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  }
}

LinkSession::~LinkSession() = default;

void LinkSession::ConfigureStream() {
  ws_.binary(true);
  ws_.auto_fragment(false);
  ws_.read_message_max(kMaxWsMessage);
  // A client masks what it sends (RFC 6455 5.3), through a buffer of this
  // size; Beast's default (4 KiB) would write each 64 KiB message in 16
  // pieces, a system call each.
  ws_.write_buffer_bytes(kMaxWsMessage + 16);
  // Beast's own timer bounds the WebSocket opening handshake and, later,
  // the closing handshake; our handshake timer bounds the whole handshake.
  websocket::stream_base::timeout timeout{};
  timeout.handshake_timeout = std::max<SteadyClock::duration>(
      options_.close_timeout, handshake_deadline_ - SteadyClock::now());
  timeout.idle_timeout = websocket::stream_base::none();
  timeout.keep_alive_pings = false;  // our keepalive: ping_interval and idle_timeout
  ws_.set_option(timeout);
  if (role_ == Role::kServer) {
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
      res.set(http::field::server, std::string("ferry/") + kFerryVersion);
      res.set(http::field::sec_websocket_protocol, kLinkProtocol);
    }));
  } else {
    ws_.set_option(websocket::stream_base::decorator([](websocket::request_type& req) {
      req.set(http::field::user_agent, std::string("ferry/") + kFerryVersion);
      req.set(http::field::sec_websocket_protocol, kLinkProtocol);
    }));
  }
}

void LinkSession::ArmHandshakeTimer() {
  handshake_timer_.expires_at(handshake_deadline_);
  handshake_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec || self->phase_ != Phase::kHandshake) return;
    self->FinishHandshake(DeadlineExceededError("the link handshake with " +
                                                self->remote_endpoint_ + " did not finish within " +
                                                Millis(self->handshake_timeout_)));
  });
}

void LinkSession::StartServer(http::request<http::string_body> request,
                              SteadyClock::time_point deadline, HandshakeDone done) {
  asio::dispatch(executor_, [self = shared_from_this(), request = std::move(request), deadline,
                             done = std::move(done)]() mutable {
    self->handshake_done_ = std::move(done);
    self->request_ = std::move(request);
    self->handshake_deadline_ = deadline;
    self->handshake_timeout_ = deadline - SteadyClock::now();
    // The HTTP read used the tcp_stream's timer; from here the WebSocket
    // stream's timeout option and our handshake timer take over.
    beast::get_lowest_layer(self->ws_).expires_never();
    self->ConfigureStream();
    self->ArmHandshakeTimer();
    self->ws_.async_accept(*self->request_,
                           beast::bind_front_handler(&LinkSession::OnAccept, self));
  });
}

void LinkSession::OnAccept(beast::error_code ec) {
  if (phase_ != Phase::kHandshake) return;
  request_.reset();
  if (ec) {
    return FinishHandshake(
        UnavailableError("WebSocket accept from " + remote_endpoint_ + " failed: " + ec.message()));
  }
  BeginNoise();
}

void LinkSession::StartClient(std::string host, std::string target, std::string url,
                              SteadyClock::time_point deadline, HandshakeDone done) {
  asio::dispatch(
      executor_, [self = shared_from_this(), host = std::move(host), target = std::move(target),
                  url = std::move(url), deadline, done = std::move(done)]() mutable {
        self->handshake_done_ = std::move(done);
        self->url_ = std::move(url);
        self->target_ = target;
        self->handshake_deadline_ = deadline;
        self->handshake_timeout_ = deadline - SteadyClock::now();
        beast::get_lowest_layer(self->ws_).expires_never();
        self->ConfigureStream();
        self->ArmHandshakeTimer();
        self->ws_.async_handshake(self->response_, host, target,
                                  beast::bind_front_handler(&LinkSession::OnWsHandshake, self));
      });
}

void LinkSession::OnWsHandshake(beast::error_code ec) {
  if (phase_ != Phase::kHandshake) return;
  if (ec) return FinishHandshake(WsHandshakeError(ec));
  if (response_[http::field::sec_websocket_protocol] != kLinkProtocol) {
    return FinishHandshake(FailedPreconditionError(
        url_ + " is not a Ferry hub: it accepted the WebSocket upgrade at " + target_ +
        " but not the " + std::string(kLinkProtocol) + " protocol"));
  }
  BeginNoise();
}

Status LinkSession::WsHandshakeError(beast::error_code ec) const {
  if (ec == websocket::error::upgrade_declined) {
    auto it = response_.find(kLinkProtocolsHeader);
    if (it != response_.end()) {
      return FailedPreconditionError("the hub at " + url_ + " does not speak " +
                                     std::string(kLinkProtocol) + " (it speaks " +
                                     std::string(it->value()) + "): upgrade this side or the hub");
    }
    std::string what = "it answered HTTP " + std::to_string(response_.result_int());
    if (!response_.reason().empty()) what += " " + std::string(response_.reason());
    if (!response_.body().empty()) what += " (\"" + BodyExcerpt(response_.body()) + "\")";
    return FailedPreconditionError(url_ + " is not a Ferry hub: " + what +
                                   " instead of accepting the WebSocket upgrade at " + target_);
  }
  if (ec == http::error::end_of_stream || ec == asio::error::eof) {
    return UnavailableError(url_ +
                            " closed the connection without answering the WebSocket upgrade "
                            "(is it a Ferry hub?)");
  }
  if (ec == beast::error::timeout) {
    return DeadlineExceededError(url_ + " did not answer the WebSocket upgrade within " +
                                 Millis(handshake_timeout_));
  }
  if (ec.category() == HttpCategory()) {
    return FailedPreconditionError(url_ + " is not a Ferry hub: its answer is not HTTP (" +
                                   ec.message() + ")");
  }
  if (ec.category() == WebSocketCategory()) {
    return FailedPreconditionError(url_ + " is not a Ferry hub: its answer is not a valid " +
                                   "WebSocket upgrade (" + ec.message() + ")");
  }
  return UnavailableError("WebSocket upgrade with " + url_ + " failed: " + ec.message());
}

void LinkSession::BeginNoise() {
  noise::HandshakeConfig config;
  config.pattern = noise::Pattern::kXX;
  config.initiator = role_ == Role::kClient;
  config.prologue = ToBytes(kLinkProtocol);
  config.local_static = noise::KeyPair{local_static_.public_key, local_static_.private_key.Clone()};
  auto created = noise::HandshakeState::Create(std::move(config));
  if (!created.ok()) return FinishHandshake(created.status().WithContext("noise handshake"));
  handshake_ = std::move(created).value();
  HandshakeStep();
}

void LinkSession::HandshakeStep() {
  if (phase_ != Phase::kHandshake) return;
  if (handshake_->IsFinished()) {
    auto ciphers = handshake_->Split();
    std::optional<sodium::PublicKey> remote = handshake_->remote_static();
    if (!ciphers.ok()) return FinishHandshake(ciphers.status().WithContext("noise handshake"));
    if (!remote) return FinishHandshake(InternalError("noise handshake: no remote static key"));
    peer_key_ = *remote;
    handshake_hash_ = ciphers->handshake_hash;
    peer_known_.store(true, std::memory_order_release);
    {
      std::lock_guard lock(send_mu_);
      writer_.emplace(options_.max_frame_bytes, std::move(ciphers->send));
    }
    reader_.emplace(options_.max_frame_bytes, std::move(ciphers->receive));
    handshake_.reset();
    return FinishHandshake(OkStatus());
  }
  if (handshake_->IsMyTurn()) {
    if (remote_check_) {
      if (std::optional<sodium::PublicKey> remote = handshake_->remote_static()) {
        Status verdict = remote_check_(*remote);
        remote_check_ = nullptr;  // once
        if (!verdict.ok()) return FinishHandshake(verdict);
      }
    }
    handshake_out_.clear();
    Status s = handshake_->WriteMessage({}, handshake_out_);
    if (!s.ok()) return FinishHandshake(s.WithContext("noise handshake"));
    ws_.async_write(asio::buffer(handshake_out_),
                    beast::bind_front_handler(&LinkSession::OnHandshakeWrite, shared_from_this()));
  } else {
    ws_.async_read(read_buffer_,
                   beast::bind_front_handler(&LinkSession::OnHandshakeRead, shared_from_this()));
  }
}

void LinkSession::OnHandshakeWrite(beast::error_code ec, size_t bytes) {
  if (phase_ != Phase::kHandshake) return;
  if (ec) return FinishHandshake(HandshakeIoError(ec));
  bytes_sent_ += bytes;
  HandshakeStep();
}

void LinkSession::OnHandshakeRead(beast::error_code ec, size_t bytes) {
  if (phase_ != Phase::kHandshake) return;
  if (ec) return FinishHandshake(HandshakeIoError(ec));
  bytes_received_ += bytes;
  if (!ws_.got_binary()) {
    return FinishHandshake(
        DataLossError("noise handshake: " + remote_endpoint_ + " sent a text WebSocket message"));
  }
  Bytes payload;
  Status s = handshake_->ReadMessage(View(read_buffer_), payload);
  read_buffer_.consume(read_buffer_.size());
  if (!s.ok()) {
    return FinishHandshake(s.WithContext(
        "noise handshake with " + (role_ == Role::kClient ? url_ : remote_endpoint_) + " failed"));
  }
  if (!payload.empty()) {
    // ferry-link-v1 handshake payloads are empty; a later version that
    // needs them takes a new protocol name.
    return FinishHandshake(DataLossError("noise handshake message carries a payload of " +
                                         std::to_string(payload.size()) + " bytes; " +
                                         std::string(kLinkProtocol) + " payloads are empty"));
  }
  HandshakeStep();
}

Status LinkSession::HandshakeIoError(beast::error_code ec) const {
  const std::string peer = role_ == Role::kClient ? url_ : remote_endpoint_;
  if (ec == websocket::error::closed) {
    const websocket::close_reason& reason = ws_.reason();
    return UnavailableError(peer + " closed the link during the noise handshake (close code " +
                            std::to_string(reason.code) +
                            (reason.reason.empty()
                                 ? std::string()
                                 : " " + std::string(reason.reason.data(), reason.reason.size())) +
                            ")");
  }
  if (ec == websocket::error::message_too_big) {
    return DataLossError("noise handshake: " + peer + " sent a message over " +
                         std::to_string(kMaxWsMessage) + " bytes");
  }
  if (IsConnectionLoss(ec)) {
    return UnavailableError("connection to " + peer +
                            " lost during the noise handshake: " + ec.message());
  }
  return UnavailableError("noise handshake with " + peer + " failed: " + ec.message());
}

void LinkSession::FinishHandshake(Status status) {
  if (phase_ != Phase::kHandshake) return;
  handshake_timer_.cancel();
  if (status.ok()) {
    phase_ = Phase::kOpen;
    websocket::stream_base::timeout timeout{};
    timeout.handshake_timeout = options_.close_timeout;  // now bounds the closing handshake
    timeout.idle_timeout = websocket::stream_base::none();
    timeout.keep_alive_pings = false;
    ws_.set_option(timeout);
  } else {
    handshake_.reset();
    {
      std::lock_guard lock(mu_);
      SetTerminalLocked(status);
    }
    // Before the handshake completed the peer is not authenticated: no
    // closing handshake, just the socket.
    HardClose();
  }
  HandshakeDone done = std::move(handshake_done_);
  handshake_done_ = nullptr;
  if (done) done(status);
}

// ---------------------------------------------------------------------------
// Data phase

void LinkSession::Activate() {
  asio::dispatch(executor_, [self = shared_from_this()] {
    if (self->phase_ != Phase::kOpen) return;
    self->ws_.control_callback([raw = self.get()](websocket::frame_type kind, beast::string_view) {
      raw->OnControlFrame(kind);
    });
    self->last_received_ = self->last_ping_ = SteadyClock::now();
    self->DoRead();
    self->ArmKeepalive();
    self->MaybeWrite();
  });
}

void LinkSession::OnControlFrame(websocket::frame_type /*kind*/) {
  // A ping, a pong or a close: the peer is alive.
  last_received_ = SteadyClock::now();
}

void LinkSession::DoRead() {
  ws_.async_read(read_buffer_, beast::bind_front_handler(&LinkSession::OnRead, shared_from_this()));
}

void LinkSession::ResumeRead() {
  if (phase_ != Phase::kOpen) return;
  last_received_ = SteadyClock::now();
  DoRead();
}

void LinkSession::OnRead(beast::error_code ec, size_t bytes) {
  if (phase_ != Phase::kOpen) return;  // closing: the close path owns the stream
  if (ec) return Fail(ReadError(ec));
  bytes_received_ += bytes;
  last_received_ = SteadyClock::now();
  if (!ws_.got_binary()) {
    return Fail(DataLossError("peer sent a text WebSocket message; link messages are binary"));
  }
  Bytes frame;
  Result<bool> complete = reader_->ReadMessage(View(read_buffer_), frame);
  read_buffer_.consume(read_buffer_.size());
  if (!complete.ok()) return Fail(complete.status());
  bool pause = false;
  if (*complete) {
    ++frames_received_;
    std::lock_guard lock(mu_);
    if (!closed_locally_) {
      inbound_bytes_ += frame.size();
      inbound_.push_back(std::move(frame));
      receive_cv_.notify_one();
      pause = InboundFullLocked();
      read_paused_ = pause;
    }
  }
  if (!pause) DoRead();
}

Status LinkSession::ReadError(beast::error_code ec) const {
  if (ec == websocket::error::closed) {
    const websocket::close_reason& reason = ws_.reason();
    return UnavailableError("peer closed the link (close code " + std::to_string(reason.code) +
                            (reason.reason.empty()
                                 ? std::string()
                                 : " " + std::string(reason.reason.data(), reason.reason.size())) +
                            ")");
  }
  if (ec == websocket::error::message_too_big) {
    return ResourceExhaustedError("peer sent a WebSocket message over " +
                                  std::to_string(kMaxWsMessage) +
                                  " bytes, the largest Noise message");
  }
  if (ec.category() == WebSocketCategory()) {
    return DataLossError("WebSocket protocol error from peer: " + ec.message());
  }
  if (IsConnectionLoss(ec)) return UnavailableError("connection to peer lost: " + ec.message());
  return UnavailableError("reading from the link failed: " + ec.message());
}

void LinkSession::MaybeWrite() {
  if (write_in_flight_ || phase_ != Phase::kOpen) return;
  const Bytes* message = nullptr;
  {
    std::lock_guard lock(mu_);
    // References to deque elements stay valid while others push_back.
    if (!outbound_.empty()) message = &outbound_.front().message;
  }
  if (message == nullptr) {
    if (close_after_drain_) BeginClose(websocket::close_code::normal);
    return;
  }
  write_in_flight_ = true;
  ws_.async_write(asio::buffer(*message),
                  beast::bind_front_handler(&LinkSession::OnWrite, shared_from_this()));
}

void LinkSession::OnWrite(beast::error_code ec, size_t bytes) {
  write_in_flight_ = false;
  if (ec) {
    if (phase_ == Phase::kOpen) {
      Fail(IsConnectionLoss(ec) ? UnavailableError("connection to peer lost: " + ec.message())
                                : UnavailableError("writing to the link failed: " + ec.message()));
    }
    return;
  }
  bytes_sent_ += bytes;
  {
    std::lock_guard lock(mu_);
    if (!outbound_.empty()) {
      const Outbound& done = outbound_.front();
      if (done.last_of_frame) {
        ++frames_sent_;
        outbound_frames_ -= std::min<size_t>(outbound_frames_, 1);
        outbound_bytes_ -= std::min(outbound_bytes_, done.frame_size);
      }
      outbound_.pop_front();
    }
    send_cv_.notify_all();
  }
  MaybeWrite();
}

void LinkSession::ArmKeepalive() {
  keepalive_timer_.expires_at(
      std::min(last_received_ + options_.idle_timeout, last_ping_ + options_.ping_interval));
  keepalive_timer_.async_wait(
      beast::bind_front_handler(&LinkSession::OnKeepalive, shared_from_this()));
}

void LinkSession::OnKeepalive(beast::error_code ec) {
  if (ec || phase_ != Phase::kOpen) return;
  const SteadyClock::time_point now = SteadyClock::now();
  bool paused;
  {
    std::lock_guard lock(mu_);
    paused = read_paused_;
  }
  // While the inbound queue is full we do not read, so we cannot hear the
  // peer: hold the idle clock.
  if (paused) last_received_ = now;
  if (now - last_received_ >= options_.idle_timeout) {
    return Fail(UnavailableError("idle timeout: nothing received from the peer for " +
                                 Millis(now - last_received_)));
  }
  if (now - last_ping_ >= options_.ping_interval) {
    last_ping_ = now;
    if (!ping_in_flight_) {
      ping_in_flight_ = true;
      ws_.async_ping({}, [self = shared_from_this()](beast::error_code) {
        // A failed ping needs no handling: the read side sees the same failure.
        self->ping_in_flight_ = false;
      });
    }
  }
  ArmKeepalive();
}

// ---------------------------------------------------------------------------
// Ending

bool LinkSession::SetTerminalLocked(const Status& status) {
  if (terminal_) return false;
  terminal_ = status;
  send_cv_.notify_all();
  receive_cv_.notify_all();
  const std::string who = Describe();
  if (!peer_known_.load(std::memory_order_acquire)) {
    log::Info("link handshake with {} failed: {}", who, status.ToString());
  } else if (status.code() == StatusCode::kUnavailable) {
    log::Info("link session with {} ended: {}", who, status.ToString());
  } else {
    log::Warn("link session with {} ended: {}", who, status.ToString());
  }
  return true;
}

void LinkSession::Fail(const Status& status) {
  {
    std::lock_guard lock(mu_);
    SetTerminalLocked(status);
    // Queued frames will never be sent; keep only the message being written
    // (its buffer is in use until the write completes).
    while (outbound_.size() > (write_in_flight_ ? 1u : 0u)) outbound_.pop_back();
    outbound_frames_ = 0;
    outbound_bytes_ = 0;
  }
  if (phase_ == Phase::kHandshake) return FinishHandshake(status);
  BeginClose(CloseCodeFor(status));
}

void LinkSession::BeginClose(websocket::close_code code) {
  if (phase_ == Phase::kClosing || phase_ == Phase::kClosed) return;
  phase_ = Phase::kClosing;
  keepalive_timer_.cancel();
  handshake_timer_.cancel();
  if (!close_timer_armed_) {
    close_timer_armed_ = true;
    close_timer_.expires_after(options_.close_timeout);
    close_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->HardClose();
    });
  }
  if (!ws_.is_open()) return HardClose();
  std::string reason;
  {
    std::lock_guard lock(mu_);
    if (terminal_ && !closed_locally_) reason = std::string(StatusCodeName(terminal_->code()));
  }
  ws_.async_close(websocket::close_reason(code, reason),
                  [self = shared_from_this()](beast::error_code) { self->HardClose(); });
}

void LinkSession::HardClose() {
  if (phase_ == Phase::kClosed) return;
  phase_ = Phase::kClosed;
  handshake_timer_.cancel();
  keepalive_timer_.cancel();
  close_timer_.cancel();
  beast::error_code ec;
  tcp::socket& socket = beast::get_lowest_layer(ws_).socket();
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

websocket::close_code LinkSession::CloseCodeFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return websocket::close_code::normal;
    case StatusCode::kDataLoss:
    case StatusCode::kInvalidArgument:
      return websocket::close_code::protocol_error;
    case StatusCode::kResourceExhausted:
      return websocket::close_code::too_big;
    case StatusCode::kUnauthenticated:
    case StatusCode::kPermissionDenied:
    case StatusCode::kFailedPrecondition:
      return websocket::close_code::policy_error;
    case StatusCode::kUnavailable:
    case StatusCode::kCancelled:
    case StatusCode::kDeadlineExceeded:
      return websocket::close_code::going_away;
    default:
      return websocket::close_code::internal_error;
  }
}

std::string LinkSession::Describe() const {
  if (!peer_known_.load(std::memory_order_acquire)) return remote_endpoint_;
  return remote_endpoint_ + " (" + Fingerprint(peer_key_) + ")";
}

// ---------------------------------------------------------------------------
// Thread-safe API

bool LinkSession::OutboundHasRoomLocked(size_t frame_size) const {
  if (outbound_frames_ >= options_.send_queue_frames) return false;
  return outbound_bytes_ == 0 || outbound_bytes_ + frame_size <= options_.send_queue_bytes;
}

bool LinkSession::InboundFullLocked() const {
  return inbound_.size() >= options_.receive_queue_frames ||
         inbound_bytes_ >= options_.receive_queue_bytes;
}

Status LinkSession::SendFrame(ByteView frame) {
  if (frame.size() > options_.max_frame_bytes) {
    return ResourceExhaustedError("frame of " + std::to_string(frame.size()) +
                                  " bytes exceeds the link's maximum of " +
                                  std::to_string(options_.max_frame_bytes) + " bytes");
  }
  std::lock_guard send_lock(send_mu_);
  {
    std::unique_lock lock(mu_);
    send_cv_.wait(lock,
                  [&] { return terminal_.has_value() || OutboundHasRoomLocked(frame.size()); });
    if (terminal_) return *terminal_;
  }
  if (!writer_) return FailedPreconditionError("link session is not open");
  std::vector<Bytes> messages;
  // Encryption runs on the caller's thread, not on the I/O threads.
  if (Status s = writer_->WriteFrame(frame, messages); !s.ok()) {
    Abort(s);  // the nonce space is exhausted: the session cannot go on
    return s;
  }
  return EnqueueMessages(std::move(messages), frame.size());
}

Status LinkSession::SendRecordForTest(ByteView record) {
  std::lock_guard send_lock(send_mu_);
  if (!writer_) return FailedPreconditionError("link session is not open");
  std::vector<Bytes> messages;
  RETURN_IF_ERROR(writer_->WriteRecordForTest(record, messages));
  return EnqueueMessages(std::move(messages), 0);
}

Status LinkSession::EnqueueMessages(std::vector<Bytes> messages, size_t frame_size) {
  std::lock_guard lock(mu_);
  if (terminal_) return *terminal_;
  for (size_t i = 0; i < messages.size(); ++i) {
    const bool last = i + 1 == messages.size();
    outbound_.push_back(Outbound{std::move(messages[i]), last, last ? frame_size : 0});
  }
  ++outbound_frames_;
  outbound_bytes_ += frame_size;
  // Posted under mu_ while the session is up: the I/O threads run until
  // the session has ended, so the handler cannot be stranded.
  asio::post(executor_, [self = shared_from_this()] { self->MaybeWrite(); });
  return OkStatus();
}

Result<Bytes> LinkSession::ReceiveFrame(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  receive_cv_.wait_for(lock, timeout, [&] { return !inbound_.empty() || terminal_.has_value(); });
  if (!inbound_.empty()) {
    Bytes frame = std::move(inbound_.front());
    inbound_.pop_front();
    inbound_bytes_ -= frame.size();
    if (read_paused_ && !terminal_ && !InboundFullLocked()) {
      read_paused_ = false;
      asio::post(executor_, [self = shared_from_this()] { self->ResumeRead(); });
    }
    return frame;
  }
  if (terminal_) return *terminal_;
  return DeadlineExceededError("no frame from the peer within " + Millis(timeout));
}

void LinkSession::Close(const Status& reason) {
  std::lock_guard lock(mu_);
  if (terminal_) return;
  closed_locally_ = true;
  SetTerminalLocked(UnavailableError("link closed by this side" +
                                     (reason.ok() ? std::string() : ": " + reason.ToString())));
  inbound_.clear();
  inbound_bytes_ = 0;
  asio::post(executor_, [self = shared_from_this()] {
    if (self->phase_ != Phase::kOpen) return;
    self->close_after_drain_ = true;
    if (!self->close_timer_armed_) {
      self->close_timer_armed_ = true;
      self->close_timer_.expires_after(self->options_.close_timeout);
      self->close_timer_.async_wait([self](beast::error_code ec) {
        if (!ec) self->HardClose();
      });
    }
    self->MaybeWrite();
  });
}

void LinkSession::Abort(const Status& reason) {
  {
    std::lock_guard lock(mu_);
    SetTerminalLocked(reason);
  }
  asio::post(executor_, [self = shared_from_this(), reason] { self->Fail(reason); });
}

LinkCounters LinkSession::counters() const {
  LinkCounters c;
  c.bytes_sent = bytes_sent_.load();
  c.bytes_received = bytes_received_.load();
  c.frames_sent = frames_sent_.load();
  c.frames_received = frames_received_.load();
  return c;
}

Status LinkSession::status() const {
  std::lock_guard lock(mu_);
  return terminal_ ? *terminal_ : OkStatus();
}

}  // namespace ferry::mirror::transport::internal
