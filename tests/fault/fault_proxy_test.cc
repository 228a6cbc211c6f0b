// The fault proxy itself (tests/tools/fault_proxy.h), over raw loopback
// sockets: its plans read back, a reset lets exactly N bytes through, the
// rate cap holds, and WebSocket messages (masked, fragmented, with control
// frames between the fragments) are dropped, duplicated, swapped, replayed
// and flipped exactly as asked, while anything that is not an upgrade passes
// untouched.
#include "tests/tools/fault_proxy.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/bytes.h"

namespace ferry::testing {
namespace {

using std::chrono::milliseconds;

// A loopback server for one connection: reads everything until EOF or a
// reset, after writing `reply` first.
class SinkServer {
 public:
  explicit SinkServer(std::string reply = "") : reply_(std::move(reply)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd_, 4), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      if (!reply_.empty()) (void)!::send(c, reply_.data(), reply_.size(), MSG_NOSIGNAL);
      char buf[65536];
      while (true) {
        const ssize_t n = ::recv(c, buf, sizeof(buf), 0);
        if (n > 0) {
          received_.append(buf, static_cast<size_t>(n));
          continue;
        }
        reset_ = n < 0;
        break;
      }
      ::close(c);
    });
  }
  ~SinkServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    if (thread_.joinable()) thread_.join();
  }
  uint16_t port() const { return port_; }
  // Joins the connection's thread: call after the client is done.
  const std::string& Received() {
    thread_.join();
    return received_;
  }
  bool reset() const { return reset_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::string reply_;
  std::string received_;
  bool reset_ = false;
  std::thread thread_;
};

int ConnectTo(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

void SendAll(int fd, const std::string& data) {
  for (size_t off = 0; off < data.size();) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;  // reset by the proxy: expected by some tests
    off += static_cast<size_t>(n);
  }
}

std::unique_ptr<FaultProxy> Proxy(uint16_t upstream, const FaultPlan& plan) {
  FaultProxyOptions options;
  options.upstream_port = upstream;
  options.plan = plan;
  auto proxy = FaultProxy::Start(options);
  EXPECT_TRUE(proxy.ok()) << proxy.status().ToString();
  return std::move(*proxy);
}

// One WebSocket frame; masked (client to server) when `mask` is set.
std::string Frame(bool fin, int opcode, const std::string& payload, bool mask) {
  std::string f;
  f += static_cast<char>((fin ? 0x80 : 0) | opcode);
  const uint8_t m = mask ? 0x80 : 0;
  if (payload.size() < 126) {
    f += static_cast<char>(m | payload.size());
  } else {
    f += static_cast<char>(m | 126);
    f += static_cast<char>(payload.size() >> 8);
    f += static_cast<char>(payload.size() & 0xff);
  }
  std::string body = payload;
  if (mask) {
    const char key[4] = {0x12, 0x34, 0x56, 0x78};
    f.append(key, 4);
    for (size_t i = 0; i < body.size(); ++i) body[i] ^= key[i % 4];
  }
  return f + body;
}

