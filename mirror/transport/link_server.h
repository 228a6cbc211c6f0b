// LinkServer: the hub's listening side of the link. One io_context on a
// small pool of threads, a TCP listener, every connection on its own strand.
//
// Each connection starts as HTTP/1.1 (Boost.Beast, header and body size
// limits, a read timeout):
//   - GET /v1/link with a WebSocket upgrade offering the "ferry-link-v1"
//     subprotocol: the upgrade is accepted and the Noise XX responder runs,
//     all within handshake_timeout. Then `authorize` classifies the peer's
//     static key; the session is handed to `on_session` on a thread of its
//     own (thread per session: simple and enough for the hub's agent
//     count for now; see docs/format/link-transport.md, "Threads").
//     An unknown key still gets a session, with peer_enrolled() false: the
//     layer above allows it only the enrollment call.
//   - an upgrade offering other subprotocols only: 400 with the header
//     "Ferry-Link-Protocols: ferry-link-v1" (so a client of another version
//     can say so); GET /v1/link without an upgrade: 426.
//   - any other request: `http` or `http_from` (the hub's REST API plugs
//     in here), or 404
//     with a short text body without it. Keep-alive is honoured.
//
// Stop() (also run by the destructor) stops accepting, ends every session
// (kUnavailable "link server stopping"; peers get close code 1001), joins
// the session threads — so `on_session` must return once its connection's
// calls fail — and then the I/O threads.
//
// Callbacks: `authorize` and `on_session` run on the session's thread;
// `http` runs on an I/O thread and must not block for long. Exceptions
// thrown by a callback are caught at the session boundary and end only that
// session (or answer 500).
// Thread-safety: thread-safe.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/sodium.h"
#include "core/status.h"
#include "mirror/identity.h"
#include "mirror/transport/link_connection.h"

namespace ferry::mirror::transport {

namespace internal {
class ServerState;
}  // namespace internal

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

enum class PeerAuthorization { kKnown, kUnknown };

struct LinkServerCallbacks {
  // Whether a peer's static key is enrolled. Default (empty): every key is
  // unknown.
  std::function<PeerAuthorization(const sodium::PublicKey&)> authorize;
  // Receives each authenticated session, on a thread of its own. Required.
  std::function<void(std::shared_ptr<LinkConnection>)> on_session;
  // Answers requests other than the link upgrade. Default: 404.
  std::function<HttpResponse(const HttpRequest&)> http;
  // The same, also given the peer's IP address as text ("192.0.2.7",
  // "2001:db8::7"; "" when the socket cannot tell), e.g. for limits per
  // address. Used instead of `http` when set.
  std::function<HttpResponse(const HttpRequest&, const std::string& peer_address)> http_from;
};

struct LinkServerOptions {
  // Address to listen on (IPv4 or IPv6 literal). Default 127.0.0.1.
  std::string address = "127.0.0.1";
  // TCP port; 0 picks a free one (see LinkServer::port()). Default 0.
  uint16_t port = 0;
  // I/O threads. Default 2.
  int io_threads = 2;
  // Link sessions at once (handshaking or open); an upgrade beyond it is
  // answered 503 with Retry-After. Default 1024.
  size_t max_sessions = 1024;
  // From TCP accept to the end of the Noise handshake. Default 10 s.
  std::chrono::milliseconds handshake_timeout{10'000};
  // Reading one later HTTP request on a keep-alive connection. Default 30 s.
  std::chrono::milliseconds http_timeout{30'000};
  // HTTP request limits. Defaults 8 KiB of header, 1 MiB of body.
  size_t max_http_header_bytes = 8 << 10;
  size_t max_http_body_bytes = 1 << 20;
  // Session tunables (frame size, keepalive, queues).
  LinkOptions link;
};

class LinkServer {
 public:
  // Binds and starts serving. kInvalidArgument for bad options or a missing
  // on_session, kUnavailable when the address cannot be bound.
  static Result<std::unique_ptr<LinkServer>> Start(const StaticIdentity& identity,
                                                   const LinkServerOptions& options,
                                                   LinkServerCallbacks callbacks);
  ~LinkServer();
  LinkServer(const LinkServer&) = delete;
  LinkServer& operator=(const LinkServer&) = delete;

  // The bound port.
  uint16_t port() const;
  // Sessions handed to on_session whose thread has not returned yet.
  size_t active_sessions() const;
  // See the file comment. Idempotent.
  void Stop();
  // Closes the listener: no new connections (HTTP or link); open sessions
  // and connections carry on. For a graceful shutdown before Stop().
  void StopAccepting();

 private:
  explicit LinkServer(std::unique_ptr<internal::ServerState> state);
  std::unique_ptr<internal::ServerState> state_;
};

}  // namespace ferry::mirror::transport
