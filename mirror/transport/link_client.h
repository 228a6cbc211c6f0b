// LinkClient: the connecting side of the link (an agent, or a hub that
// mirrors to another hub). Connect() resolves and connects, upgrades to
// WebSocket at the URL's path (default /v1/link) offering "ferry-link-v1",
// runs the Noise XX initiator with the caller's static identity, and then
// compares the hub's static key with the pinned fingerprint.
//
// Errors (each message names the URL):
//   kInvalidArgument     a malformed URL or pinned fingerprint, bad options;
//   kUnavailable         resolving or connecting failed or timed out, the
//                        connection was cut or closed during the handshake;
//   kDeadlineExceeded    the WebSocket upgrade and Noise handshake did not
//                        finish within handshake_timeout;
//   kFailedPrecondition  "ws://host:port is not a Ferry hub: <what happened>"
//                        (an HTTP answer other than the upgrade, a non-HTTP
//                        answer, an upgrade without the ferry-link-v1
//                        protocol), or a hub that speaks another link
//                        version;
//   kDataLoss            a Noise handshake message that does not
//                        authenticate (damage, or a peer on another prologue);
//   kUnauthenticated     "pinned hub key fry1:... does not match the key the
//                        hub presented, fry1:..." (the connection is closed).
// Thread-safety: thread-safe (Connect has no shared state).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"
#include "mirror/identity.h"
#include "mirror/transport/link_connection.h"

namespace ferry::mirror::transport {

struct LinkClientOptions {
  // Resolving the host and the TCP connect. Default 10 s.
  std::chrono::milliseconds connect_timeout{10'000};
  // WebSocket upgrade plus the Noise handshake. Default 10 s.
  std::chrono::milliseconds handshake_timeout{10'000};
  // Session tunables (frame size, keepalive, queues).
  LinkOptions link;
};

// A parsed link URL: ws://host[:port][/path].
struct LinkUrl {
  std::string host;    // without brackets for IPv6 literals
  uint16_t port = 80;  // default 80
  std::string target;  // the path; "/v1/link" when the URL has none (or "/")
  // "host:port" as sent in the Host header ("[::1]:4000" for IPv6).
  std::string HostHeader() const;
  // "ws://host:port", for messages.
  std::string Origin() const;
};

class LinkClient {
 public:
  // `pinned_fingerprint` is the hub's fingerprint as ParseFingerprint
  // accepts it. The connection keeps its own I/O thread until it is
  // destroyed.
  static Result<std::shared_ptr<LinkConnection>> Connect(std::string_view url,
                                                         const StaticIdentity& identity,
                                                         std::string_view pinned_fingerprint,
                                                         const LinkClientOptions& options = {});

  // kInvalidArgument for anything but ws://host[:port][/path] (wss:// is
  // not supported yet: the link is encrypted by Noise; a TLS-terminating
  // ingress forwards ws to the hub).
  static Result<LinkUrl> ParseUrl(std::string_view url);
};

}  // namespace ferry::mirror::transport
