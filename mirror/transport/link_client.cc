#include "mirror/transport/link_client.h"

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <cctype>
#include <charconv>
#include <future>
#include <utility>

#include "mirror/transport/internal/link_session.h"

namespace ferry::mirror::transport {
namespace {

using internal::SteadyClock;
namespace asio = internal::asio;
namespace beast = internal::beast;
using internal::tcp;

std::string Millis(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

// Resolve and connect, then hand the socket to a LinkSession for the
// handshake. Runs on one strand of the connection's own io_context; the
// result arrives through `result` exactly once.
class ConnectOp : public std::enable_shared_from_this<ConnectOp> {
 public:
  ConnectOp(std::shared_ptr<asio::io_context> ioc, LinkUrl url, std::string url_text,
            const noise::KeyPair& key, const FingerprintDigest& pinned,
            const LinkClientOptions& options)
      : ioc_(std::move(ioc)),
        strand_(asio::make_strand(*ioc_)),
        resolver_(strand_),
        stream_(strand_),
        timer_(strand_),
        url_(std::move(url)),
        url_text_(std::move(url_text)),
        key_{key.public_key, key.private_key.Clone()},
        pinned_(pinned),
        options_(options) {}

  std::future<Status> Start() {
    std::future<Status> f = result_.get_future();
    asio::dispatch(strand_, [self = shared_from_this()] { self->Resolve(); });
    return f;
  }

  const std::shared_ptr<internal::LinkSession>& session() const { return session_; }

 private:
  void Resolve() {
    started_ = SteadyClock::now();
    timer_.expires_after(options_.connect_timeout);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec) return;
      self->timed_out_ = true;
      self->resolver_.cancel();
    });
    resolver_.async_resolve(
        url_.host, std::to_string(url_.port),
        [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type results) {
          self->OnResolve(ec, std::move(results));
        });
  }

  void OnResolve(beast::error_code ec, tcp::resolver::results_type results) {
    timer_.cancel();
    if (ec) {
      return Done(UnavailableError(
          "cannot resolve " + url_.host + " (" + url_text_ + "): " +
          (timed_out_ ? "timed out after " + Millis(options_.connect_timeout) : ec.message())));
    }
    const auto remaining = options_.connect_timeout - (SteadyClock::now() - started_);
    stream_.expires_after(std::max<SteadyClock::duration>(remaining, std::chrono::milliseconds(1)));
    stream_.async_connect(
        results, [self = shared_from_this()](beast::error_code connect_ec, const tcp::endpoint&) {
          self->OnConnect(connect_ec);
        });
  }

  void OnConnect(beast::error_code ec) {
    if (ec) {
      return Done(UnavailableError("cannot connect to " + url_text_ + ": " +
                                   (ec == beast::error::timeout
                                        ? "timed out after " + Millis(options_.connect_timeout)
                                        : ec.message())));
    }
    stream_.expires_never();
    session_ = std::make_shared<internal::LinkSession>(
        ioc_, std::move(stream_), internal::LinkSession::Role::kClient, options_.link, key_);
    // The pin is checked before message 3, so a hub with another key never
    // learns this side's static key.
    session_->SetRemoteStaticCheck(
        [pinned = pinned_, origin = url_text_](const sodium::PublicKey& hub_key) -> Status {
          if (FingerprintMatches(pinned, hub_key)) return OkStatus();
          return UnauthenticatedError("pinned hub key " + FormatFingerprint(pinned) +
                                      " does not match the key the hub presented, " +
                                      Fingerprint(hub_key) + " (" + origin + ")");
        });
    session_->StartClient(url_.HostHeader(), url_.target, url_text_,
                          SteadyClock::now() + options_.handshake_timeout,
                          [self = shared_from_this()](Status status) { self->Done(status); });
  }

  void Done(Status status) { result_.set_value(std::move(status)); }

  const std::shared_ptr<asio::io_context> ioc_;
  asio::strand<asio::io_context::executor_type> strand_;
  tcp::resolver resolver_;
  beast::tcp_stream stream_;
  asio::steady_timer timer_;
  const LinkUrl url_;
  const std::string url_text_;
  const noise::KeyPair key_;
  const FingerprintDigest pinned_;
  const LinkClientOptions options_;
  SteadyClock::time_point started_;
  bool timed_out_ = false;
  std::promise<Status> result_;
  std::shared_ptr<internal::LinkSession> session_;
};

}  // namespace

