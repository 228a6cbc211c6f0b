#include "edge-agent/local_api.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <list>
#include <mutex>
#include <set>

#include "core/env.h"
#include "core/log.h"

namespace ferry::agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using local = asio::local::stream_protocol;

namespace {

constexpr size_t kMaxBody = 64 << 10;

http::response<http::string_body> JsonReply(http::status status, const json::value& v) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::content_type, "application/json");
  res.body() = json::serialize(v) + "\n";
  return res;
}

http::response<http::string_body> ErrorReply(http::status status, const std::string& code,
                                             const std::string& message) {
  return JsonReply(status,
                   json::object{{"error", json::object{{"code", code}, {"message", message}}}});
}

http::status HttpStatusFor(const Status& s) {
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
      return http::status::bad_request;
    case StatusCode::kNotFound:
      return http::status::not_found;
    case StatusCode::kResourceExhausted:
      return http::status::too_many_requests;
    case StatusCode::kUnavailable:
      return http::status::service_unavailable;
    case StatusCode::kFailedPrecondition:
    case StatusCode::kAborted:
      return http::status::conflict;
    default:
      return http::status::internal_server_error;
  }
}

http::response<http::string_body> RunSnapshots(Agent& agent, const std::string& body) {
  std::string policy, dataset;
  if (!body.empty()) {
    boost::system::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec || !v.is_object()) {
      return ErrorReply(http::status::bad_request, "INVALID_ARGUMENT",
                        "the body must be a JSON object such as {\"dataset\":\"videos\"}");
    }
    for (const auto& [k, val] : v.as_object()) {
      if ((k != "policy" && k != "dataset") || !val.is_string()) {
        return ErrorReply(
            http::status::bad_request, "INVALID_ARGUMENT",
            "unknown or non-string field \"" + std::string(k) + "\" (known: policy, dataset)");
      }
      (k == "policy" ? policy : dataset) = std::string(val.as_string());
    }
  }
  Result<std::vector<RunResult>> runs = agent.RunNow(policy, dataset);
  if (!runs.ok()) {
    return ErrorReply(HttpStatusFor(runs.status()),
                      std::string(StatusCodeName(runs.status().code())), runs.status().message());
  }
  // The first failed run's status decides the answer's.
  Status first_error;
  for (const RunResult& r : *runs) {
    if (!r.status.ok()) {
      first_error = r.status;
      break;
    }
  }
  return JsonReply(first_error.ok() ? http::status::ok : HttpStatusFor(first_error),
                   RunResultsJson(*runs));
}

http::response<http::string_body> Dispatch(Agent& agent,
                                           const http::request<http::string_body>& req) {
  const std::string target(req.target());
  const std::string path = target.substr(0, target.find('?'));
  const bool get = req.method() == http::verb::get;
  if (path == "/healthz") {
    if (!get) return ErrorReply(http::status::method_not_allowed, "INVALID_ARGUMENT", "use GET");
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::content_type, "text/plain");
    res.body() = "ok\n";
    return res;
  }
  if (path == "/metrics") {
    if (!get) return ErrorReply(http::status::method_not_allowed, "INVALID_ARGUMENT", "use GET");
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::content_type, "text/plain; version=0.0.4");
    res.body() = agent.MetricsText();
    return res;
  }
  if (path == "/v1/status") {
    if (!get) return ErrorReply(http::status::method_not_allowed, "INVALID_ARGUMENT", "use GET");
    return JsonReply(http::status::ok, agent.StatusJson());
  }
  if (path == "/v1/snapshots") {
    if (req.method() != http::verb::post) {
      return ErrorReply(http::status::method_not_allowed, "INVALID_ARGUMENT", "use POST");
    }
    return RunSnapshots(agent, req.body());
  }
  return ErrorReply(http::status::not_found, "NOT_FOUND",
                    "no such endpoint: " + path +
                        " (known: POST /v1/snapshots, GET /v1/status, /metrics, /healthz)");
}

