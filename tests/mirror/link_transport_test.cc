// Tests of the link transport over real sockets on 127.0.0.1 (port 0):
// mirror/transport/link_server.cc, link_client.cc, link_connection.cc and
// internal/link_session.cc. In-process hub and agent; tampering through a
// WebSocket relay; a silent network through a TCP proxy that can freeze.
// Waits are on conditions with deadlines; a few waits check that something
// does NOT happen within a bound (a session staying up past its idle
// timeout), which needs time to pass.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mirror/identity.h"
#include "mirror/transport/link_client.h"
#include "mirror/transport/link_connection.h"
#include "mirror/transport/link_server.h"
#include "mirror/transport/record_format.h"
#include "tests/testing/test_util.h"

namespace ferry::mirror::transport {
namespace testing {
// Defined in record_layer_test.cc (the binary's operator new).
void StartTrackingAllocations();
size_t StopTrackingAllocations();
}  // namespace testing

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr auto kWait = 10s;  // a generous bound for things that must happen

template <typename T>
class Mailbox {
 public:
  void Put(T value) {
    std::lock_guard lock(mu_);
    items_.push_back(std::move(value));
    cv_.notify_all();
  }
  std::optional<T> Take(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !items_.empty(); })) return std::nullopt;
    T value = std::move(items_.front());
    items_.pop_front();
    return value;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<T> items_;
};

Bytes Frame(size_t size, uint64_t seed = 1) { return ferry::testing::SeededBytes(seed, size); }

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

LinkOptions QuickLink() {
  LinkOptions o;
  o.close_timeout = 1s;
  return o;
}

// A LinkServer whose sessions land in a mailbox (or go to a custom handler).
class Hub {
 public:
  explicit Hub(LinkServerOptions options = {},
               PeerAuthorization authorization = PeerAuthorization::kKnown,
               std::function<void(std::shared_ptr<LinkConnection>)> on_session = nullptr,
               std::function<HttpResponse(const HttpRequest&)> http_handler = nullptr)
      : identity(StaticIdentity::Generate()) {
    if (options.link.close_timeout == LinkOptions().close_timeout) {
      options.link.close_timeout = QuickLink().close_timeout;
    }
    LinkServerCallbacks callbacks;
    callbacks.authorize = [this, authorization](const sodium::PublicKey& key) {
      authorized.Put(key);
      return authorization;
    };
    if (on_session) {
      callbacks.on_session = std::move(on_session);
    } else {
      callbacks.on_session = [this](std::shared_ptr<LinkConnection> c) {
        sessions.Put(std::move(c));
      };
    }
    callbacks.http = std::move(http_handler);
    auto started = LinkServer::Start(identity, options, std::move(callbacks));
    EXPECT_TRUE(started.ok()) << started.status().ToString();
    if (started.ok()) server = std::move(started).value();
  }

  uint16_t port() const { return server->port(); }
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(port()); }

  std::shared_ptr<LinkConnection> NextSession() {
    auto s = sessions.Take(std::chrono::duration_cast<std::chrono::milliseconds>(kWait));
    EXPECT_TRUE(s.has_value()) << "no session reached the application";
    return s ? *s : nullptr;
  }

  StaticIdentity identity;
  Mailbox<sodium::PublicKey> authorized;
  Mailbox<std::shared_ptr<LinkConnection>> sessions;
  std::unique_ptr<LinkServer> server;  // destroyed first: stops before the mailboxes go
};

LinkClientOptions QuickClient() {
  LinkClientOptions o;
  o.link = QuickLink();
  return o;
}

std::shared_ptr<LinkConnection> ConnectOrDie(const std::string& url, const StaticIdentity& agent,
                                             const std::string& pin,
                                             const LinkClientOptions& options = QuickClient()) {
  auto c = LinkClient::Connect(url, agent, pin, options);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : nullptr;
}

void SetReceiveTimeout(tcp::socket& s, std::chrono::seconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count());
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

// Sends `request` on a new connection and returns everything the server
// sends until it closes.
std::string RawExchange(uint16_t port, const std::string& request) {
  asio::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  SetReceiveTimeout(socket, 10s);
  asio::write(socket, asio::buffer(request));
  std::string out;
  char buf[4096];
  beast::error_code ec;
  for (;;) {
    size_t n = socket.read_some(asio::buffer(buf), ec);
    if (ec) break;
    out.append(buf, n);
  }
  return out;
}

// A one-connection TCP server running `serve` on its own thread.
class RawServer {
 public:
  explicit RawServer(std::function<void(tcp::socket&)> serve)
      : acceptor_(ioc_, {asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this, serve = std::move(serve)] {
      tcp::socket socket(ioc_);
      beast::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stopping_) return;
      SetReceiveTimeout(socket, 10s);
      serve(socket);
    });
  }
  ~RawServer() {
    stopping_ = true;
    // Unblocks accept() if nobody connected.
    tcp::socket poke(ioc_);
    beast::error_code ec;
    poke.connect({asio::ip::make_address("127.0.0.1"), port_}, ec);
    thread_.join();
  }
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(port_); }

  // Reads the request head, for servers that answer it.
  static void ReadHead(tcp::socket& s) {
    asio::streambuf buf;
    beast::error_code ec;
    asio::read_until(s, buf, "\r\n\r\n", ec);
  }
  // Waits until the client goes away.
  static void Drain(tcp::socket& s) {
    char buf[1024];
    beast::error_code ec;
    while (!ec) s.read_some(asio::buffer(buf), ec);
  }

 private:
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

