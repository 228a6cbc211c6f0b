#include "mirror/transport/link_server.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <exception>
#include <list>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "core/log.h"
#include "core/version.h"
#include "mirror/transport/internal/link_session.h"

namespace ferry::mirror::transport {
namespace internal {
namespace {

std::string_view PathOf(beast::string_view target) {
  std::string_view t(target.data(), target.size());
  size_t q = t.find('?');
  return q == std::string_view::npos ? t : t.substr(0, q);
}

// Whether a Sec-WebSocket-Protocol value (a comma-separated list) offers
// ferry-link-v1. Subprotocol names compare case-sensitively (RFC 6455 4.1).
bool OffersLinkProtocol(std::string_view offered) {
  while (!offered.empty()) {
    size_t comma = offered.find(',');
    std::string_view token = offered.substr(0, comma);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) {
      token.remove_prefix(1);
    }
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    if (token == kLinkProtocol) return true;
    if (comma == std::string_view::npos) break;
    offered.remove_prefix(comma + 1);
  }
  return false;
}

HttpResponse TextResponse(http::status status, unsigned version, std::string body) {
  HttpResponse res{status, version};
  res.set(http::field::server, std::string("ferry/") + kFerryVersion);
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(body) + "\n";
  return res;
}

void RunIoContext(asio::io_context& ioc, const char* who) {
  for (;;) {
    // Handlers do not throw by design; an exception here (bad_alloc) is
    // logged and the thread goes on serving the other connections.
    try {
      ioc.run();
      return;
    } catch (const std::exception& e) {
      log::Error("{}: unexpected exception on an I/O thread: {}", who, e.what());
    }
  }
}

}  // namespace

class HttpConnection;

// Everything LinkServer owns. Connections and sessions refer to it by
// reference: Stop() waits for all of them before it can be destroyed.
class ServerState {
 public:
  ServerState(const StaticIdentity& identity, const LinkServerOptions& options,
              LinkServerCallbacks callbacks)
      : ioc_(std::make_shared<asio::io_context>(std::max(1, options.io_threads))),
        acceptor_(asio::make_strand(*ioc_)),
        accept_backoff_(acceptor_.get_executor()),
        static_key_{identity.public_key(), identity.private_key().Clone()},
        options_(options),
        callbacks_(std::move(callbacks)) {}

  Status Listen();
  void Run();
  void Stop();
  void StopAccepting();
  bool AtSessionLimit() const;

  // Called by connections (any thread).
  bool RegisterSession(const std::shared_ptr<LinkSession>& session);
  void OnSessionReady(const std::shared_ptr<LinkSession>& session);

  const std::shared_ptr<asio::io_context>& ioc() const { return ioc_; }
  const noise::KeyPair& static_key() const { return static_key_; }
  const LinkServerOptions& options() const { return options_; }
  const LinkServerCallbacks& callbacks() const { return callbacks_; }
  uint16_t port() const { return port_; }
  size_t active_sessions() const {
    std::lock_guard lock(mu_);
    return active_sessions_;
  }

 private:
  void DoAccept();
  void OnAccept(beast::error_code ec, tcp::socket socket);
  void RunSession(const std::shared_ptr<LinkSession>& session);
  void ReapFinishedLocked();

  // Declared first: destroyed after the acceptor and timer.
  const std::shared_ptr<asio::io_context> ioc_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> io_threads_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_backoff_;
  const noise::KeyPair static_key_;
  const LinkServerOptions options_;
  const LinkServerCallbacks callbacks_;
  uint16_t port_ = 0;
  std::mutex stop_mu_;    // serialises Stop()
  bool stopped_ = false;  // GUARDED_BY(stop_mu_)

  mutable std::mutex mu_;
  bool stopping_ = false;                                   // GUARDED_BY(mu_)
  std::vector<std::weak_ptr<HttpConnection>> connections_;  // GUARDED_BY(mu_)
  std::vector<std::weak_ptr<LinkSession>> sessions_;        // GUARDED_BY(mu_)
  std::list<std::thread> session_threads_;                  // GUARDED_BY(mu_)
  std::vector<std::thread::id> finished_threads_;           // GUARDED_BY(mu_)
  size_t active_sessions_ = 0;                              // GUARDED_BY(mu_)

