#include "ctl/hub_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include "core/version.h"

namespace ferry::ctl {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kMaxIdleConnections = 16;

bool IsDigits(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

StatusCode CodeFromName(std::string_view name) {
  static const std::pair<std::string_view, StatusCode> kCodes[] = {
      {"INVALID_ARGUMENT", StatusCode::kInvalidArgument},
      {"OUT_OF_RANGE", StatusCode::kOutOfRange},
      {"UNAUTHENTICATED", StatusCode::kUnauthenticated},
      {"PERMISSION_DENIED", StatusCode::kPermissionDenied},
      {"NOT_FOUND", StatusCode::kNotFound},
      {"ALREADY_EXISTS", StatusCode::kAlreadyExists},
      {"FAILED_PRECONDITION", StatusCode::kFailedPrecondition},
      {"ABORTED", StatusCode::kAborted},
      {"RESOURCE_EXHAUSTED", StatusCode::kResourceExhausted},
      {"UNIMPLEMENTED", StatusCode::kUnimplemented},
      {"UNAVAILABLE", StatusCode::kUnavailable},
      {"DEADLINE_EXCEEDED", StatusCode::kDeadlineExceeded},
      {"DATA_LOSS", StatusCode::kDataLoss},
  };
  for (const auto& [n, c] : kCodes) {
    if (n == name) return c;
  }
  return StatusCode::kInternal;
}

StatusCode CodeFromHttp(int status) {
  switch (status) {
    case 400:
      return StatusCode::kInvalidArgument;
    case 401:
      return StatusCode::kUnauthenticated;
    case 403:
      return StatusCode::kPermissionDenied;
    case 404:
      return StatusCode::kNotFound;
    case 409:
      return StatusCode::kFailedPrecondition;
    case 413:
      return StatusCode::kResourceExhausted;
    case 501:
      return StatusCode::kUnimplemented;
    case 503:
      return StatusCode::kUnavailable;
    case 504:
      return StatusCode::kDeadlineExceeded;
    default:
      return StatusCode::kInternal;
  }
}

// The hub's error answer as a Status, with advice where the fix is the
// caller's (token, tenant).
Status ErrorFromAnswer(const HubUrl& url, const std::string& method, const std::string& target,
                       const HubAnswer& a) {
  std::string code_name;
  std::string message;
  boost::system::error_code ec;
  json::value v = json::parse(a.body, ec);
  if (!ec && v.is_object()) {
    const json::object& o = v.get_object();
    if (const json::value* e = o.if_contains("error"); e && e->is_object()) {
      if (const json::value* c = e->get_object().if_contains("code"); c && c->is_string()) {
        code_name = std::string(c->get_string());
      }
      if (const json::value* m = e->get_object().if_contains("message"); m && m->is_string()) {
        message = std::string(m->get_string());
      }
    }
  }
  if (message.empty()) {
    // Not a Ferry hub's error shape: say what came back instead.
    std::string snippet = a.body.substr(0, 120);
    for (char& ch : snippet) {
      if (static_cast<unsigned char>(ch) < 0x20) ch = ' ';
    }
    message = "HTTP " + std::to_string(a.status) + " from " + url.text + " for " + method + " " +
              target + (snippet.empty() ? "" : ": " + snippet) +
              " (is this URL a ferry-hub? it did not answer in the hub's error format)";
    return Status(CodeFromHttp(a.status), message);
  }
  const StatusCode code = code_name.empty() ? CodeFromHttp(a.status) : CodeFromName(code_name);
  if (code == StatusCode::kUnauthenticated) {
    message = "the hub at " + url.text + " refused the token (" + message +
              "): give a valid API token with --token, FERRY_TOKEN or `ferryctl config add-hub "
              "--token` (ferry-hub init printed the first one; `ferry-hub admin-token` makes a "
              "new one)";
  }
  return Status(code, message);
}

// Runs one asynchronous operation on `io` to completion; returns its error.
template <typename Start>
boost::system::error_code RunOne(asio::io_context& io, Start&& start) {
  boost::system::error_code result = asio::error::would_block;
  start([&result](boost::system::error_code ec, auto&&...) { result = ec; });
  io.restart();
  io.run();
  return result;
}

}  // namespace

Result<HubUrl> ParseHubUrl(const std::string& url) {
  const std::string example = " (example: http://127.0.0.1:7070 or http://hub.example:7070)";
  std::string_view rest(url);
  bool link_url = false;
  if (rest.substr(0, 7) == "http://") {
    rest.remove_prefix(7);
  } else if (rest.substr(0, 5) == "ws://") {
    rest.remove_prefix(5);
    link_url = true;
  } else if (rest.substr(0, 8) == "https://" || rest.substr(0, 6) == "wss://") {
    return InvalidArgumentError(
        "hub URL " + url +
        ": ferryctl speaks plain http:// only for now (the hub has no TLS of its own; "
        "reach a hub behind a TLS proxy through a local tunnel, e.g. ssh -L)");
  } else {
    return InvalidArgumentError("hub URL " + url + ": must start with http://" + example);
  }
  HubUrl out;
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (authority.empty()) return InvalidArgumentError("hub URL " + url + ": no host" + example);
  if (authority.find('@') != std::string_view::npos) {
    return InvalidArgumentError("hub URL " + url +
                                ": credentials in the URL are not supported; use --token");
  }
  if (authority.front() == '[') {  // [v6]:port
    const size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return InvalidArgumentError("hub URL " + url + ": bad IPv6");
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return InvalidArgumentError("hub URL " + url + ": bad port");
      out.port = std::string(after.substr(1));
    }
  } else {
    const size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) out.port = std::string(authority.substr(colon + 1));
  }
  if (out.port.empty()) out.port = "80";
  if (!IsDigits(out.port) || out.port.size() > 5 || std::stoul(out.port) == 0 ||
      std::stoul(out.port) > 65535) {
    return InvalidArgumentError("hub URL " + url + ": bad port '" + out.port + "'" + example);
  }
  if (out.host.empty()) return InvalidArgumentError("hub URL " + url + ": no host" + example);
  std::string base(path);
  if (link_url && (base == "/v1/link" || base == "/v1/link/")) base.clear();
  while (!base.empty() && base.back() == '/') base.pop_back();
  if (base.find_first_of("?#") != std::string::npos) {
    return InvalidArgumentError("hub URL " + url + ": no query or fragment allowed" + example);
  }
  out.base = base;
  const bool v6 = out.host.find(':') != std::string::npos;
  out.text = "http://" + (v6 ? "[" + out.host + "]" : out.host) + ":" + out.port + out.base;
  return out;
}