enum class Direction { kClientToServer, kServerToClient };
// Maps one relayed WebSocket message to what is forwarded instead (none, one
// or several messages). Message indices count per direction from 0:
// client->server 0 = Noise message 1, 1 = Noise message 3, 2.. = transport;
// server->client 0 = Noise message 2, 1.. = transport.
using Tamper = std::function<std::vector<Bytes>(Direction, size_t index, Bytes message)>;

// A WebSocket relay between a link client and a hub that can alter the
// message stream. Runs on one thread; relays one connection.
class WsRelay {
 public:
  WsRelay(uint16_t upstream_port, Tamper tamper)
      : acceptor_(ioc_, {asio::ip::make_address("127.0.0.1"), 0}),
        upstream_port_(upstream_port),
        tamper_(std::move(tamper)) {
    port_ = acceptor_.local_endpoint().port();
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (!ec) OnAccept(std::move(socket));
    });
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~WsRelay() {
    ioc_.stop();
    thread_.join();
  }
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(port_); }

 private:
  struct Side {
    explicit Side(tcp::socket s) : ws(std::move(s)) {}
    explicit Side(asio::io_context& ioc) : ws(ioc) {}
    websocket::stream<beast::tcp_stream> ws;
    beast::flat_buffer buffer;
    std::deque<Bytes> out;
    bool writing = false;
    size_t index = 0;
  };

  void OnAccept(tcp::socket socket) {
    down_.emplace(std::move(socket));
    down_->ws.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
      res.set(http::field::sec_websocket_protocol, kLinkProtocol);
    }));
    down_->ws.async_accept([this](beast::error_code ec) {
      if (ec) return;
      up_.emplace(ioc_);
      beast::get_lowest_layer(up_->ws).async_connect(
          tcp::endpoint(asio::ip::make_address("127.0.0.1"), upstream_port_),
          [this](beast::error_code connect_ec) {
            if (connect_ec) return;
            up_->ws.set_option(websocket::stream_base::decorator([](websocket::request_type& req) {
              req.set(http::field::sec_websocket_protocol, kLinkProtocol);
            }));
            up_->ws.async_handshake("127.0.0.1:" + std::to_string(upstream_port_),
                                    std::string(kLinkPath), [this](beast::error_code handshake_ec) {
                                      if (handshake_ec) return;
                                      down_->ws.binary(true);
                                      up_->ws.binary(true);
                                      Pump(*down_, *up_, Direction::kClientToServer);
                                      Pump(*up_, *down_, Direction::kServerToClient);
                                    });
          });
    });
  }

  void Pump(Side& from, Side& to, Direction dir) {
    from.ws.async_read(from.buffer, [this, &from, &to, dir](beast::error_code ec, size_t) {
      if (ec) {
        if (ec == websocket::error::closed) {
          to.ws.async_close(from.ws.reason(), [](beast::error_code) {});
        } else {
          beast::error_code ignored;
          beast::get_lowest_layer(to.ws).socket().close(ignored);
        }
        return;
      }
      auto data = from.buffer.cdata();
      Bytes message(static_cast<const uint8_t*>(data.data()),
                    static_cast<const uint8_t*>(data.data()) + data.size());
      from.buffer.consume(from.buffer.size());
      for (Bytes& m : tamper_(dir, from.index++, std::move(message))) {
        to.out.push_back(std::move(m));
      }
      WriteNext(to);
      Pump(from, to, dir);
    });
  }

  void WriteNext(Side& to) {
    if (to.writing || to.out.empty()) return;
    to.writing = true;
    to.ws.async_write(asio::buffer(to.out.front()), [this, &to](beast::error_code ec, size_t) {
      to.writing = false;
      if (ec) return;
      to.out.pop_front();
      WriteNext(to);
    });
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  const uint16_t upstream_port_;
  Tamper tamper_;
  std::optional<Side> down_;  // the client's side
  std::optional<Side> up_;    // the hub's side
  std::thread thread_;
};

// A TCP proxy that can freeze: from then on it forwards nothing, in either
// direction (a peer that stopped answering, a dead NAT mapping).
class TcpProxy {
 public:
  explicit TcpProxy(uint16_t upstream_port)
      : acceptor_(ioc_, {asio::ip::make_address("127.0.0.1"), 0}),
        upstream_port_(upstream_port),
        down_(ioc_),
        up_(ioc_) {
    port_ = acceptor_.local_endpoint().port();
    acceptor_.async_accept(down_, [this](beast::error_code ec) {
      if (ec) return;
      up_.async_connect({asio::ip::make_address("127.0.0.1"), upstream_port_},
                        [this](beast::error_code connect_ec) {
                          if (connect_ec) return;
                          Pump(down_, up_, down_buf_);
                          Pump(up_, down_, up_buf_);
                        });
    });
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~TcpProxy() {
    ioc_.stop();
    thread_.join();
  }
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(port_); }
  void Freeze() { frozen_ = true; }