void SetTimeout(int fd, int seconds) {
  timeval tv{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

template <typename Socket>
void ServeConnection(Agent& agent, Socket& socket) {
  SetTimeout(socket.native_handle(), 30);
  beast::flat_buffer buffer;
  while (true) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(8 << 10);
    parser.body_limit(kMaxBody);
    boost::system::error_code ec;
    http::read(socket, buffer, parser, ec);
    if (ec == http::error::body_limit) {
      auto res = ErrorReply(http::status::payload_too_large, "RESOURCE_EXHAUSTED",
                            "request body over " + std::to_string(kMaxBody) + " bytes");
      res.keep_alive(false);
      res.prepare_payload();
      http::write(socket, res, ec);
      return;
    }
    if (ec) {
      if (ec != http::error::end_of_stream && ec != asio::error::eof) {
        auto res = ErrorReply(http::status::bad_request, "INVALID_ARGUMENT",
                              "malformed HTTP request: " + ec.message());
        res.keep_alive(false);
        res.prepare_payload();
        http::write(socket, res, ec);
      }
      return;
    }
    const http::request<http::string_body>& req = parser.get();
    http::response<http::string_body> res;
    try {
      res = Dispatch(agent, req);
    } catch (const std::exception& e) {
      res = ErrorReply(http::status::internal_server_error, "INTERNAL", e.what());
    }
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    http::write(socket, res, ec);
    if (ec || !req.keep_alive()) return;
  }
}

bool IsLoopback(const asio::ip::address& a) { return a.is_loopback(); }

}  // namespace

struct LocalApi::Impl {
  Agent& agent;
  asio::io_context io;
  std::unique_ptr<tcp::acceptor> tcp_acceptor;
  std::unique_ptr<local::acceptor> unix_acceptor;
  std::string unix_path;
  std::thread accept_thread;
  std::mutex mu;
  bool stopping = false;
  std::set<int> open_fds;
  std::list<std::thread> workers;

  explicit Impl(Agent& a) : agent(a) {}

  int listen_fd() {
    return tcp_acceptor ? tcp_acceptor->native_handle() : unix_acceptor->native_handle();
  }

  template <typename Socket>
  void Spawn(Socket socket) {
    std::lock_guard lock(mu);
    if (stopping) return;
    const int fd = socket.native_handle();
    open_fds.insert(fd);
    workers.emplace_back([this, s = std::move(socket), fd]() mutable {
      try {
        ServeConnection(agent, s);
      } catch (const std::exception& e) {
        log::Warn("local API connection: {}", e.what());
      }
      std::lock_guard l(mu);
      open_fds.erase(fd);
      boost::system::error_code ec;
      s.close(ec);
    });
    // Finished threads are reaped lazily: at most a few are ever alive.
    if (workers.size() > 64) {
      workers.front().join();
      workers.pop_front();
    }
  }

  void AcceptLoop() {
    while (true) {
      boost::system::error_code ec;
      if (tcp_acceptor) {
        tcp::socket s(io);
        tcp_acceptor->accept(s, ec);
        if (ec) break;
        Spawn(std::move(s));
      } else {
        local::socket s(io);
        unix_acceptor->accept(s, ec);
        if (ec) break;
        Spawn(std::move(s));
      }
      std::lock_guard lock(mu);
      if (stopping) break;
    }
  }
};