std::string LinkUrl::HostHeader() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string LinkUrl::Origin() const { return "ws://" + HostHeader(); }

Result<LinkUrl> LinkClient::ParseUrl(std::string_view url) {
  const std::string quoted = "'" + std::string(url) + "'";
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    return InvalidArgumentError("link URL " + quoted + " must look like ws://host:port");
  }
  std::string scheme(url.substr(0, scheme_end));
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme == "wss") {
    return InvalidArgumentError("link URL " + quoted +
                                ": wss:// is not supported yet (the link is encrypted by Noise; "
                                "use ws://, or a TLS-terminating ingress in front of the hub)");
  }
  if (scheme != "ws") {
    return InvalidArgumentError("link URL " + quoted + " must start with ws://");
  }
  std::string_view rest = url.substr(scheme_end + 3);
  LinkUrl out;
  if (!rest.empty() && rest.front() == '[') {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return InvalidArgumentError("link URL " + quoted + ": unterminated IPv6 address");
    }
    out.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
  } else {
    const size_t end = rest.find_first_of(":/");
    out.host = std::string(rest.substr(0, end));
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  }
  if (out.host.empty()) return InvalidArgumentError("link URL " + quoted + " has no host");
  if (!rest.empty() && rest.front() == ':') {
    rest.remove_prefix(1);
    const size_t end = std::min(rest.find('/'), rest.size());
    std::string_view digits = rest.substr(0, end);
    unsigned port = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() || port == 0 ||
        port > 65535) {
      return InvalidArgumentError("link URL " + quoted + " has an invalid port '" +
                                  std::string(digits) + "'");
    }
    out.port = static_cast<uint16_t>(port);
    rest.remove_prefix(end);
  }
  if (!rest.empty() && rest.front() != '/') {
    return InvalidArgumentError("link URL " + quoted + " is malformed after the host");
  }
  out.target = (rest.empty() || rest == "/") ? std::string(kLinkPath) : std::string(rest);
  return out;
}

Result<std::shared_ptr<LinkConnection>> LinkClient::Connect(std::string_view url,
                                                            const StaticIdentity& identity,
                                                            std::string_view pinned_fingerprint,
                                                            const LinkClientOptions& options) {
  auto pinned = ParseFingerprint(pinned_fingerprint);
  if (!pinned.ok()) return pinned.status().WithContext("pinned hub fingerprint");
  RETURN_IF_ERROR(ValidateLinkOptions(options.link));
  if (options.connect_timeout.count() <= 0 || options.handshake_timeout.count() <= 0) {
    return InvalidArgumentError("connect_timeout and handshake_timeout must be positive");
  }
  ASSIGN_OR_RETURN(LinkUrl parsed, ParseUrl(url));
  const std::string origin = parsed.Origin();

  auto runtime = std::make_unique<internal::ClientRuntime>();
  const noise::KeyPair key{identity.public_key(), identity.private_key().Clone()};
  auto op =
      std::make_shared<ConnectOp>(runtime->io_context(), parsed, origin, key, *pinned, options);
  Status status = op->Start().get();  // every step is bounded by a timeout
  std::shared_ptr<internal::LinkSession> session = op->session();
  op.reset();
  if (!status.ok()) {
    session.reset();
    runtime.reset();  // joins the I/O thread; the failed session closed its socket
    return status;
  }
  // Checked during the handshake already (before message 3); kept as the
  // last guard before the connection is handed out.
  if (!FingerprintMatches(*pinned, session->peer_key())) {
    Status mismatch = UnauthenticatedError("pinned hub key " + FormatFingerprint(*pinned) +
                                           " does not match the key the hub presented, " +
                                           Fingerprint(session->peer_key()) + " (" + origin + ")");
    session->Abort(mismatch);
    session.reset();
    runtime.reset();  // waits for the close (bounded by close_timeout)
    return mismatch;
  }
  session->Activate();
  return LinkConnection::Create(std::move(session), /*peer_enrolled=*/true, std::move(runtime));
}

}  // namespace ferry::mirror::transport