 private:
  void Pump(tcp::socket& from, tcp::socket& to, std::array<char, 65536>& buf) {
    from.async_read_some(
        asio::buffer(buf), [this, &from, &to, &buf](beast::error_code ec, size_t n) {
          beast::error_code ignored;
          if (ec) {
            if (!frozen_) to.close(ignored);  // frozen: the far side hears nothing, not even a FIN
            return;
          }
          if (frozen_) return Pump(from, to, buf);                // swallow
          asio::write(to, asio::buffer(buf.data(), n), ignored);  // loopback: fine to block
          Pump(from, to, buf);
        });
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  const uint16_t upstream_port_;
  tcp::socket down_;
  tcp::socket up_;
  std::array<char, 65536> down_buf_{};
  std::array<char, 65536> up_buf_{};
  std::atomic<bool> frozen_{false};
  std::thread thread_;
};

// Frames until the first error (or kWait).
std::pair<std::vector<Bytes>, Status> ReceiveUntilError(LinkConnection& c) {
  std::vector<Bytes> frames;
  for (;;) {
    auto r = c.ReceiveFrame(std::chrono::duration_cast<std::chrono::milliseconds>(kWait));
    if (!r.ok()) return {frames, r.status()};
    frames.push_back(std::move(r).value());
  }
}

// ---------------------------------------------------------------------------

TEST(LinkTransport, HandshakeAuthenticatesBothSidesAndFramesFlowBothWays) {
  Hub hub;
  StaticIdentity agent = StaticIdentity::Generate();
  auto client = ConnectOrDie(hub.url(), agent, hub.identity.fingerprint());
  ASSERT_NE(client, nullptr);
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);

  EXPECT_EQ(server->peer_key(), agent.public_key());
  EXPECT_EQ(server->peer_fingerprint(), agent.fingerprint());
  EXPECT_EQ(client->peer_key(), hub.identity.public_key());
  EXPECT_TRUE(server->peer_enrolled());
  EXPECT_TRUE(client->peer_enrolled());
  EXPECT_EQ(server->handshake_hash(), client->handshake_hash());
  EXPECT_EQ(server->handshake_hash().size(), 64u);
  EXPECT_EQ(hub.authorized.Take(1s), agent.public_key());

  const size_t sizes[] = {0,       1,         kMaxFrameStartData,   kMaxFrameStartData + 1,
                          100'000, 1'000'000, kDefaultMaxFrameBytes};
  size_t total = 0;
  for (size_t size : sizes) {
    SCOPED_TRACE(size);
    total += size;
    const Bytes up = Frame(size, size);
    const Bytes down = Frame(size, size + 1);
    ASSERT_TRUE(client->SendFrame(up).ok());
    auto got = server->ReceiveFrame(kWait);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, up);
    ASSERT_TRUE(server->SendFrame(down).ok());
    auto back = client->ReceiveFrame(kWait);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, down);
  }
  EXPECT_EQ(server->counters().frames_received, std::size(sizes));
  EXPECT_EQ(client->counters().frames_received, std::size(sizes));
  EXPECT_GT(server->counters().bytes_received, total);
  EXPECT_GT(client->counters().bytes_received, total);
  EXPECT_TRUE(client->status().ok());
  EXPECT_TRUE(server->status().ok());
}

TEST(LinkTransport, ConcurrentSendersKeepFramesWholeAndInOrder) {
  Hub hub;
  StaticIdentity agent = StaticIdentity::Generate();
  auto client = ConnectOrDie(hub.url(), agent, hub.identity.fingerprint());
  ASSERT_NE(client, nullptr);
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);
  constexpr int kPerThread = 25;
  auto sender = [&](uint8_t tag) {
    for (int i = 0; i < kPerThread; ++i) {
      Bytes f =
          Frame(70'000 + static_cast<size_t>(i) * 1000, tag * 1000u + static_cast<unsigned>(i));
      f[0] = tag;
      f[1] = static_cast<uint8_t>(i);
      EXPECT_TRUE(client->SendFrame(f).ok());
    }
  };
  std::thread a(sender, 1), b(sender, 2);
  int next[3] = {0, 0, 0};
  for (int n = 0; n < 2 * kPerThread; ++n) {
    auto f = server->ReceiveFrame(kWait);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    const uint8_t tag = (*f)[0];
    ASSERT_TRUE(tag == 1 || tag == 2);
    const int i = (*f)[1];
    EXPECT_EQ(i, next[tag]++);
    Bytes expected =
        Frame(70'000 + static_cast<size_t>(i) * 1000, tag * 1000u + static_cast<unsigned>(i));
    expected[0] = tag;
    expected[1] = static_cast<uint8_t>(i);
    EXPECT_EQ(*f, expected);
  }
  a.join();
  b.join();
}

TEST(LinkTransport, UnknownClientKeyReachesApplicationNotEnrolled) {
  Hub hub({}, PeerAuthorization::kUnknown);
  StaticIdentity stranger = StaticIdentity::Generate();
  auto client = ConnectOrDie(hub.url(), stranger, hub.identity.fingerprint());
  ASSERT_NE(client, nullptr);
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);
  EXPECT_FALSE(server->peer_enrolled());
  EXPECT_EQ(server->peer_key(), stranger.public_key());
  // The session itself works: the layer above decides what to allow.
  ASSERT_TRUE(client->SendFrame(AsBytes("enroll me")).ok());
  auto f = server->ReceiveFrame(kWait);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(ToString(*f), "enroll me");
}

