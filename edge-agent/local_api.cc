#include "edge-agent/local_api.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <cerrno>
#include <cstdlib>
#include <limits>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include "core/crash_site.h"
#include "core/env.h"
#include "core/log.h"
#include "core/sodium.h"

namespace ferry::agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using local = asio::local::stream_protocol;

namespace {

constexpr size_t kMaxBody = 64 << 10;
constexpr size_t kMaxConnections = 64;
// A stream append's body: a batch of records.
constexpr size_t kMaxStreamBody = 32 << 20;
// A stream read's answer: at most this many records and payload bytes.
constexpr size_t kMaxReadRecords = 10'000;
constexpr size_t kDefaultReadRecords = 1'000;
constexpr size_t kMaxReadBytes = 16 << 20;
constexpr char kStreamsPrefix[] = "/v1/streams/";

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
    case StatusCode::kOutOfRange:
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

http::response<http::string_body> StatusReply(const Status& s) {
  return ErrorReply(HttpStatusFor(s), std::string(StatusCodeName(s.code())), s.message());
}

void PutBigEndian(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

// The records of an append body, as views into it. Binary
// (application/octet-stream): each record is a 4-byte big-endian length and
// that many bytes. Otherwise JSON lines: one JSON value per line, empty
// lines skipped. Every record is checked before any is stored.
Result<std::vector<ByteView>> SplitRecords(const std::string& content_type, const std::string& body,
                                           uint32_t max_record) {
  std::vector<ByteView> records;
  const auto* data = reinterpret_cast<const uint8_t*>(body.data());
  auto too_big = [&](size_t n, size_t at, size_t len) {
    return ResourceExhaustedError("record " + std::to_string(n) + " (at byte " +
                                  std::to_string(at) + ") is " + std::to_string(len) +
                                  " bytes; this stream's maxRecordSize is " +
                                  std::to_string(max_record));
  };
  const std::string type = content_type.substr(0, content_type.find(';'));
  if (type == "application/octet-stream") {
    size_t pos = 0;
    while (pos < body.size()) {
      if (body.size() - pos < 4) {
        return InvalidArgumentError("bad length prefix: " + std::to_string(body.size() - pos) +
                                    " bytes left at byte " + std::to_string(pos) +
                                    ", a record starts with a 4-byte big-endian length");
      }
      const uint32_t len = (uint32_t{data[pos]} << 24) | (uint32_t{data[pos + 1]} << 16) |
                           (uint32_t{data[pos + 2]} << 8) | uint32_t{data[pos + 3]};
      if (len > max_record) return too_big(records.size(), pos, len);
      if (body.size() - pos - 4 < len) {
        return InvalidArgumentError("bad length prefix: record " + std::to_string(records.size()) +
                                    " at byte " + std::to_string(pos) + " claims " +
                                    std::to_string(len) + " bytes but only " +
                                    std::to_string(body.size() - pos - 4) + " follow");
      }
      records.emplace_back(data + pos + 4, len);
      pos += 4 + size_t{len};
    }
  } else if (type.empty() || type == "application/x-ndjson" || type == "application/jsonl" ||
             type == "application/json" || type == "text/plain") {
    size_t pos = 0;
    size_t line = 0;
    while (pos < body.size()) {
      size_t end = body.find('\n', pos);
      if (end == std::string::npos) end = body.size();
      ++line;
      size_t len = end - pos;
      if (len > 0 && body[pos + len - 1] == '\r') --len;
      if (len > 0) {
        if (len > max_record) return too_big(records.size(), pos, len);
        boost::system::error_code ec;
        json::parse(std::string_view(body.data() + pos, len), ec);
        if (ec) {
          return InvalidArgumentError("line " + std::to_string(line) + " is not JSON (" +
                                      ec.message() +
                                      "); send JSON lines, or binary records with "
                                      "Content-Type: application/octet-stream");
        }
        records.emplace_back(data + pos, len);
      }
      pos = end + 1;
    }
  } else {
    return UnimplementedError("Content-Type " + type +
                              ": send JSON lines (application/x-ndjson) or length-prefixed "
                              "records (application/octet-stream)");
  }
  if (records.empty()) return InvalidArgumentError("no records in the body");
  return records;
}

// A query parameter as an unsigned integer in [min, max].
Result<uint64_t> QueryNumber(const std::string& query, const std::string& name, uint64_t fallback,
                             uint64_t min, uint64_t max) {
  size_t pos = 0;
  std::optional<std::string> value;
  while (pos <= query.size()) {
    size_t end = query.find('&', pos);
    if (end == std::string::npos) end = query.size();
    const std::string pair = query.substr(pos, end - pos);
    const size_t eq = pair.find('=');
    const std::string key = pair.substr(0, eq);
    if (!key.empty() && key != "from" && key != "max") {
      return InvalidArgumentError("unknown query parameter '" + key + "' (known: from, max)");
    }
    if (key == name) value = eq == std::string::npos ? "" : pair.substr(eq + 1);
    pos = end + 1;
  }
  if (!value) return fallback;
  const bool digits = !value->empty() && value->size() <= 20 &&
                      value->find_first_not_of("0123456789") == std::string::npos;
  errno = 0;
  const unsigned long long v = digits ? std::strtoull(value->c_str(), nullptr, 10) : 0;
  if (!digits || errno == ERANGE || v < min || v > max) {
    return InvalidArgumentError(name + "=" + value->substr(0, 32) + ": must be an integer from " +
                                std::to_string(min) + " to " + std::to_string(max));
  }
  return static_cast<uint64_t>(v);
}

http::response<http::string_body> StreamRecords(Agent& agent,
                                                const http::request<http::string_body>& req,
                                                const std::string& stream,
                                                const std::string& query) {
  Streams& streams = agent.streams();
  const StreamConfig* config = streams.Config(stream);
  if (config == nullptr) return StatusReply(streams.Check(stream));
  if (req.method() == http::verb::post) {
    if (!query.empty()) {
      return ErrorReply(http::status::bad_request, "INVALID_ARGUMENT",
                        "POST takes no query parameters");
    }
    Result<std::vector<ByteView>> records = SplitRecords(
        std::string(req[http::field::content_type]), req.body(), config->max_record_bytes);
    if (!records.ok()) {
      const http::status code = records.status().code() == StatusCode::kResourceExhausted
                                    ? http::status::payload_too_large
                                : records.status().code() == StatusCode::kUnimplemented
                                    ? http::status::unsupported_media_type
                                    : http::status::bad_request;
      return ErrorReply(code, std::string(StatusCodeName(records.status().code())),
                        records.status().message() + "; nothing was stored");
    }
    Result<snapshot::AppendResult> r = streams.Append(stream, *records);
    if (!r.ok()) return StatusReply(r.status());
    FERRY_CRASH_SITE("agent.stream.before_answer");
    return JsonReply(http::status::ok, json::object{{"stream", stream},
                                                    {"first", r->first},
                                                    {"last", r->last},
                                                    {"count", records->size()}});
  }
  if (req.method() != http::verb::get) {
    return ErrorReply(http::status::method_not_allowed, "INVALID_ARGUMENT", "use GET or POST");
  }
  Result<uint64_t> from = QueryNumber(query, "from", 0, 0, std::numeric_limits<uint64_t>::max());
  if (!from.ok()) return StatusReply(from.status());
  Result<uint64_t> max = QueryNumber(query, "max", kDefaultReadRecords, 1, kMaxReadRecords);
  if (!max.ok()) return StatusReply(max.status());
  uint64_t end = 0;
  for (const Streams::Info& i : streams.List()) {
    if (i.name == stream) end = i.end_offset;
  }
  if (*from > end) {
    return ErrorReply(http::status::bad_request, "OUT_OF_RANGE",
                      "from=" + std::to_string(*from) + " is past the end of stream " + stream +
                          " (next offset " + std::to_string(end) + ")");
  }
  Result<std::vector<snapshot::StreamRecord>> records =
      streams.Read(stream, *from, static_cast<size_t>(*max), kMaxReadBytes);
  if (!records.ok()) return StatusReply(records.status());
  const uint64_t next = records->empty() ? *from : records->back().offset + 1;
  const std::string accept(req[http::field::accept]);
  if (accept.find("application/octet-stream") != std::string::npos) {
    // Binary: per record an 8-byte offset, a 4-byte length and the bytes.
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::content_type, "application/octet-stream");
    res.set("Ferry-Next-Offset", std::to_string(next));
    std::string body;
    for (const snapshot::StreamRecord& r : *records) {
      PutBigEndian(body, r.offset, 8);
      PutBigEndian(body, r.data.size(), 4);
      body.append(reinterpret_cast<const char*>(r.data.data()), r.data.size());
    }
    res.body() = std::move(body);
    return res;
  }
  json::array out;
  for (const snapshot::StreamRecord& r : *records) {
    const std::string_view text = AsStringView(r.data);
    if (IsValidUtf8(text)) {
      out.push_back(json::object{{"offset", r.offset}, {"text", text}});
    } else {
      out.push_back(json::object{{"offset", r.offset}, {"base64", sodium::Base64Encode(r.data)}});
    }
  }
  return JsonReply(http::status::ok,
                   json::object{{"stream", stream}, {"records", std::move(out)}, {"next", next}});
}

// One record as a JSON text: {"offset": N, "text": "..."} or "base64".
std::string RecordJson(const snapshot::StreamRecord& r) {
  const std::string_view text = AsStringView(r.data);
  if (IsValidUtf8(text)) return json::serialize(json::object{{"offset", r.offset}, {"text", text}});
  return json::serialize(
      json::object{{"offset", r.offset}, {"base64", sodium::Base64Encode(r.data)}});
}

// GET /v1/streams/{name}/tail?from=OFFSET: the path's stream and the
// starting offset, or the HTTP answer that refuses the request.
struct TailRequest {
  std::string stream;
  uint64_t from = 0;
};
std::optional<TailRequest> ParseTail(const std::string& target) {
  const std::string path = target.substr(0, target.find('?'));
  if (path.rfind(kStreamsPrefix, 0) != 0) return std::nullopt;
  const std::string rest = path.substr(sizeof(kStreamsPrefix) - 1);
  const size_t slash = rest.find('/');
  if (slash == std::string::npos || slash == 0 || rest.substr(slash) != "/tail") {
    return std::nullopt;
  }
  return TailRequest{rest.substr(0, slash), 0};
}

// Follows a stream over a WebSocket (docs/api.md, "Tail"): every record
// from `from` on, then each new one as it becomes durable, one text message
// per record (RecordJson). Pings when idle; ends when the client closes,
// goes away, or the agent stops.
template <typename Socket>
void ServeTail(Agent& agent, Socket& socket, const http::request<http::string_body>& req,
               const TailRequest& tail) {
  Streams& streams = agent.streams();
  websocket::stream<Socket&> ws(socket);
  ws.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(http::field::server, "ferry-agent"); }));
  boost::system::error_code ec;
  ws.accept(req, ec);
  if (ec) return;
  ws.text(true);
  constexpr auto kPingEvery = std::chrono::seconds(15);
  auto last_write = std::chrono::steady_clock::now();
  uint64_t at = tail.from;
  uint64_t seen = streams.generation();
  while (true) {
    Result<std::vector<snapshot::StreamRecord>> records =
        streams.Read(tail.stream, at, kDefaultReadRecords, kMaxReadBytes);
    if (!records.ok()) {
      ws.close(websocket::close_reason(websocket::close_code::internal_error,
                                       records.status().ToString().substr(0, 120)),
               ec);
      return;
    }
    if (!records->empty()) {
      for (const snapshot::StreamRecord& r : *records) {
        ws.write(asio::buffer(RecordJson(r)), ec);
        if (ec) return;
        at = r.offset + 1;
      }
      last_write = std::chrono::steady_clock::now();
      continue;
    }
    // Caught up. Anything from the client? (a close, a ping; data is ignored)
    pollfd p{socket.native_handle(), POLLIN, 0};
    if (::poll(&p, 1, 0) > 0) {
      beast::flat_buffer ignored;
      ws.read(ignored, ec);
      if (ec) return;  // closed by the client (the close is answered) or gone
      continue;
    }
    if (std::chrono::steady_clock::now() - last_write >= kPingEvery) {
      ws.ping({}, ec);
      if (ec) return;
      last_write = std::chrono::steady_clock::now();
    }
    seen = streams.WaitForAppend(seen, std::chrono::milliseconds(200));
  }
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
  if (path.rfind(kStreamsPrefix, 0) == 0) {
    // /v1/streams/{name}/records
    const std::string rest = path.substr(sizeof(kStreamsPrefix) - 1);
    const size_t slash = rest.find('/');
    if (slash != std::string::npos && rest.substr(slash) == "/records" && slash > 0) {
      const size_t q = target.find('?');
      return StreamRecords(agent, req, rest.substr(0, slash),
                           q == std::string::npos ? "" : target.substr(q + 1));
    }
    if (ParseTail(target)) {  // not a WebSocket upgrade, or refused by CheckTail
      return ErrorReply(http::status::bad_request, "INVALID_ARGUMENT",
                        "/tail is a WebSocket: send GET with Upgrade: websocket");
    }
  }
  if (path == "/v1/snapshots") {
    if (req.method() != http::verb::post) {
      return ErrorReply(http::status::method_not_allowed, "INVALID_ARGUMENT", "use POST");
    }
    return RunSnapshots(agent, req.body());
  }
  return ErrorReply(
      http::status::not_found, "NOT_FOUND",
      "no such endpoint: " + path +
          " (known: POST /v1/snapshots, GET|POST /v1/streams/{name}/records, GET (WebSocket) "
          "/v1/streams/{name}/tail, GET /v1/status, "
          "/metrics, /healthz)");
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
    // The parser's own limit is the largest body of any endpoint; the
    // endpoint's is checked once the header says which one it is.
    parser.body_limit(kMaxStreamBody);
    boost::system::error_code ec;
    http::read_header(socket, buffer, parser, ec);
    // Stream appends carry batches of records; everything else is small.
    const bool stream_post = !ec && parser.get().method() == http::verb::post &&
                             parser.get().target().starts_with(kStreamsPrefix);
    const size_t limit = stream_post ? kMaxStreamBody : kMaxBody;
    if (!ec && parser.content_length() && *parser.content_length() > limit) {
      ec = http::error::body_limit;
    }
    if (!ec) http::read(socket, buffer, parser, ec);
    if (!ec && parser.get().body().size() > limit) ec = http::error::body_limit;  // chunked
    if (ec == http::error::body_limit) {
      auto res =
          ErrorReply(http::status::payload_too_large, "RESOURCE_EXHAUSTED",
                     "request body over " + std::to_string(limit) + " bytes; nothing was stored");
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
    if (std::optional<TailRequest> tail = ParseTail(std::string(req.target()));
        tail && websocket::is_upgrade(req) && req.method() == http::verb::get) {
      const std::string target(req.target());
      const size_t q = target.find('?');
      Result<uint64_t> from = QueryNumber(q == std::string::npos ? "" : target.substr(q + 1),
                                          "from", 0, 0, std::numeric_limits<uint64_t>::max());
      Status ok = from.ok() ? agent.streams().Check(tail->stream) : from.status();
      if (ok.ok()) {
        tail->from = *from;
        for (const Streams::Info& i : agent.streams().List()) {
          if (i.name == tail->stream && tail->from > i.end_offset) {
            ok = OutOfRangeError("from=" + std::to_string(tail->from) +
                                 " is past the end of stream " + tail->stream + " (next offset " +
                                 std::to_string(i.end_offset) + ")");
          } else if (i.name == tail->stream && tail->from < i.start_offset) {
            ok = OutOfRangeError("from=" + std::to_string(tail->from) + " of stream " +
                                 tail->stream + " is no longer held: first available offset " +
                                 std::to_string(i.start_offset));
          }
        }
      }
      if (ok.ok()) {
        SetTimeout(socket.native_handle(), 30);
        ServeTail(agent, socket, req, *tail);
        return;
      }
      res = StatusReply(ok);
      res.keep_alive(false);
      res.prepare_payload();
      http::write(socket, res, ec);
      return;
    }
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
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Worker> workers;  // guarded by mu

  explicit Impl(Agent& a) : agent(a) {}

  int listen_fd() {
    return tcp_acceptor ? tcp_acceptor->native_handle() : unix_acceptor->native_handle();
  }

  // One thread per connection, at most kMaxConnections at once; finished
  // threads are joined by the next Spawn, outside the lock (a finishing
  // thread takes `mu` to leave: joining it under `mu` would deadlock).
  template <typename Socket>
  void Spawn(Socket socket) {
    std::list<Worker> finished;
    {
      std::lock_guard lock(mu);
      for (auto it = workers.begin(); it != workers.end();) {
        if (it->done->load()) {
          finished.splice(finished.end(), workers, it++);
        } else {
          ++it;
        }
      }
      if (stopping) return;
      if (workers.size() >= kMaxConnections) {
        log::Warn("local API: {} connections already open; refusing one more", kMaxConnections);
        boost::system::error_code ec;
        socket.close(ec);
      } else {
        const int fd = socket.native_handle();
        open_fds.insert(fd);
        auto done = std::make_shared<std::atomic<bool>>(false);
        workers.push_back({std::thread([this, s = std::move(socket), fd, done]() mutable {
                             try {
                               ServeConnection(agent, s);
                             } catch (const std::exception& e) {
                               log::Warn("local API connection: {}", e.what());
                             }
                             {
                               std::lock_guard l(mu);
                               open_fds.erase(fd);
                               boost::system::error_code ec;
                               s.close(ec);
                             }
                             done->store(true);
                           }),
                           done});
      }
    }
    for (Worker& w : finished) w.thread.join();
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
  std::list<Impl::Worker> workers;
  {
    std::lock_guard lock(impl_->mu);
    workers.swap(impl_->workers);
  }
  for (Impl::Worker& w : workers) w.thread.join();
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