TEST(FaultProxy, PlansReadBackFromTheirDescription) {
  std::mt19937_64 rng(5);
  for (int i = 0; i < 200; ++i) {
    DirectionFaults f;
    f.latency = std::chrono::microseconds(rng() % 3 == 0 ? (rng() % 50) * 1000 : rng() % 900);
    f.jitter = std::chrono::microseconds(rng() % 10000);
    f.rate = rng() % 2 ? rng() % 10'000'000 : 0;
    f.burst = rng() % 2 ? rng() % 100000 : 0;
    if (rng() % 2) {
      f.stall_every = 1 + rng() % 100000;
      f.stall_for = milliseconds(1 + rng() % 500);
    }
    f.reset_after = rng() % 2 ? rng() % 1000000 : 0;
    f.max_write = rng() % 2 ? 1 + rng() % 2000 : 0;
    f.write_gap = std::chrono::microseconds(rng() % 500);
    f.flip_bit = rng() % 2 ? static_cast<int64_t>(rng() % 100000) : -1;
    f.ws = static_cast<WsFault>(rng() % 6);
    if (f.ws != WsFault::kNone) f.ws_message = rng() % 100;
    if (f.ws == WsFault::kFlipBit) {
      f.ws_bit = rng() % 1000;
      f.ws_header = rng() % 2 == 1;
    }
    if (f.ws == WsFault::kReplay) f.replay_after = 1 + rng() % 5;
    const std::string text = f.Describe();
    Result<DirectionFaults> back = ParseDirectionFaults(text);
    ASSERT_TRUE(back.ok()) << text << ": " << back.status().ToString();
    EXPECT_EQ(back->Describe(), text);
  }
  EXPECT_EQ(ParseDirectionFaults("rate=1m,stall-every=8k,stall-for=1s")->Describe(),
            "rate=1048576,stall-every=8192,stall-for=1000ms");
  for (const char* bad :
       {"latency=5", "rate=fast", "ws=explode", "color=red", "stall-every=9", "latency"}) {
    EXPECT_EQ(ParseDirectionFaults(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(FaultProxy, ResetAfterNBytesLetsExactlyNThrough) {
  for (uint64_t n : {1ull, 1000ull, 65536ull, 300001ull}) {
    SCOPED_TRACE(n);
    SinkServer server;
    FaultPlan plan;
    plan.seed = n;
    plan.to_server.reset_after = n;
    plan.to_server.max_write = 1000;  // re-segmented on the way, still exact
    auto proxy = Proxy(server.port(), plan);
    const int c = ConnectTo(proxy->port());
    SendAll(c, std::string(1 << 20, 'x'));
    const std::string& got = server.Received();
    ::close(c);
    EXPECT_EQ(got.size(), n);
    EXPECT_TRUE(server.reset()) << "the cut is a reset, not a clean close";
    EXPECT_EQ(proxy->stats().resets, 1u);
  }
}

TEST(FaultProxy, RateCapAndLatencyHold) {
  SinkServer server;
  FaultPlan plan;
  plan.to_server.rate = 4'000'000;
  plan.to_server.latency = milliseconds(100);
  plan.to_server.max_write = 1460;
  auto proxy = Proxy(server.port(), plan);
  const std::string data(1'000'000, 'y');
  const auto start = std::chrono::steady_clock::now();
  const int c = ConnectTo(proxy->port());
  SendAll(c, data);
  ::shutdown(c, SHUT_WR);
  EXPECT_EQ(server.Received(), data) << "bytes changed on a shaped link";
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ::close(c);
  // 1 MB at 4 MB/s after a burst of 80 KB, plus 100 ms: at least 0.3 s.
  EXPECT_GE(took, 0.3);
  EXPECT_LE(proxy->stats().max_buffered, (1u << 20) + (64u << 10));
}

TEST(FaultProxy, WebSocketMessagesAreAlteredExactlyAsAsked) {
  const std::string head = "GET /v1/link HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
  const std::string m0 = Frame(true, 2, "message zero", true);
  const std::string m1a = Frame(false, 2, "one, first part", true);
  const std::string ping = Frame(true, 9, "p", true);
  const std::string m1b = Frame(true, 0, "one, last part", true);
  const std::string m2 = Frame(true, 2, std::string(300, 'b'), true);  // a 16-bit length
  const std::string m3 = Frame(true, 2, "message three", true);
  const std::string sent = head + m0 + m1a + ping + m1b + m2 + m3;
  std::string m3_flipped = m3;
  m3_flipped[6 + 1] ^= 0x04;  // payload byte 1, bit 2 (header 2 + mask 4)
  struct Case {
    WsFault fault;
    uint64_t message;
    uint64_t replay_after;
    std::string expected;  // after the head; the ping passes at once
  };
  const Case cases[] = {
      {WsFault::kNone, 0, 1, m0 + m1a + ping + m1b + m2 + m3},  // not parsed: as sent
      {WsFault::kDrop, 2, 1, m0 + ping + m1a + m1b + m3},
      {WsFault::kDuplicate, 0, 1, m0 + m0 + ping + m1a + m1b + m2 + m3},
      {WsFault::kReorder, 1, 1, m0 + ping + m2 + m1a + m1b + m3},
      {WsFault::kReplay, 0, 2, m0 + ping + m1a + m1b + m2 + m0 + m3},
      {WsFault::kFlipBit, 3, 1, m0 + ping + m1a + m1b + m2 + m3_flipped},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(WsFaultName(c.fault));
    SinkServer server;
    FaultPlan plan;
    plan.to_server.ws = c.fault;
    plan.to_server.ws_message = c.message;
    plan.to_server.ws_bit = 8 + 2;
    plan.to_server.replay_after = c.replay_after;
    plan.to_server.max_write = 3;  // headers arrive in pieces
    auto proxy = Proxy(server.port(), plan);
    const int fd = ConnectTo(proxy->port());
    SendAll(fd, sent);
    ::shutdown(fd, SHUT_WR);
    EXPECT_EQ(server.Received(), head + c.expected);
    ::close(fd);
    EXPECT_EQ(proxy->stats().ws_faults_applied, c.fault == WsFault::kNone ? 0u : 1u);
    EXPECT_EQ(proxy->stats().ws_messages_to_server, c.fault == WsFault::kNone ? 0u : 4u);
  }
}

TEST(FaultProxy, AnythingButAnUpgradePassesUntouched) {
  // The answer is not a 101: what follows is not WebSocket, however it looks.
  const std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n" +
                            Frame(true, 2, "ab", false) + Frame(true, 2, "cd", false);
  SinkServer server(reply);
  FaultPlan plan;
  plan.to_client.ws = WsFault::kDrop;
  plan.to_server.ws = WsFault::kDrop;
  auto proxy = Proxy(server.port(), plan);
  const int fd = ConnectTo(proxy->port());
  const std::string request =
      "GET /v1/tenants HTTP/1.1\r\nHost: x\r\n\r\n" + Frame(true, 2, "not a frame", true);
  SendAll(fd, request);
  std::string got;
  char buf[4096];
  while (got.size() < reply.size()) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::shutdown(fd, SHUT_WR);
  EXPECT_EQ(server.Received(), request);
  ::close(fd);
  EXPECT_EQ(got, reply);
  EXPECT_EQ(proxy->stats().ws_faults_applied, 0u);
}

}  // namespace
}  // namespace ferry::testing