TEST(LinkTransport, WrongPinnedKeyIsRefusedNamingBothFingerprints) {
  Hub hub;
  StaticIdentity agent = StaticIdentity::Generate();
  StaticIdentity impostor_pin = StaticIdentity::Generate();
  auto r = LinkClient::Connect(hub.url(), agent, impostor_pin.fingerprint(), QuickClient());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnauthenticated);
  EXPECT_TRUE(Contains(r.status().message(), "pinned hub key " + impostor_pin.fingerprint() +
                                                 " does not match the key the hub presented, " +
                                                 hub.identity.fingerprint()))
      << r.status().message();
  // The agent checked the pin after message 2 and stopped before message 3,
  // so the hub never learned the agent's static key and handed no session
  // up: the first key it authorizes is that of the next, correctly pinned,
  // client.
  StaticIdentity honest = StaticIdentity::Generate();
  auto client = ConnectOrDie(hub.url(), honest, hub.identity.fingerprint());
  ASSERT_NE(client, nullptr);
  auto first = hub.authorized.Take(std::chrono::duration_cast<std::chrono::milliseconds>(kWait));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(*first, honest.public_key());
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->peer_key(), honest.public_key());
}

TEST(LinkTransport, MalformedPinIsInvalidArgument) {
  Hub hub;
  auto r = LinkClient::Connect(hub.url(), StaticIdentity::Generate(), "sha256:abcd");
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(r.status().message(), "pinned hub fingerprint"));
}

TEST(LinkTransport, PlainHttpServerIsNotAFerryHub) {
  RawServer http_server([](tcp::socket& s) {
    RawServer::ReadHead(s);
    asio::write(s, asio::buffer(std::string("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                            "Content-Length: 13\r\n\r\n<html></html>")));
    RawServer::Drain(s);
  });
  auto r = LinkClient::Connect(http_server.url(), StaticIdentity::Generate(),
                               StaticIdentity::Generate().fingerprint(), QuickClient());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(r.status().message(), http_server.url() + " is not a Ferry hub: "))
      << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), "HTTP 200 OK")) << r.status().message();
}

TEST(LinkTransport, NonHttpServerIsNotAFerryHub) {
  for (const std::string& garbage : {std::string("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
                                     std::string("\x16\x03\x01\x02\x00garbage", 10),
                                     std::string("garbage garbage garbage\r\n\r\n")}) {
    SCOPED_TRACE(garbage);
    RawServer not_http([garbage](tcp::socket& s) {
      RawServer::ReadHead(s);
      asio::write(s, asio::buffer(garbage));
      RawServer::Drain(s);
    });
    auto r = LinkClient::Connect(not_http.url(), StaticIdentity::Generate(),
                                 StaticIdentity::Generate().fingerprint(), QuickClient());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().ToString();
    EXPECT_TRUE(Contains(r.status().message(), not_http.url() + " is not a Ferry hub: "))
        << r.status().message();
    EXPECT_TRUE(Contains(r.status().message(), "not HTTP")) << r.status().message();
  }
}

TEST(LinkTransport, WebSocketServerWithoutLinkProtocolIsNotAFerryHub) {
  RawServer ws_server([](tcp::socket& s) {
    websocket::stream<tcp::socket&> ws(s);
    beast::error_code ec;
    ws.accept(ec);  // selects no subprotocol
    beast::flat_buffer b;
    while (!ec) ws.read(b, ec);
  });
  auto r = LinkClient::Connect(ws_server.url(), StaticIdentity::Generate(),
                               StaticIdentity::Generate().fingerprint(), QuickClient());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(r.status().message(),
                       "is not a Ferry hub: it accepted the WebSocket "
                       "upgrade at /v1/link but not the ferry-link-v1"))
      << r.status().message();
}

TEST(LinkTransport, HubOfAnotherLinkVersionIsNamed) {
  RawServer other_version([](tcp::socket& s) {
    RawServer::ReadHead(s);
    asio::write(s, asio::buffer(std::string("HTTP/1.1 400 Bad Request\r\n"
                                            "Ferry-Link-Protocols: ferry-link-v2\r\n"
                                            "Content-Length: 0\r\n\r\n")));
    RawServer::Drain(s);
  });
  auto r = LinkClient::Connect(other_version.url(), StaticIdentity::Generate(),
                               StaticIdentity::Generate().fingerprint(), QuickClient());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(
      Contains(r.status().message(), "does not speak ferry-link-v1 (it speaks ferry-link-v2)"))
      << r.status().message();
}

TEST(LinkTransport, ServerThatNeverAnswersHitsClientHandshakeTimeout) {
  RawServer silent([](tcp::socket& s) { RawServer::Drain(s); });
  LinkClientOptions options = QuickClient();
  options.handshake_timeout = 300ms;
  const auto start = SteadyClock::now();
  auto r = LinkClient::Connect(silent.url(), StaticIdentity::Generate(),
                               StaticIdentity::Generate().fingerprint(), options);
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_LT(SteadyClock::now() - start, 5s);
}

TEST(LinkTransport, ConnectionRefusedIsUnavailable) {
  uint16_t port;
  {
    asio::io_context ioc;
    tcp::acceptor a(ioc, {asio::ip::make_address("127.0.0.1"), 0});
    port = a.local_endpoint().port();
  }
  auto r = LinkClient::Connect("ws://127.0.0.1:" + std::to_string(port), StaticIdentity::Generate(),
                               StaticIdentity::Generate().fingerprint(), QuickClient());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_TRUE(Contains(r.status().message(), "cannot connect to ws://127.0.0.1:"));
}