  friend class HttpConnection;
};

// One accepted TCP connection while it speaks HTTP: reads requests (size
// limits, timeouts), answers them, or hands the socket to a LinkSession on
// a link upgrade. Runs on its own strand.
class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  HttpConnection(ServerState& server, tcp::socket socket)
      : server_(server), stream_(std::move(socket)), accepted_at_(SteadyClock::now()) {}

  void Start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      // The first request (and the whole link handshake) must arrive within
      // handshake_timeout of the accept: a silent client is cut.
      self->stream_.expires_at(self->accepted_at_ + self->server_.options().handshake_timeout);
      self->DoRead();
    });
  }

  // Closes the socket unless it went to a session (any thread).
  void Shutdown() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->handed_over_) return;
      beast::error_code ec;
      self->stream_.socket().close(ec);
    });
  }

 private:
  void DoRead() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_.options().max_http_header_bytes));
    parser_->body_limit(server_.options().max_http_body_bytes);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&HttpConnection::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t /*bytes*/) {
    if (ec == http::error::end_of_stream) return Close();
    if (ec == http::error::header_limit) {
      return Respond(TextResponse(http::status::request_header_fields_too_large, 11,
                                  "request header too large"),
                     false);
    }
    if (ec == http::error::body_limit) {
      return Respond(TextResponse(http::status::payload_too_large, 11, "request body too large"),
                     false);
    }
    if (ec == beast::error::timeout || ec == asio::error::operation_aborted) return Close();
    if (ec.category() == http::make_error_code(http::error::end_of_stream).category()) {
      return Respond(TextResponse(http::status::bad_request, 11, "malformed HTTP request"), false);
    }
    if (ec) return Close();

    HttpRequest req = parser_->release();
    const std::string_view path = PathOf(req.target());
    if (websocket::is_upgrade(req)) {
      if (path != kLinkPath) {
        return Respond(TextResponse(http::status::not_found, req.version(), "not found"), false);
      }
      const beast::string_view offered = req[http::field::sec_websocket_protocol];
      if (!OffersLinkProtocol(std::string_view(offered.data(), offered.size()))) {
        HttpResponse res = TextResponse(
            http::status::bad_request, req.version(),
            "this hub speaks " + std::string(kLinkProtocol) + "; the client offered: " +
                (offered.empty() ? std::string("no protocol")
                                 : std::string(offered.data(), offered.size())));
        res.set(kLinkProtocolsHeader, kLinkProtocol);
        return Respond(std::move(res), false);
      }
      if (server_.AtSessionLimit()) {
        HttpResponse res = TextResponse(http::status::service_unavailable, req.version(),
                                        "this hub is at its limit of " +
                                            std::to_string(server_.options().max_sessions) +
                                            " link sessions; retry later");
        res.set(http::field::retry_after, "5");
        return Respond(std::move(res), false);
      }
      return Upgrade(std::move(req));
    }
    if (path == kLinkPath) {
      HttpResponse res =
          TextResponse(http::status::upgrade_required, req.version(),
                       "this is a Ferry link endpoint: connect with a WebSocket upgrade (" +
                           std::string(kLinkProtocol) + ")");
      res.set(http::field::upgrade, "websocket");
      return Respond(std::move(res), false);
    }
    const bool keep_alive = req.keep_alive();
    const LinkServerCallbacks& callbacks = server_.callbacks();
    if (!callbacks.http && !callbacks.http_from) {
      return Respond(TextResponse(http::status::not_found, req.version(), "not found"), keep_alive);
    }
    HttpResponse res;
    try {
      res = callbacks.http_from ? callbacks.http_from(req, PeerAddress()) : callbacks.http(req);
    } catch (const std::exception& e) {
      log::Error("HTTP handler threw on {} {}: {}", std::string(req.method_string()),
                 std::string(path), e.what());
      res = TextResponse(http::status::internal_server_error, req.version(), "internal error");
    }
    res.version(req.version());
    Respond(std::move(res), keep_alive && res.keep_alive());
  }

  void Respond(HttpResponse res, bool keep_alive) {
    res.keep_alive(keep_alive);
    res.prepare_payload();
    response_ = std::make_shared<HttpResponse>(std::move(res));
    stream_.expires_after(server_.options().http_timeout);
    http::async_write(stream_, *response_,
                      [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
                        self->response_.reset();
                        if (ec || !keep_alive) return self->Close();
                        self->stream_.expires_after(self->server_.options().http_timeout);
                        self->DoRead();
                      });
  }

  // The peer's IP address, "" when the socket cannot tell (it was reset).
  std::string PeerAddress() {
    beast::error_code ec;
    const tcp::endpoint ep = stream_.socket().remote_endpoint(ec);
    return ec ? std::string() : ep.address().to_string();
  }

  void Close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
  }

  void Upgrade(HttpRequest req) {
    handed_over_ = true;
    // The client cannot send WebSocket data before our 101, so buffer_
    // holds nothing more that belongs to the link.
    const SteadyClock::time_point deadline =
        std::max(accepted_at_ + server_.options().handshake_timeout, SteadyClock::now());
    auto session =
        std::make_shared<LinkSession>(server_.ioc(), std::move(stream_), LinkSession::Role::kServer,
                                      server_.options().link, server_.static_key());
    if (!server_.RegisterSession(session)) return;  // stopping: dropping it closes the socket
    ServerState* server = &server_;
    std::weak_ptr<LinkSession> weak = session;
    session->StartServer(std::move(req), deadline, [server, weak](Status status) {
      if (!status.ok()) return;  // the session logged why
      if (auto s = weak.lock()) server->OnSessionReady(s);
    });
  }

  ServerState& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<HttpResponse> response_;
  const SteadyClock::time_point accepted_at_;
  bool handed_over_ = false;
};

