// HubClient: ferryctl's HTTP/1.1 client for a ferry-hub's REST API
// (docs/api.md), over Boost.Beast.
//
// Every call returns the hub's answer, or a Status that says what to do:
//   kUnavailable        nothing answers at the URL, or the connection broke
//   kDeadlineExceeded   no answer within the timeout
//   kUnauthenticated    401: the token is unknown, malformed or revoked
//   kPermissionDenied   403: the token's tenant or role does not allow it
//   kNotFound, kInvalidArgument, kAlreadyExists, ...: the hub's own error
//                       code and message ({"error":{"code","message"}})
//   kDataLoss           a malformed answer (not JSON where JSON was due, or
//                       over the caller's size limit)
// Connections are kept alive and reused (a small pool), so a restore that
// fetches thousands of chunks does not open thousands of connections.
//
// The REST API has no TLS of its own (docs/api.md): only http:// URLs. A hub
// behind a TLS-terminating proxy is reached through a local tunnel for now.
//
// Thread-safety: thread-safe; concurrent calls use separate connections.
#pragma once

#include <boost/json/value.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/status.h"

namespace ferry::ctl {

struct HubUrl {
  std::string host;
  std::string port;  // "80" when the URL has none
  std::string base;  // path prefix without a trailing '/', "" for the root
  std::string text;  // "http://host:port" + base, for messages
};

// Accepts http://host[:port][/prefix] and, for convenience, the agent's link
// URL ws://host[:port][/v1/link] (same port: the hub serves both). Anything
// else is kInvalidArgument with an example.
Result<HubUrl> ParseHubUrl(const std::string& url);

struct HubAnswer {
  int status = 0;
  std::string content_type;
  std::string body;
};

class HubClient {
 public:
  HubClient(HubUrl url, std::string token,
            std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~HubClient();
  HubClient(const HubClient&) = delete;
  HubClient& operator=(const HubClient&) = delete;

  const HubUrl& url() const { return url_; }

  // One request; `target` starts with '/' and is appended to the URL's base.
  // Any 2xx answer is returned; other statuses become the Status above.
  // Bodies over `max_body` bytes are kDataLoss.
  Result<HubAnswer> Call(const std::string& method, const std::string& target,
                         const std::string& body = "",
                         const std::string& content_type = "application/json",
                         uint64_t max_body = 16 << 20);

  // Call + JSON parse of the answer (an empty 204 answer is null).
  Result<boost::json::value> Json(const std::string& method, const std::string& target,
                                  const std::string& body = "",
                                  const std::string& content_type = "application/json");
  // GET of a byte download (chunks, keys, manifests, refs).
  Result<Bytes> Download(const std::string& target, uint64_t max_bytes);

 private:
  struct Connection;
  std::unique_ptr<Connection> Take();
  void Give(std::unique_ptr<Connection> c);
  Status Exchange(Connection& c, const std::string& method, const std::string& target,
                  const std::string& body, const std::string& content_type, uint64_t max_body,
                  HubAnswer& out, bool& retryable);

  const HubUrl url_;
  std::string token_;
  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_;  // guarded by mu_
};

}  // namespace ferry::ctl