TEST(LinkTransport, ServerRefusesUpgradeWithoutLinkProtocol) {
  Hub hub;
  for (const std::string& offer :
       {std::string("Sec-WebSocket-Protocol: ferry-link-v9\r\n"), std::string("")}) {
    SCOPED_TRACE(offer);
    const std::string response = RawExchange(
        hub.port(),
        "GET /v1/link HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
            offer + "\r\n");
    EXPECT_TRUE(response.starts_with("HTTP/1.1 400")) << response;
    EXPECT_TRUE(Contains(response, "Ferry-Link-Protocols: ferry-link-v1")) << response;
  }
}

TEST(LinkTransport, ServerAnswersOtherRequestsWith404Or426WithoutHandler) {
  Hub hub;
  std::string r =
      RawExchange(hub.port(), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 404")) << r;
  r = RawExchange(hub.port(), "GET /v1/link HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 426")) << r;
  r = RawExchange(hub.port(), "this is not http\r\n\r\n");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 400")) << r;
}

TEST(LinkTransport, ServerPassesOtherRequestsToHttpHandler) {
  Hub hub({}, PeerAuthorization::kKnown, nullptr, [](const HttpRequest& req) {
    if (req.target() == "/boom") throw std::runtime_error("boom");
    HttpResponse res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain");
    res.body() = "handled " + std::string(req.target());
    return res;
  });
  // Two requests on one keep-alive connection.
  std::string r = RawExchange(hub.port(),
                              "GET /api/v1/agents HTTP/1.1\r\nHost: x\r\n\r\n"
                              "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 200 OK")) << r;
  EXPECT_TRUE(Contains(r, "handled /api/v1/agents")) << r;
  EXPECT_TRUE(Contains(r, "handled /healthz")) << r;
  r = RawExchange(hub.port(), "GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 500")) << r;
  // The link still works beside the handler.
  auto client = ConnectOrDie(hub.url(), StaticIdentity::Generate(), hub.identity.fingerprint());
  EXPECT_NE(client, nullptr);
}

TEST(LinkTransport, SilentClientIsCutByHandshakeTimeout) {
  LinkServerOptions options;
  options.handshake_timeout = 300ms;
  Hub hub(options);
  const auto start = SteadyClock::now();
  const std::string r = RawExchange(hub.port(), "");  // connects, sends nothing
  EXPECT_EQ(r, "");
  const auto elapsed = SteadyClock::now() - start;
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 5s);
}

TEST(LinkTransport, ClientThatNeverStartsNoiseIsCutByHandshakeTimeout) {
  LinkServerOptions options;
  options.handshake_timeout = 300ms;
  Hub hub(options);
  asio::io_context ioc;
  websocket::stream<tcp::socket> ws(ioc);
  ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), hub.port()});
  SetReceiveTimeout(ws.next_layer(), 10s);
  ws.set_option(websocket::stream_base::decorator([](websocket::request_type& req) {
    req.set(http::field::sec_websocket_protocol, kLinkProtocol);
  }));
  const auto start = SteadyClock::now();
  ws.handshake("127.0.0.1", std::string(kLinkPath));  // the upgrade succeeds
  beast::flat_buffer b;
  beast::error_code ec;
  ws.read(b, ec);  // ... and then the hub cuts us
  EXPECT_TRUE(ec) << "the hub should have closed the connection";
  EXPECT_NE(ec, beast::error_code(asio::error::would_block)) << "receive timeout, not a close";
  EXPECT_LT(SteadyClock::now() - start, 5s);
  EXPECT_FALSE(hub.sessions.Take(0ms).has_value());
}

// ---------------------------------------------------------------------------
// Tampering on the wire

struct TamperCase {
  const char* name;
  size_t index;  // client->server message index (2 = first transport message)
  // What the relay forwards for the message at `index`; `held` is the
  // message it holds back (reorder).
  std::function<std::vector<Bytes>(Bytes message, std::optional<Bytes>& held)> act;
  size_t frames_before_error;  // frames the hub receives intact first
};