struct HubClient::Connection {
  asio::io_context io;
  beast::tcp_stream stream{io};
  beast::flat_buffer buffer;
  bool open = false;
  bool reused = false;
};

HubClient::HubClient(HubUrl url, std::string token, std::chrono::milliseconds timeout)
    : url_(std::move(url)), token_(std::move(token)), timeout_(timeout) {}

HubClient::~HubClient() = default;

std::unique_ptr<HubClient::Connection> HubClient::Take() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      std::unique_ptr<Connection> c = std::move(idle_.back());
      idle_.pop_back();
      c->reused = true;
      return c;
    }
  }
  return std::make_unique<Connection>();
}

void HubClient::Give(std::unique_ptr<Connection> c) {
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < kMaxIdleConnections) idle_.push_back(std::move(c));
}

Status HubClient::Exchange(Connection& c, const std::string& method, const std::string& target,
                           const std::string& body, const std::string& content_type,
                           uint64_t max_body, HubAnswer& out, bool& retryable) {
  retryable = false;
  boost::system::error_code ec;
  if (!c.open) {
    tcp::resolver resolver(c.io);
    tcp::resolver::results_type endpoints;
    ec = RunOne(c.io, [&](auto handler) {
      resolver.async_resolve(url_.host, url_.port,
                             [&endpoints, handler](boost::system::error_code e,
                                                   tcp::resolver::results_type r) mutable {
                               endpoints = std::move(r);
                               handler(e);
                             });
    });
    if (ec) {
      return UnavailableError("cannot resolve the hub's host " + url_.host + " (" + url_.text +
                              "): " + ec.message());
    }
    c.stream.expires_after(timeout_);
    ec = RunOne(c.io, [&](auto handler) { c.stream.async_connect(endpoints, handler); });
    if (ec) {
      return UnavailableError("cannot reach the hub at " + url_.text + ": " + ec.message() +
                              " (is ferry-hub running there? set the hub with --hub, FERRY_HUB "
                              "or `ferryctl config use`)");
    }
    c.stream.socket().set_option(tcp::no_delay(true), ec);
    c.open = true;
  }
  http::verb verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) return InvalidArgumentError("bad HTTP method " + method);
  http::request<http::string_body> req{verb, url_.base + target, 11};
  req.set(http::field::host, url_.host + ":" + url_.port);
  req.set(http::field::user_agent, std::string("ferryctl/") + kFerryVersion);
  if (!token_.empty()) req.set(http::field::authorization, "Bearer " + token_);
  if (!body.empty() || verb == http::verb::post || verb == http::verb::put) {
    req.set(http::field::content_type, content_type);
    req.body() = body;
  }
  req.keep_alive(true);
  req.prepare_payload();
  c.stream.expires_after(timeout_);
  ec = RunOne(c.io, [&](auto handler) { http::async_write(c.stream, req, handler); });
  if (ec) {
    retryable = c.reused;
    return UnavailableError("sending " + method + " " + target + " to the hub at " + url_.text +
                            " failed: " + ec.message());
  }
  http::response_parser<http::string_body> parser;
  parser.body_limit(max_body);
  parser.header_limit(64 << 10);
  c.stream.expires_after(timeout_);
  ec = RunOne(c.io, [&](auto handler) { http::async_read(c.stream, c.buffer, parser, handler); });
  if (ec == http::error::body_limit) {
    return DataLossError("the hub's answer to " + method + " " + target + " is larger than " +
                         std::to_string(max_body) + " bytes");
  }
  if (ec == beast::error::timeout) {
    return DeadlineExceededError("the hub at " + url_.text + " did not answer " + method + " " +
                                 target + " within " + std::to_string(timeout_.count() / 1000) +
                                 " s");
  }
  if (ec) {
    // A reused keep-alive connection the hub closed meanwhile: nothing was read.
    retryable = c.reused && (ec == http::error::end_of_stream || ec == asio::error::eof ||
                             ec == asio::error::connection_reset);
    return UnavailableError("the hub at " + url_.text + " closed the connection during " + method +
                            " " + target + ": " + ec.message());
  }
  http::response<http::string_body> res = parser.release();
  out.status = static_cast<int>(res.result_int());
  out.content_type = std::string(res[http::field::content_type]);
  out.body = std::move(res.body());
  if (!res.keep_alive()) c.open = false;
  return OkStatus();
}