Result<std::unique_ptr<LocalApi>> LocalApi::Start(Agent& agent, const ApiConfig& config,
                                                  const std::string& port_file) {
  auto api = std::unique_ptr<LocalApi>(new LocalApi());
  api->impl_ = std::make_unique<Impl>(agent);
  Impl& impl = *api->impl_;
  boost::system::error_code ec;
  if (!config.unix_socket.empty()) {
    ::unlink(config.unix_socket.c_str());
    impl.unix_path = config.unix_socket;
    impl.unix_acceptor = std::make_unique<local::acceptor>(impl.io);
    local::endpoint ep(config.unix_socket);
    impl.unix_acceptor->open(ep.protocol(), ec);
    if (!ec) impl.unix_acceptor->bind(ep, ec);
    if (!ec) ::chmod(config.unix_socket.c_str(), 0660);
    if (!ec) impl.unix_acceptor->listen(16, ec);
    if (ec)
      return UnavailableError("local API: cannot listen on " + config.unix_socket + ": " +
                              ec.message());
  } else {
    const asio::ip::address addr = asio::ip::make_address(config.address, ec);
    if (ec || !IsLoopback(addr)) {
      return InvalidArgumentError("local API: " + config.address + " is not a loopback address");
    }
    impl.tcp_acceptor = std::make_unique<tcp::acceptor>(impl.io);
    tcp::endpoint ep(addr, config.port);
    impl.tcp_acceptor->open(ep.protocol(), ec);
    if (!ec) impl.tcp_acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) impl.tcp_acceptor->bind(ep, ec);
    if (!ec) impl.tcp_acceptor->listen(16, ec);
    if (ec) {
      return UnavailableError("local API: cannot listen on " + config.address + ":" +
                              std::to_string(config.port) + ": " + ec.message());
    }
    api->port_ = impl.tcp_acceptor->local_endpoint().port();
    const std::string text = std::to_string(api->port_) + "\n";
    RETURN_IF_ERROR(WriteFileAtomic(
        *Env::Default(), port_file,
        ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size()), 0644));
  }
  impl.accept_thread = std::thread([&impl] { impl.AcceptLoop(); });
  return api;
}

void LocalApi::Stop() {
  if (!impl_) return;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
    ::shutdown(impl_->listen_fd(), SHUT_RDWR);
    for (int fd : impl_->open_fds) ::shutdown(fd, SHUT_RDWR);
  }
  if (impl_->accept_thread.joinable()) impl_->accept_thread.join();
  std::list<std::thread> workers;
  {
    std::lock_guard lock(impl_->mu);
    workers.swap(impl_->workers);
  }
  for (std::thread& t : workers) t.join();
  if (!impl_->unix_path.empty()) ::unlink(impl_->unix_path.c_str());
}

LocalApi::~LocalApi() { Stop(); }

Result<ApiResponse> CallLocalApi(const ApiConfig& config, const std::string& port_file,
                                 const std::string& method, const std::string& target,
                                 const std::string& body, std::chrono::seconds timeout) {
  asio::io_context io;
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "localhost");
  req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  boost::system::error_code ec;
  http::response<http::string_body> res;
  beast::flat_buffer buffer;
  auto exchange = [&](auto& socket, const std::string& where) -> Status {
    SetTimeout(socket.native_handle(), static_cast<int>(timeout.count()));
    http::write(socket, req, ec);
    if (!ec) http::read(socket, buffer, res, ec);
    if (ec) return UnavailableError("agent API at " + where + ": " + ec.message());
    return OkStatus();
  };
  if (!config.unix_socket.empty()) {
    local::socket s(io);
    s.connect(local::endpoint(config.unix_socket), ec);
    if (ec) {
      return UnavailableError("no ferry-agent answers at " + config.unix_socket + " (" +
                              ec.message() + ")");
    }
    RETURN_IF_ERROR(exchange(s, config.unix_socket));
  } else {
    uint16_t port = config.port;
    if (port == 0) {
      Result<Bytes> text = Env::Default()->ReadFile(port_file, 64);
      if (!text.ok()) {
        return UnavailableError("no ferry-agent is running (no " + port_file + ")");
      }
      port = static_cast<uint16_t>(std::atoi(std::string(text->begin(), text->end()).c_str()));
    }
    const asio::ip::address addr = asio::ip::make_address(config.address, ec);
    if (ec) return InvalidArgumentError("bad API address " + config.address);
    tcp::socket s(io);
    s.connect(tcp::endpoint(addr, port), ec);
    const std::string where = config.address + ":" + std::to_string(port);
    if (ec)
      return UnavailableError("no ferry-agent answers at " + where + " (" + ec.message() + ")");
    RETURN_IF_ERROR(exchange(s, where));
  }
  return ApiResponse{static_cast<int>(res.result_int()), res.body()};
}

}  // namespace ferry::agent