Status ServerState::Listen() {
  beast::error_code ec;
  const asio::ip::address address = asio::ip::make_address(options_.address, ec);
  if (ec) {
    return InvalidArgumentError("link server address '" + options_.address +
                                "' is not an IP address: " + ec.message());
  }
  const tcp::endpoint endpoint(address, options_.port);
  const std::string where = options_.address + ":" + std::to_string(options_.port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return UnavailableError("cannot listen on " + where + ": " + ec.message());
  port_ = acceptor_.local_endpoint(ec).port();
  if (ec) return UnavailableError("cannot listen on " + where + ": " + ec.message());
  return OkStatus();
}

void ServerState::Run() {
  work_.emplace(asio::make_work_guard(*ioc_));
  DoAccept();
  const int threads = std::max(1, options_.io_threads);
  for (int i = 0; i < threads; ++i) {
    io_threads_.emplace_back([ioc = ioc_] { RunIoContext(*ioc, "link server"); });
  }
}

void ServerState::DoAccept() {
  // Each connection gets its own strand.
  acceptor_.async_accept(
      asio::make_strand(*ioc_),
      [this](beast::error_code ec, tcp::socket socket) { OnAccept(ec, std::move(socket)); });
}

void ServerState::OnAccept(beast::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
  if (ec) {
    // E.g. out of file descriptors: back off instead of spinning.
    log::Warn("link server: accept failed: {}", ec.message());
    accept_backoff_.expires_after(std::chrono::milliseconds(100));
    accept_backoff_.async_wait([this](beast::error_code wait_ec) {
      if (!wait_ec && acceptor_.is_open()) DoAccept();
    });
    return;
  }
  auto connection = std::make_shared<HttpConnection>(*this, std::move(socket));
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    std::erase_if(connections_, [](const auto& w) { return w.expired(); });
    connections_.push_back(connection);
  }
  connection->Start();
  DoAccept();
}

bool ServerState::RegisterSession(const std::shared_ptr<LinkSession>& session) {
  std::lock_guard lock(mu_);
  if (stopping_) return false;
  std::erase_if(sessions_, [](const auto& w) { return w.expired(); });
  sessions_.push_back(session);
  return true;
}

void ServerState::OnSessionReady(const std::shared_ptr<LinkSession>& session) {
  session->Activate();
  std::lock_guard lock(mu_);
  if (stopping_) {
    session->Abort(UnavailableError("link server stopping"));
    return;
  }
  ReapFinishedLocked();
  ++active_sessions_;
  session_threads_.emplace_back([this, session] { RunSession(session); });
}