Result<HubAnswer> HubClient::Call(const std::string& method, const std::string& target,
                                  const std::string& body, const std::string& content_type,
                                  uint64_t max_body) {
  HubAnswer answer;
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<Connection> c = Take();
    bool retryable = false;
    Status s = Exchange(*c, method, target, body, content_type, max_body, answer, retryable);
    if (!s.ok()) {
      if (retryable && attempt == 0) continue;  // stale idle connection: once more, fresh
      return s;
    }
    if (c->open) Give(std::move(c));
    break;
  }
  if (answer.status < 200 || answer.status > 299) {
    return ErrorFromAnswer(url_, method, target, answer);
  }
  return answer;
}

Result<json::value> HubClient::Json(const std::string& method, const std::string& target,
                                    const std::string& body, const std::string& content_type) {
  ASSIGN_OR_RETURN(HubAnswer a, Call(method, target, body, content_type));
  if (a.body.empty()) return json::value(nullptr);
  boost::system::error_code ec;
  json::value v = json::parse(a.body, ec);
  if (ec) {
    return DataLossError("the answer of " + url_.text + " to " + method + " " + target +
                         " is not JSON (" + ec.message() + "); is this URL a ferry-hub?");
  }
  return v;
}

Result<Bytes> HubClient::Download(const std::string& target, uint64_t max_bytes) {
  ASSIGN_OR_RETURN(HubAnswer a, Call("GET", target, "", "", max_bytes));
  return Bytes(a.body.begin(), a.body.end());
}

}  // namespace ferry::ctl