TEST(LinkTransport, TamperedTransportMessagesEndTheSessionWithDataLoss) {
  const TamperCase cases[] = {
      {"flipped bit", 2,
       [](Bytes m, std::optional<Bytes>&) {
         m[m.size() / 2] ^= 0x04;
         return std::vector<Bytes>{m};
       },
       0},
      {"duplicated (replayed) message", 2,
       [](Bytes m, std::optional<Bytes>&) {
         return std::vector<Bytes>{m, m};
       },
       1},
      {"dropped message", 2, [](Bytes, std::optional<Bytes>&) { return std::vector<Bytes>{}; }, 0},
      {"reordered messages", 2,
       [](Bytes m, std::optional<Bytes>& held) {
         held = std::move(m);
         return std::vector<Bytes>{};
       },
       0},
      {"truncated message", 2,
       [](Bytes m, std::optional<Bytes>&) {
         // (erase, not resize(size - 3): GCC 12 under ASan sees a wrapped size)
         m.erase(m.end() - std::min<std::ptrdiff_t>(3, static_cast<std::ptrdiff_t>(m.size())),
                 m.end());
         return std::vector<Bytes>{m};
       },
       0},
      {"replay of an earlier message later", 3,
       [](Bytes m, std::optional<Bytes>& held) {
         // index 2 was stored in `held` by the generic path below
         std::vector<Bytes> out{m};
         if (held) out.push_back(*held);
         return out;
       },
       2},
  };
  for (const TamperCase& c : cases) {
    SCOPED_TRACE(c.name);
    Hub hub;
    std::optional<Bytes> held;
    const bool replay_later = std::string(c.name) == "replay of an earlier message later";
    WsRelay relay(hub.port(), [&](Direction dir, size_t index, Bytes m) {
      if (dir != Direction::kClientToServer) return std::vector<Bytes>{m};
      if (replay_later && index == 2) held = m;
      if (index == c.index) return c.act(std::move(m), held);
      if (held && !replay_later && index == c.index + 1) return std::vector<Bytes>{m, *held};
      return std::vector<Bytes>{m};
    });
    auto client = ConnectOrDie(relay.url(), StaticIdentity::Generate(), hub.identity.fingerprint());
    ASSERT_NE(client, nullptr);
    auto server = hub.NextSession();
    ASSERT_NE(server, nullptr);
    ASSERT_TRUE(client->SendFrame(AsBytes("first")).ok());
    ASSERT_TRUE(client->SendFrame(AsBytes("second")).ok());
    auto [frames, status] = ReceiveUntilError(*server);
    EXPECT_EQ(status.code(), StatusCode::kDataLoss) << status.ToString();
    EXPECT_TRUE(Contains(status.message(), "does not decrypt")) << status.message();
    EXPECT_EQ(frames.size(), c.frames_before_error);
    // Every later call returns the same error.
    EXPECT_EQ(server->SendFrame(AsBytes("x")), status);
    EXPECT_EQ(server->ReceiveFrame(10ms).status(), status);
    // The hub closed the session: the agent learns it (protocol error 1002).
    auto end = client->ReceiveFrame(std::chrono::duration_cast<std::chrono::milliseconds>(kWait));
    EXPECT_EQ(end.status().code(), StatusCode::kUnavailable) << end.status().ToString();
    EXPECT_TRUE(Contains(end.status().message(), "1002")) << end.status().message();
  }
}

TEST(LinkTransport, FlippedBitTowardsTheClientIsDataLossThere) {
  Hub hub;
  WsRelay relay(hub.port(), [](Direction dir, size_t index, Bytes m) {
    if (dir == Direction::kServerToClient && index == 1) m[3] ^= 0x80;
    return std::vector<Bytes>{m};
  });
  auto client = ConnectOrDie(relay.url(), StaticIdentity::Generate(), hub.identity.fingerprint());
  ASSERT_NE(client, nullptr);
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(server->SendFrame(AsBytes("policy")).ok());
  auto r = client->ReceiveFrame(kWait);
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
  EXPECT_EQ(client->SendFrame(AsBytes("x")).code(), StatusCode::kDataLoss);
}

TEST(LinkTransport, TamperedHandshakeFailsTheConnect) {
  Hub hub;
  WsRelay relay(hub.port(), [](Direction dir, size_t index, Bytes m) {
    // Noise message 2 carries the hub's encrypted static key.
    if (dir == Direction::kServerToClient && index == 0) m[40] ^= 0x01;
    return std::vector<Bytes>{m};
  });
  auto r = LinkClient::Connect(relay.url(), StaticIdentity::Generate(), hub.identity.fingerprint(),
                               QuickClient());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
  EXPECT_TRUE(Contains(r.status().message(), "noise handshake")) << r.status().message();
}

// ---------------------------------------------------------------------------
// Size limits

TEST(LinkTransport, SenderRefusesFrameOverItsMaximumAndStaysUp) {
  Hub hub;
  LinkClientOptions options = QuickClient();
  options.link.max_frame_bytes = 1000;
  auto client =
      ConnectOrDie(hub.url(), StaticIdentity::Generate(), hub.identity.fingerprint(), options);
  ASSERT_NE(client, nullptr);
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(client->SendFrame(Frame(1001)).code(), StatusCode::kResourceExhausted);
  ASSERT_TRUE(client->SendFrame(Frame(1000)).ok());
  auto f = server->ReceiveFrame(kWait);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, Frame(1000));
}

TEST(LinkTransport, PeerAnnouncingFrameOverMaximumIsCut) {
  LinkServerOptions options;
  options.link.max_frame_bytes = 1 << 20;
  Hub hub(options);
  auto client = ConnectOrDie(hub.url(), StaticIdentity::Generate(), hub.identity.fingerprint());
  ASSERT_NE(client, nullptr);
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(client->SendFrame(Frame(2 << 20)).ok());  // the client's maximum is 8 MiB
  auto r = server->ReceiveFrame(kWait);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
  EXPECT_TRUE(Contains(r.status().message(), "2097152 bytes")) << r.status().message();
  auto end = client->ReceiveFrame(kWait);
  EXPECT_EQ(end.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(end.status().message(), "1009")) << end.status().message();
}