void ServerState::RunSession(const std::shared_ptr<LinkSession>& session) {
  try {
    bool enrolled = false;
    if (callbacks_.authorize) {
      enrolled = callbacks_.authorize(session->peer_key()) == PeerAuthorization::kKnown;
    }
    log::Info("link session from {} ({}): {}", session->remote_endpoint(),
              Fingerprint(session->peer_key()), enrolled ? "enrolled key" : "unknown key");
    callbacks_.on_session(LinkConnection::Create(session, enrolled));
  } catch (const std::exception& e) {
    session->Abort(InternalError(std::string("link session handler threw: ") + e.what()));
  }
  std::lock_guard lock(mu_);
  finished_threads_.push_back(std::this_thread::get_id());
  --active_sessions_;
}

void ServerState::ReapFinishedLocked() {
  for (std::thread::id id : finished_threads_) {
    for (auto it = session_threads_.begin(); it != session_threads_.end(); ++it) {
      if (it->get_id() == id) {
        it->join();  // it has recorded itself as finished: only returning is left
        session_threads_.erase(it);
        break;
      }
    }
  }
  finished_threads_.clear();
}

bool ServerState::AtSessionLimit() const {
  std::lock_guard lock(mu_);
  size_t live = 0;
  for (const auto& w : sessions_) live += w.expired() ? 0 : 1;
  return live >= options_.max_sessions;
}

void ServerState::StopAccepting() {
  asio::post(acceptor_.get_executor(), [this] {
    beast::error_code ec;
    acceptor_.close(ec);
    accept_backoff_.cancel();
  });
}

void ServerState::Stop() {
  std::lock_guard stop_lock(stop_mu_);
  if (stopped_) return;
  std::vector<std::weak_ptr<HttpConnection>> connections;
  std::vector<std::weak_ptr<LinkSession>> sessions;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    connections = connections_;
    sessions = sessions_;
  }
  asio::post(acceptor_.get_executor(), [this] {
    beast::error_code ec;
    acceptor_.close(ec);
    accept_backoff_.cancel();
  });
  for (const auto& weak : connections) {
    if (auto c = weak.lock()) c->Shutdown();
  }
  const Status stopping = UnavailableError("link server stopping");
  for (const auto& weak : sessions) {
    if (auto s = weak.lock()) s->Abort(stopping);
  }
  // Session threads end once their connection's calls fail; the I/O
  // threads must keep running until then (the sessions close on them).
  std::list<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    threads = std::move(session_threads_);
    finished_threads_.clear();
  }
  for (std::thread& t : threads) t.join();
  // With the acceptor and every connection closed, run() returns once the
  // last close (bounded by close_timeout) is done.
  work_.reset();
  for (std::thread& t : io_threads_) t.join();
  io_threads_.clear();
  stopped_ = true;
}

}  // namespace internal

Result<std::unique_ptr<LinkServer>> LinkServer::Start(const StaticIdentity& identity,
                                                      const LinkServerOptions& options,
                                                      LinkServerCallbacks callbacks) {
  if (!callbacks.on_session) return InvalidArgumentError("LinkServer needs an on_session callback");
  RETURN_IF_ERROR(ValidateLinkOptions(options.link));
  if (options.io_threads < 1 || options.max_sessions < 1 ||
      options.handshake_timeout.count() <= 0 || options.http_timeout.count() <= 0 ||
      options.max_http_header_bytes == 0 || options.max_http_header_bytes > 0xFFFFFFFFu) {
    return InvalidArgumentError(
        "link server options: io_threads, timeouts and header limit must be positive");
  }
  auto state = std::make_unique<internal::ServerState>(identity, options, std::move(callbacks));
  RETURN_IF_ERROR(state->Listen());
  state->Run();
  log::Info("link server listening on {}:{} as {}", options.address, state->port(),
            identity.fingerprint());
  return std::unique_ptr<LinkServer>(new LinkServer(std::move(state)));
}

LinkServer::LinkServer(std::unique_ptr<internal::ServerState> state) : state_(std::move(state)) {}

LinkServer::~LinkServer() { Stop(); }

uint16_t LinkServer::port() const { return state_->port(); }

size_t LinkServer::active_sessions() const { return state_->active_sessions(); }

void LinkServer::Stop() { state_->Stop(); }

void LinkServer::StopAccepting() { state_->StopAccepting(); }

}  // namespace ferry::mirror::transport