TEST(LinkTransport, DeclaredFourGibFrameIsRefusedWithoutAllocatingIt) {
  Hub hub;
  auto client = ConnectOrDie(hub.url(), StaticIdentity::Generate(), hub.identity.fingerprint());
  ASSERT_NE(client, nullptr);
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);
  // One valid, authenticated record that claims a 4 GiB - 1 frame.
  Bytes record;
  PutU8(record, static_cast<uint8_t>(RecordType::kFrameStart));
  PutU32(record, 0xFFFFFFFFu);
  record.resize(kMaxRecordSize, 0x5a);
  testing::StartTrackingAllocations();
  ASSERT_TRUE(client->SendRecordForTest(record).ok());
  auto r = server->ReceiveFrame(kWait);
  const size_t largest = testing::StopTrackingAllocations();
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
  EXPECT_TRUE(Contains(r.status().message(), "4294967295")) << r.status().message();
  EXPECT_LT(largest, size_t{1} << 20) << "no buffer for the claimed frame";
}

TEST(LinkTransport, WebSocketMessageOverNoiseMaximumIsRefused) {
  Hub hub;
  WsRelay relay(hub.port(), [](Direction dir, size_t index, Bytes m) {
    if (dir == Direction::kClientToServer && index == 2) return std::vector<Bytes>{Bytes(70'000)};
    return std::vector<Bytes>{m};
  });
  auto client = ConnectOrDie(relay.url(), StaticIdentity::Generate(), hub.identity.fingerprint());
  ASSERT_NE(client, nullptr);
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(client->SendFrame(AsBytes("x")).ok());
  auto r = server->ReceiveFrame(kWait);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
  EXPECT_TRUE(Contains(r.status().message(), "over 65535 bytes")) << r.status().message();
}

// ---------------------------------------------------------------------------
// Flow control, close, keepalive, stop

TEST(LinkTransport, BoundedQueuesPushBackOnTheSender) {
  LinkServerOptions options;
  options.link.receive_queue_frames = 2;
  Hub hub(options);
  LinkClientOptions client_options = QuickClient();
  client_options.link.send_queue_frames = 2;
  auto client = ConnectOrDie(hub.url(), StaticIdentity::Generate(), hub.identity.fingerprint(),
                             client_options);
  ASSERT_NE(client, nullptr);
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);
  constexpr int kFrames = 64;
  std::mutex mu;
  std::condition_variable cv;
  int sent = 0;
  std::thread sender([&] {
    for (int i = 0; i < kFrames; ++i) {
      ASSERT_TRUE(client->SendFrame(Frame(1 << 20, static_cast<uint64_t>(i))).ok());
      std::lock_guard lock(mu);
      ++sent;
      cv.notify_all();
    }
  });
  {
    // Nobody reads on the hub: the sender must block long before 64 MiB.
    std::unique_lock lock(mu);
    EXPECT_FALSE(cv.wait_for(lock, 1s, [&] { return sent == kFrames; }))
        << "SendFrame never blocked";
  }
  for (int i = 0; i < kFrames; ++i) {
    auto f = server->ReceiveFrame(kWait);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_EQ(*f, Frame(1 << 20, static_cast<uint64_t>(i)));
  }
  sender.join();
  EXPECT_EQ(sent, kFrames);
}

TEST(LinkTransport, CloseFlushesQueuedFramesThenEndsBothSides) {
  Hub hub;
  auto client = ConnectOrDie(hub.url(), StaticIdentity::Generate(), hub.identity.fingerprint());
  ASSERT_NE(client, nullptr);
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client->SendFrame(Frame(1 << 20, i)).ok());
  client->Close();
  EXPECT_EQ(client->SendFrame(AsBytes("late")).code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(client->status().message(), "closed by this side"));
  auto [frames, status] = ReceiveUntilError(*server);
  EXPECT_EQ(frames.size(), 5u);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), "peer closed the link (close code 1000"))
      << status.message();
}

TEST(LinkTransport, ReceiveTimeoutLeavesTheSessionUp) {
  Hub hub;
  auto client = ConnectOrDie(hub.url(), StaticIdentity::Generate(), hub.identity.fingerprint());
  ASSERT_NE(client, nullptr);
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(client->ReceiveFrame(20ms).status().code(), StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(server->SendFrame(AsBytes("later")).ok());
  EXPECT_TRUE(client->ReceiveFrame(kWait).ok());
}

LinkOptions Keepalive(std::chrono::milliseconds ping, std::chrono::milliseconds idle) {
  LinkOptions o = QuickLink();
  o.ping_interval = ping;
  o.idle_timeout = idle;
  o.close_timeout = 200ms;
  return o;
}

TEST(LinkTransport, PingsKeepAnIdleSessionUpPastTheIdleTimeout) {
  LinkServerOptions options;
  options.link = Keepalive(50ms, 400ms);
  Hub hub(options);
  LinkClientOptions client_options;
  client_options.link = Keepalive(50ms, 400ms);
  auto client = ConnectOrDie(hub.url(), StaticIdentity::Generate(), hub.identity.fingerprint(),
                             client_options);
  ASSERT_NE(client, nullptr);
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);
  // Nothing to receive for four idle timeouts: only the pings keep it up.
  auto r = client->ReceiveFrame(1600ms);
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_TRUE(server->status().ok()) << server->status().ToString();
  ASSERT_TRUE(client->SendFrame(AsBytes("still here")).ok());
  EXPECT_TRUE(server->ReceiveFrame(kWait).ok());
  ASSERT_TRUE(server->SendFrame(AsBytes("me too")).ok());
  EXPECT_TRUE(client->ReceiveFrame(kWait).ok());
}

TEST(LinkTransport, WithoutPingsAnIdleSessionIsClosed) {
  LinkServerOptions options;
  options.link = Keepalive(60s, 300ms);
  Hub hub(options);
  LinkClientOptions client_options;
  client_options.link = Keepalive(60s, 300ms);
  auto client = ConnectOrDie(hub.url(), StaticIdentity::Generate(), hub.identity.fingerprint(),
                             client_options);
  ASSERT_NE(client, nullptr);
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);
  auto r = client->ReceiveFrame(kWait);
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  auto s = server->ReceiveFrame(kWait);
  EXPECT_EQ(s.status().code(), StatusCode::kUnavailable) << s.status().ToString();
  EXPECT_TRUE(Contains(r.status().message() + s.status().message(), "idle timeout"));
}

TEST(LinkTransport, PeerThatStopsAnsweringIsCutByIdleTimeout) {
  LinkServerOptions options;
  options.link = Keepalive(50ms, 400ms);
  Hub hub(options);
  TcpProxy proxy(hub.port());
  LinkClientOptions client_options;
  client_options.link = Keepalive(50ms, 400ms);
  auto client = ConnectOrDie(proxy.url(), StaticIdentity::Generate(), hub.identity.fingerprint(),
                             client_options);
  ASSERT_NE(client, nullptr);
  auto server = hub.NextSession();
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(client->SendFrame(AsBytes("ping?")).ok());
  ASSERT_TRUE(server->ReceiveFrame(kWait).ok());
  proxy.Freeze();
  const auto start = SteadyClock::now();
  auto r = client->ReceiveFrame(kWait);
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_TRUE(Contains(r.status().message(), "idle timeout")) << r.status().message();
  auto s = server->ReceiveFrame(kWait);
  EXPECT_EQ(s.status().code(), StatusCode::kUnavailable) << s.status().ToString();
  EXPECT_TRUE(Contains(s.status().message(), "idle timeout")) << s.status().message();
  EXPECT_LT(SteadyClock::now() - start, 5s);
}

TEST(LinkTransport, StopWithOpenSessionsReturnsPromptly) {
  Mailbox<int> echoed;
  Hub hub({}, PeerAuthorization::kKnown, [&](std::shared_ptr<LinkConnection> c) {
    // An application loop that only ends when the session does.
    for (;;) {
      auto f = c->ReceiveFrame(60s);
      if (!f.ok()) return;
      if (!c->SendFrame(*f).ok()) return;
      echoed.Put(1);
    }
  });
  std::vector<std::shared_ptr<LinkConnection>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(
        ConnectOrDie(hub.url(), StaticIdentity::Generate(), hub.identity.fingerprint()));
    ASSERT_NE(clients.back(), nullptr);
    ASSERT_TRUE(clients.back()->SendFrame(AsBytes("hi")).ok());
    ASSERT_TRUE(
        echoed.Take(std::chrono::duration_cast<std::chrono::milliseconds>(kWait)).has_value());
    ASSERT_TRUE(clients.back()->ReceiveFrame(kWait).ok());
  }
  EXPECT_EQ(hub.server->active_sessions(), 3u);
  const auto start = SteadyClock::now();
  hub.server->Stop();
  EXPECT_LT(SteadyClock::now() - start, 3s);
  EXPECT_EQ(hub.server->active_sessions(), 0u);
  for (auto& c : clients) {
    auto r = c->ReceiveFrame(kWait);
    EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
    EXPECT_TRUE(Contains(r.status().message(), "1001")) << r.status().message();
  }
  // New connections are refused.
  auto late = LinkClient::Connect(hub.url(), StaticIdentity::Generate(), hub.identity.fingerprint(),
                                  QuickClient());
  EXPECT_EQ(late.status().code(), StatusCode::kUnavailable) << late.status().ToString();
}

TEST(LinkClient, ParsesLinkUrls) {
  struct Case {
    const char* url;
    const char* host;
    uint16_t port;
    const char* target;
  };
  const Case good[] = {
      {"ws://hub.example:4000", "hub.example", 4000, "/v1/link"},
      {"ws://hub.example", "hub.example", 80, "/v1/link"},
      {"WS://10.0.0.1:81/", "10.0.0.1", 81, "/v1/link"},
      {"ws://[::1]:4000/ferry/v1/link", "::1", 4000, "/ferry/v1/link"},
  };
  for (const Case& c : good) {
    SCOPED_TRACE(c.url);
    auto r = LinkClient::ParseUrl(c.url);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->host, c.host);
    EXPECT_EQ(r->port, c.port);
    EXPECT_EQ(r->target, c.target);
  }
  EXPECT_EQ(LinkClient::ParseUrl("ws://[::1]:4000")->HostHeader(), "[::1]:4000");
  for (const char* bad :
       {"hub:4000", "http://hub:4000", "wss://hub:4000", "ws://:4000", "ws://hub:0",
        "ws://hub:65536", "ws://hub:40a0", "ws://[::1", "ws://hub:4000x"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(LinkClient::ParseUrl(bad).status().code(), StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace ferry::mirror::transport
