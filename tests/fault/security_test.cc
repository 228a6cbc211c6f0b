// Security (docs/reliability.md#security): Ferry's real daemons against an
// attacker, on loopback.
//
//   - hostile snapshots: a compromised edge (it holds an agent key file, so
//     what it captures is signed and sealed like anything else) pushes a
//     tree built to escape a restore — symlinks out of the target, absolute
//     and climbing, through a "." symlink, hard links — and plants hard
//     links and symlinks to outside files in a target that `ferryctl
//     restore --force` later restores into. Restored from the hub with
//     ferryctl: nothing is written outside the target, the escaping links
//     are refused and named. (Trees with names that no filesystem can hold —
//     "../x", "/abs", "a/b" — and forged hard-link ids are crafted in
//     process by tests/snapshot/restorer_hostile_test.cc.)
//   - tenant isolation: another tenant's token gets the same 403 whether
//     what it asks for exists or not (snapshots, chunks, agents, streams,
//     policies, tokens); another tenant's agent cannot commit a snapshot
//     signed by this tenant's agent, and its "what is missing" answers come
//     from its own tenant's store only (no cross-tenant dedup oracle).
//   - replayed handshakes: the bytes a real peer sent (recorded by a relay
//     in this file) sent again on a fresh connection: the hub answers the
//     first Noise message with a fresh one, refuses the replayed third and
//     closes the connection; a recorded enrollment whose join token the
//     relay kept from the hub enrolls nothing (the token still works for
//     the real agent afterwards); a recorded push commits nothing more.
//   - a revoked agent: its next connection is refused, nothing more it
//     sends arrives, and what it sent before stays readable.
//   - guessing tokens: bad API tokens and bad join tokens from one address
//     are throttled after the configured number of failures (429 with
//     Retry-After; enrollment refused RESOURCE_EXHAUSTED), the right token
//     from that address too; another address is unaffected; after the
//     window the right token works.
//
// Every figure is printed with the prefix "[security]".
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/testing/fleet.h"
#include "tests/testing/http_client.h"
#include "tests/testing/process.h"
#include "tests/testing/test_util.h"

namespace ferry::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Files

std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (struct dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::string ReadLink(const std::string& path) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf));
  return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

std::string RealPath(const std::string& path) {
  char* p = ::realpath(path.c_str(), nullptr);
  if (p == nullptr) return {};
  std::string out = p;
  std::free(p);
  return out;
}

std::string ReadText(const std::string& path) {
  const Bytes b = ReadFileOrDie(path);
  return std::string(b.begin(), b.end());
}

void WriteText(const std::string& path, const std::string& text) {
  WriteFileOrDie(path, ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

// Everything observable about a tree but link counts (a planted hard link
// changes the count of its outside file): type, mode, size, mtime, inode,
// content, link target; one line per entry.
void FingerprintInto(const std::string& path, const std::string& rel, std::string& out) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    out += rel + " missing\n";
    return;
  }
  out += rel + " mode=" + std::to_string(st.st_mode) + " size=" + std::to_string(st.st_size) +
         " ino=" + std::to_string(st.st_ino) + " mtime=" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
  if (S_ISREG(st.st_mode)) out += " data=" + ReadText(path);
  if (S_ISLNK(st.st_mode)) out += " link=" + ReadLink(path);
  out += "\n";
  if (S_ISDIR(st.st_mode)) {
    for (const std::string& n : ListNames(path))
      FingerprintInto(path + "/" + n, rel + "/" + n, out);
  }
}

std::string Fingerprint(const std::string& path) {
  std::string out;
  FingerprintInto(path, ".", out);
  return out;
}

// Every symlink below `root` dangles or resolves inside it.
void ExpectSymlinksResolveInside(const std::string& root, const std::string& dir = "") {
  const std::string real_root = RealPath(root);
  ASSERT_FALSE(real_root.empty()) << root;
  for (const std::string& n : ListNames(root + dir)) {
    const std::string path = root + dir + "/" + n;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) ExpectSymlinksResolveInside(root, dir + "/" + n);
    if (!S_ISLNK(st.st_mode)) continue;
    const std::string resolved = RealPath(path);
    if (resolved.empty()) continue;  // dangling
    EXPECT_TRUE(resolved == real_root || resolved.rfind(real_root + "/", 0) == 0)
        << path << " -> " << ReadLink(path) << " resolves to " << resolved << ", outside "
        << real_root;
  }
}

// ---------------------------------------------------------------------------
// Sockets

// A TCP connection to 127.0.0.1:`port`, from `source` (an address of the
// loopback interface, e.g. 127.0.0.2: another client as the hub sees it)
// when not empty. -1 on failure.
int ConnectFrom(uint16_t port, const std::string& source = "") {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (!source.empty()) {
    sockaddr_in from{};
    from.sin_family = AF_INET;
    if (::inet_pton(AF_INET, source.c_str(), &from.sin_addr) != 1 ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0) {
      ::close(fd);
      return -1;
    }
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads what arrives within `timeout`, appending to `out`: 1 data read,
// 0 the peer closed (or reset), -1 timed out.
int ReadSome(int fd, std::string& out, milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  const int ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (ready == 0) return -1;
  char buf[16384];
  const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
  if (n <= 0) return 0;
  out.append(buf, static_cast<size_t>(n));
  return 1;
}

// One HTTP/1.1 request on a new connection from `source` (see
// ConnectFrom), read to the end.
HttpResult HttpFrom(const std::string& source, uint16_t port, const std::string& method,
                    const std::string& target, const std::string& bearer) {
  HttpResult result;
  const int fd = ConnectFrom(port, source);
  if (fd < 0) {
    result.error = "connect from " + source + ": " + std::strerror(errno);
    return result;
  }
  std::string raw = method + " " + target + " HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n";
  if (!bearer.empty()) raw += "Authorization: Bearer " + bearer + "\r\n";
  raw += "\r\n";
  std::string in;
  if (SendAll(fd, raw)) {
    while (ReadSome(fd, in, milliseconds(5000)) == 1) {
    }
  }
  ::close(fd);
  const size_t head_end = in.find("\r\n\r\n");
  if (in.rfind("HTTP/1.1 ", 0) != 0 || head_end == std::string::npos) {
    result.error = "no HTTP response: " + in.substr(0, 200);
    return result;
  }
  result.status = std::atoi(in.c_str() + 9);
  size_t line = in.find("\r\n") + 2;
  while (line < head_end) {
    const size_t eol = in.find("\r\n", line);
    const std::string h = in.substr(line, eol - line);
    const size_t colon = h.find(':');
    if (colon != std::string::npos) {
      std::string name = h.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      result.headers[name] = Trim(h.substr(h.find_first_not_of(' ', colon + 1)));
    }
    line = eol + 2;
  }
  result.body = in.substr(head_end + 4);
  return result;
}

// ---------------------------------------------------------------------------
// WebSocket framing (RFC 6455), enough to find message boundaries.

// The end of the frame at `pos` of `b` when it is whole there; `fin` and
// `opcode` of it.
bool FrameAt(std::string_view b, size_t pos, size_t& end, bool& fin, int& opcode) {
  if (b.size() < pos + 2) return false;
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(b[pos + i]); };
  fin = (byte(0) & 0x80) != 0;
  opcode = byte(0) & 0x0f;
  uint64_t length = byte(1) & 0x7f;
  size_t header = 2;
  if (length == 126) {
    if (b.size() < pos + 4) return false;
    length = (uint64_t{byte(2)} << 8) | byte(3);
    header = 4;
  } else if (length == 127) {
    if (b.size() < pos + 10) return false;
    length = 0;
    for (size_t i = 0; i < 8; ++i) length = (length << 8) | byte(2 + i);
    header = 10;
  }
  if ((byte(1) & 0x80) != 0) header += 4;  // the masking key
  if (b.size() < pos + header || b.size() - pos - header < length) return false;
  end = pos + header + static_cast<size_t>(length);
  return true;
}

// What a client sent on one connection: the HTTP upgrade request, then
// WebSocket frames. For the Ferry link, data messages 0 and 1 are Noise
// messages 1 and 3, and every later one is one record
// (docs/format/link-transport.md).
struct Recording {
  std::string bytes;
  size_t header_end = 0;             // end of the HTTP request (0: not yet whole)
  std::vector<size_t> message_ends;  // end offset of each whole data message
};

// Finds the request's end and the whole frames from `pos` on.
void ParseClientBytes(Recording& r, size_t& pos) {
  if (r.header_end == 0) {
    const size_t e = r.bytes.find("\r\n\r\n");
    if (e == std::string::npos) return;
    r.header_end = e + 4;
    pos = r.header_end;
  }
  size_t end = 0;
  bool fin = false;
  int opcode = 0;
  while (FrameAt(r.bytes, pos, end, fin, opcode)) {
    if (fin && opcode < 8) r.message_ends.push_back(end);  // control frames are 8..15
    pos = end;
  }
}

// A TCP relay on 127.0.0.1 to the hub that records what clients send.
// Connections are relayed one after the other. The upstream side connects
// from `source` (e.g. 127.0.0.2) when given. With `forward_messages`, only
// the first that many client data messages reach the hub: later ones are
// recorded, and once one is whole both connections are closed (an attacker
// on the path who keeps the message to itself).
class RecordingRelay {
 public:
  RecordingRelay(uint16_t upstream_port, std::string source, size_t forward_messages = SIZE_MAX)
      : upstream_port_(upstream_port),
        source_(std::move(source)),
        forward_messages_(forward_messages) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(listen_fd_, 16), 0);
    EXPECT_EQ(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~RecordingRelay() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    ::close(listen_fd_);
  }
  RecordingRelay(const RecordingRelay&) = delete;
  RecordingRelay& operator=(const RecordingRelay&) = delete;

  uint16_t port() const { return port_; }
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(port_); }
  // The newest connection's recording (whole once it closed).
  Recording last() const {
    std::lock_guard lock(mu_);
    return last_;
  }
  int connections_done() const { return done_.load(); }

 private:
  void AcceptLoop() {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      const int server = ConnectFrom(upstream_port_, source_);
      if (server >= 0) {
        Relay(client, server);
        ::close(server);
      }
      ::close(client);
      done_.fetch_add(1);
    }
  }

  void Relay(int client, int server) {
    Recording r;
    size_t parsed = 0, forwarded = 0;
    pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    char buf[65536];
    while (!stopping_) {
      if (::poll(fds, 2, 100) <= 0) continue;
      if (fds[0].revents != 0) {
        const ssize_t n = ::recv(client, buf, sizeof(buf), 0);
        if (n <= 0) break;
        r.bytes.append(buf, static_cast<size_t>(n));
        ParseClientBytes(r, parsed);
        size_t allowed = r.bytes.size();
        if (r.message_ends.size() >= forward_messages_) {
          allowed = std::min(allowed, r.message_ends[forward_messages_ - 1]);
        }
        if (allowed > forwarded &&
            !SendAll(server, std::string_view(r.bytes).substr(forwarded, allowed - forwarded))) {
          break;
        }
        forwarded = std::max(forwarded, allowed);
        Publish(r);
        if (r.message_ends.size() > forward_messages_) break;  // the kept message is whole
      }
      if (fds[1].revents != 0) {
        const ssize_t n = ::recv(server, buf, sizeof(buf), 0);
        if (n <= 0 || !SendAll(client, std::string_view(buf, static_cast<size_t>(n)))) break;
      }
    }
    Publish(r);
  }

  void Publish(const Recording& r) {
    std::lock_guard lock(mu_);
    last_ = r;
  }

  const uint16_t upstream_port_;
  const std::string source_;
  const size_t forward_messages_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> done_{0};
  mutable std::mutex mu_;
  Recording last_;  // guarded by mu_
  std::thread thread_;
};

// What the hub did with a replayed recording.
struct ReplayOutcome {
  bool upgraded = false;        // answered the upgrade with 101
  bool answered_first = false;  // sent a (fresh) Noise message 2
  bool closed = false;          // then closed the connection (not a timeout)
  size_t bytes_after = 0;       // what it sent after the replayed rest
};

// Sends `r` to the hub on a fresh connection, paced as a real client is
// (the upgrade, then Noise message 1 once the 101 came, then the rest once
// the hub's message 2 came), so the replay gets its best chance.
ReplayOutcome Replay(uint16_t port, const Recording& r) {
  ReplayOutcome out;
  if (r.header_end == 0 || r.message_ends.empty()) {
    ADD_FAILURE() << "the recording holds no handshake";
    return out;
  }
  const int fd = ConnectFrom(port);
  if (fd < 0) {
    ADD_FAILURE() << "connect: " << std::strerror(errno);
    return out;
  }
  const std::string_view bytes = r.bytes;
  std::string in;
  const auto deadline = steady_clock::now() + seconds(10);
  const auto left = [&] {
    return std::max(milliseconds(1),
                    std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now()));
  };
  SendAll(fd, bytes.substr(0, r.header_end));
  while (in.find("\r\n\r\n") == std::string::npos && ReadSome(fd, in, left()) == 1) {
  }
  const size_t head_end = in.find("\r\n\r\n");
  out.upgraded = in.rfind("HTTP/1.1 101", 0) == 0 && head_end != std::string::npos;
  if (out.upgraded) {
    in.erase(0, head_end + 4);
    SendAll(fd, bytes.substr(r.header_end, r.message_ends[0] - r.header_end));
    size_t end = 0;
    bool fin = false;
    int opcode = 0;
    while (!FrameAt(in, 0, end, fin, opcode) && ReadSome(fd, in, left()) == 1) {
    }
    out.answered_first = FrameAt(in, 0, end, fin, opcode) && opcode == 2;
    if (out.answered_first) {
      in.erase(0, end);
      SendAll(fd, bytes.substr(r.message_ends[0]));
      int got = 1;
      while ((got = ReadSome(fd, in, left())) == 1) {
      }
      out.closed = got == 0;
      out.bytes_after = in.size();
    }
  }
  ::close(fd);
  return out;
}

// ---------------------------------------------------------------------------
// A hub of our own (the throttle's flags), its tenants and agents played by
// ferry-link-peer, ferryctl.

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.Sub("hub");
    const HubInit init = InitHub(data_);
    fingerprint_ = init.fingerprint;
    admin_ = init.admin_token;
  }

  void StartHub(const std::vector<std::string>& extra = {}) {
    const std::string port_file = dir_.Sub("hub.port");
    std::remove(port_file.c_str());
    std::vector<std::string> argv = {
        BinDir() + "/ferry-hub", "run",         "--data-dir", data_,          "--listen",
        "127.0.0.1:0",           "--port-file", port_file,    "--log-format", "text"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    hub_ = std::make_unique<ChildProcess>(argv, dir_.Sub("hub.log"));
    port_ = static_cast<uint16_t>(std::stoi(WaitForFile(port_file, hub_.get())));
  }
  std::string Url() const { return "ws://127.0.0.1:" + std::to_string(port_); }
  std::string Http() const { return "http://127.0.0.1:" + std::to_string(port_); }

  HttpResult Api(const std::string& method, const std::string& target, const std::string& body = "",
                 const std::string& token = "") {
    return HttpRequest(port_, method, target, body, token.empty() ? admin_ : token);
  }
  void CreateTenant(const std::string& name) {
    HttpResult r = Api("POST", "/v1/tenants", "{\"name\":\"" + name + "\"}");
    ASSERT_EQ(r.status, 201) << r.body;
  }
  std::string JoinToken(const std::string& tenant) {
    HttpResult r = Api("POST", "/v1/tenants/" + tenant + "/enrollment-tokens", "{}");
    EXPECT_EQ(r.status, 201) << r.body;
    return r.status == 201 ? std::string(ParseJson(r.body).at("token").as_string()) : "";
  }
  // A token of `tenant` with `role`.
  std::string ApiToken(const std::string& tenant, const std::string& role) {
    HttpResult r = Api("POST", "/v1/tenants/" + tenant + "/tokens", "{\"role\":\"" + role + "\"}");
    EXPECT_EQ(r.status, 201) << r.body;
    return r.status == 201 ? std::string(ParseJson(r.body).at("token").as_string()) : "";
  }
  size_t Count(const std::string& target, const char* list) {
    HttpResult r = Api("GET", target);
    EXPECT_EQ(r.status, 200) << target << ": " << r.body;
    return r.status == 200 ? ParseJson(r.body).at(list).as_array().size() : 0;
  }
  std::string Metrics() { return HttpRequest(port_, "GET", "/metrics").body; }
  // Handshakes the hub refused because Noise message 3 did not authenticate.
  size_t RefusedHandshakes() {
    const std::string log = hub_->Log();
    const std::string what = "handshake message 3 (64 bytes): the static key does not authenticate";
    size_t n = 0;
    for (size_t at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) ++n;
    return n;
  }

  // The tenant's keyset (fast Argon2; passphrase "pw").
  std::string Keyset(const std::string& tenant) {
    const std::string path = dir_.Sub(tenant + ".keyset");
    if (!Exists(path)) {
      EXPECT_EQ(Ctl({"keys", "init", "--out", path, "--argon2-memory", "8", "--argon2-ops", "1"})
                    .exit_code,
                0);
    }
    return path;
  }
  // A new agent key file of the tenant (its own signing key).
  std::string AgentKeys(const std::string& tenant, const std::string& agent) {
    const std::string path = dir_.Sub(agent + ".agent.keys");
    EXPECT_EQ(Ctl({"keys", "export-agent", "--keyset", Keyset(tenant), "--out", path}).exit_code,
              0);
    return path;
  }
  CommandResult Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), BinDir() + "/ferryctl");
    return RunCommand(args, {"FERRY_PASSPHRASE=pw"});
  }
  // `ferryctl snapshot create` of `tree` into `store`: the snapshot id.
  std::string Capture(const std::string& store, const std::string& keys, const std::string& tree) {
    CommandResult r = Ctl({"snapshot", "create", "--store", store, "--keyset", keys, tree});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::string out = Trim(r.out);
    return out.substr(out.rfind('\n') + 1);
  }
  CommandResult Enroll(const std::string& url, const std::string& link_key,
                       const std::string& token, const std::string& name, const std::string& keys) {
    return RunCommand({BinDir() + "/ferry-link-peer", "enroll", "--key", link_key, "--hub", url,
                       "--hub-key", fingerprint_, "--token", token, "--name", name, "--keyset",
                       keys});
  }
  CommandResult Push(const std::string& url, const std::string& link_key,
                     const std::string& store) {
    return RunCommand({BinDir() + "/ferry-link-peer", "push", "--key", link_key, "--hub", url,
                       "--hub-key", fingerprint_, "--store", store});
  }

  TempDir dir_;
  std::string data_, fingerprint_, admin_;
  std::unique_ptr<ChildProcess> hub_;
  uint16_t port_ = 0;
};

// ---------------------------------------------------------------------------
// Hostile snapshots

TEST_F(SecurityTest, HostileSnapshotsRestoredFromTheHubWriteNothingOutsideTheTarget) {
  StartHub();
  CreateTenant("alpha");
  const std::string keys = AgentKeys("alpha", "evil");
  ASSERT_EQ(Enroll(Url(), dir_.Sub("evil.link"), JoinToken("alpha"), "evil", keys).exit_code, 0);

  // Next to the targets: a canary tree and a file the restore must never touch.
  const std::string parent = dir_.Sub("parent");
  const std::string canary = parent + "/canary";
  MakeDirsOrDie(canary + "/inner");
  WriteText(canary + "/keep", "canary");
  WriteText(canary + "/inner/deep", "deep canary");
  const std::string canary_before = Fingerprint(canary);

  // The compromised edge's tree: every escape a real filesystem can hold.
  const std::string tree = dir_.Sub("evil-tree");
  MakeDirsOrDie(tree + "/sub");
  WriteText(tree + "/file", "payload");
  WriteText(tree + "/sub/keep", "pwned");
  WriteText(tree + "/hl_a", "linked");
  ASSERT_EQ(::link((tree + "/hl_a").c_str(), (tree + "/hl_b").c_str()), 0);
  WriteText(dir_.Sub("outside-original"), "outside");
  ASSERT_EQ(::link(dir_.Sub("outside-original").c_str(), (tree + "/hl_out").c_str()), 0);
  struct Link {
    std::string path, target;
    bool escapes;
  };
  const std::vector<Link> links = {
      {"abs", canary + "/keep", true},            // absolute, to a file outside
      {"abs_dir", canary, true},                  // absolute, to a directory outside
      {"climb", "../canary/keep", true},          // climbs out of the target
      {"dot", ".", false},                        // the target itself
      {"chain", "dot/dot/../canary/keep", true},  // climbs out through "dot"
      {"inside", "sub/keep", false},
      {"sub/up", "../../canary/keep", true},  // climbs out from below
      {"sub/root", "..", false},              // the target's root
  };
  for (const Link& l : links) {
    ASSERT_EQ(::symlink(l.target.c_str(), (tree + "/" + l.path).c_str()), 0) << l.path;
  }
  const std::string store = dir_.Sub("evil-store");
  const std::string id = Capture(store, keys, tree);
  ASSERT_EQ(id.size(), 64u) << id;
  CommandResult push = Push(Url(), dir_.Sub("evil.link"), store);
  ASSERT_EQ(push.exit_code, 0) << push.err;

  const std::vector<std::string> hub = {"--hub",    Http(),  "--token",  admin_,
                                        "--tenant", "alpha", "--keyset", Keyset("alpha")};
  auto restore = [&](const std::string& to, bool force) {
    std::vector<std::string> args = {"restore", id, "--to", to};
    if (force) args.push_back("--force");
    args.insert(args.end(), hub.begin(), hub.end());
    return Ctl(args);
  };

  {
    SCOPED_TRACE("restore into an empty target");
    const std::string target = parent + "/target";
    CommandResult r = restore(target, false);
    // Restored except the escaping links, which are named: exit 1.
    EXPECT_EQ(r.exit_code, 1) << r.err;
    for (const Link& l : links) {
      SCOPED_TRACE(l.path + " -> " + l.target);
      if (l.escapes) {
        EXPECT_FALSE(Exists(target + "/" + l.path));
        EXPECT_NE(r.err.find(l.path + ": symlink target"), std::string::npos) << r.err;
      } else {
        EXPECT_EQ(ReadLink(target + "/" + l.path), l.target);
      }
    }
    EXPECT_NE(r.err.find("5 entries were refused"), std::string::npos) << r.err;
    EXPECT_EQ(ReadText(target + "/file"), "payload");
    EXPECT_EQ(ReadText(target + "/sub/keep"), "pwned");
    struct stat a {
    }, b{}, out{};
    ASSERT_EQ(::lstat((target + "/hl_a").c_str(), &a), 0);
    ASSERT_EQ(::lstat((target + "/hl_b").c_str(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino) << "hard links inside the tree stay links";
    // A link to a file outside the captured tree comes back as a copy.
    ASSERT_EQ(::lstat((target + "/hl_out").c_str(), &out), 0);
    EXPECT_EQ(out.st_nlink, 1u);
    EXPECT_EQ(ReadText(target + "/hl_out"), "outside");
    ExpectSymlinksResolveInside(target);
    std::printf("[security] hostile restore: %zu symlinks in the snapshot, %zu refused\n",
                links.size(),
                static_cast<size_t>(std::count_if(links.begin(), links.end(),
                                                  [](const Link& l) { return l.escapes; })));
  }
  {
    // A target an attacker prepared: names the snapshot restores are hard
    // links and symlinks to the canary. --force replaces them; it never
    // writes through them.
    SCOPED_TRACE("restore --force into a target with planted links");
    const std::string target = parent + "/planted";
    MakeDirsOrDie(target);
    ASSERT_EQ(::link((canary + "/keep").c_str(), (target + "/file").c_str()), 0);
    ASSERT_EQ(::symlink(canary.c_str(), (target + "/sub").c_str()), 0);
    ASSERT_EQ(::symlink((canary + "/keep").c_str(), (target + "/hl_a").c_str()), 0);
    ASSERT_EQ(::symlink((canary + "/inner/deep").c_str(), (target + "/hl_out").c_str()), 0);
    CommandResult r = restore(target, true);
    EXPECT_EQ(r.exit_code, 1) << r.err;  // the same escaping links refused
    struct stat st {};
    ASSERT_EQ(::lstat((target + "/file").c_str(), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ(st.st_nlink, 1u) << "the planted hard link was replaced, not written through";
    EXPECT_EQ(ReadText(target + "/file"), "payload");
    ASSERT_EQ(::lstat((target + "/sub").c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << "the planted symlink was replaced by the directory";
    EXPECT_EQ(ReadText(target + "/sub/keep"), "pwned");
    EXPECT_EQ(ReadText(target + "/hl_a"), "linked");
    EXPECT_EQ(ReadText(target + "/hl_out"), "outside");
    ExpectSymlinksResolveInside(target);
  }
  // Nothing outside the targets changed.
  EXPECT_EQ(Fingerprint(canary), canary_before);
  EXPECT_EQ(ListNames(parent), (std::vector<std::string>{"canary", "planted", "target"}));
  EXPECT_EQ(ReadText(dir_.Sub("outside-original")), "outside");
  EXPECT_TRUE(hub_->running());
}

// ---------------------------------------------------------------------------
// Tenant isolation

// A hub (the Fleet's) whose tenant "edge" has a real agent, cam-1, with a
// delivered volume snapshot and stream records.
class SecurityFleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MakeDirsOrDie(dir_.Sub("fleet"));
    fleet_ = std::make_unique<Fleet>(dir_.Sub("fleet"));
    volume_ = dir_.Sub("volume");
    MakeDirsOrDie(volume_ + "/d");
    WriteFileOrDie(volume_ + "/a", SeededBytes(1, 40 << 10));
    WriteFileOrDie(volume_ + "/d/b", SeededBytes(2, 100 << 10));
    fleet_->StartHub();
    fleet_->CreateTenant();
    fleet_->ConfigureAgent(
        "datasets:\n  - {name: vol, path: " + volume_ +
        "}\nstreams:\n  - {name: events}\n"
        "policies:\n"
        "  - {apiVersion: ferry/v1, kind: MirrorPolicy, metadata: {name: p},\n"
        "     spec: {datasets: [vol], schedule: {every: 24h}, targets: [{hub: hub-a}]}}\n");
    fleet_->StartAgent();
    Append(0, 100);
    HttpResult run = fleet_->AgentApi("POST", "/v1/snapshots", R"({"policy":"p"})");
    ASSERT_EQ(run.status, 200) << run.body << fleet_->Logs();
    // (The policy also runs once when the agent starts.)
    ASSERT_TRUE(Fleet::WaitUntil(
        [&] { return !HubSnapshots().empty() && Pending() == 0 && HubStreamNext() == 100; },
        seconds(30)))
        << fleet_->Logs();
    snapshots_ = HubSnapshots();
    snapshot_ = snapshots_.back();
  }

  // Snapshots the agent still has to deliver.
  uint64_t Pending() {
    const json::value status = fleet_->AgentStatus();
    if (!status.is_object()) return UINT64_MAX;
    uint64_t pending = 0;
    for (const json::value& p : status.at("pending").as_array()) {
      pending += p.at("snapshots").to_number<uint64_t>();
    }
    return pending;
  }

  // Appends records [from, to) to cam-1's stream "events".
  void Append(int from, int to) {
    std::string body;
    for (int i = from; i < to; ++i) body += "{\"n\":" + std::to_string(i) + "}\n";
    HttpResult r =
        fleet_->AgentApi("POST", "/v1/streams/events/records", body, "application/x-ndjson");
    ASSERT_EQ(r.status, 200) << r.body;
  }
  std::vector<std::string> HubSnapshots(const std::string& tenant = "edge") {
    std::vector<std::string> ids;
    HttpResult r = fleet_->HubApi("GET", "/v1/tenants/" + tenant + "/snapshots");
    if (r.status != 200) return ids;
    const json::value v = ParseJson(r.body);
    for (const json::value& s : v.at("snapshots").as_array()) {
      ids.emplace_back(s.at("id").as_string());
    }
    return ids;
  }
  uint64_t HubStreamNext() {
    HttpResult r = fleet_->HubApi("GET", "/v1/tenants/edge/streams?agent=cam-1");
    if (r.status != 200) return 0;
    const json::value v = ParseJson(r.body);
    for (const json::value& s : v.at("streams").as_array()) {
      if (s.at("stream").as_string() == "events") return s.at("next_offset").to_number<uint64_t>();
    }
    return 0;
  }
  std::string Token(const std::string& tenant, const std::string& role) {
    HttpResult r =
        fleet_->HubApi("POST", "/v1/tenants/" + tenant + "/tokens", "{\"role\":\"" + role + "\"}");
    EXPECT_EQ(r.status, 201) << r.body;
    return r.status == 201 ? std::string(ParseJson(r.body).at("token").as_string()) : "";
  }
  HttpResult As(const std::string& token, const std::string& method, const std::string& target,
                const std::string& body = "") {
    return HttpRequest(fleet_->hub_port(), method, target, body, token);
  }

  TempDir dir_;
  std::unique_ptr<Fleet> fleet_;
  std::string volume_;
  std::vector<std::string> snapshots_;  // at the hub after SetUp
  std::string snapshot_;                // one of them
};

TEST_F(SecurityFleetTest, AnotherTenantLearnsNothingOverRestAndCannotCommitOverTheLink) {
  ASSERT_EQ(fleet_->HubApi("POST", "/v1/tenants", R"({"name":"beta"})").status, 201);
  const std::string beta_admin = Token("beta", "admin");
  const std::string edge_reader = Token("edge", "reader");
  // A hub policy of edge (selecting no agent).
  HttpResult put =
      fleet_->HubApi("PUT", "/v1/tenants/edge/policies/p",
                     R"({"apiVersion":"ferry/v1","kind":"MirrorPolicy","metadata":{"name":"p"},)"
                     R"("spec":{"agents":{"matchLabels":{"site":"nowhere"}},"datasets":["vol"],)"
                     R"("schedule":"*/15 * * * *","targets":[{"hub":"hub-a"}]}})");
  ASSERT_EQ(put.status, 201) << put.body;
  // One of cam-1's chunks: the first id of the snapshot's reference set
  // (docs/format/refs.md: a 16-byte header, then 32-byte ids and sizes).
  HttpResult refs = fleet_->HubApi("GET", "/v1/tenants/edge/snapshots/" + snapshot_ + "/refs");
  ASSERT_EQ(refs.status, 200);
  ASSERT_GE(refs.body.size(), 48u + 36u);
  const std::string chunk =
      HexEncode(ByteView(reinterpret_cast<const uint8_t*>(refs.body.data()) + 16, 32));
  const std::string fake_id(64, 'e');

  // Pairs of targets in tenant edge: one that exists, one that does not.
  // Beta's admin gets the same 403 for both, word for word: nothing says
  // what edge holds. Edge's own reader gets 200 for the first (so the
  // 403s are about the tenant, not a broken path).
  struct Pair {
    std::string method, exists, missing;
  };
  const std::vector<Pair> pairs = {
      {"GET", "/v1/tenants/edge", "/v1/tenants/gamma"},
      {"GET", "/v1/tenants/edge/snapshots", "/v1/tenants/gamma/snapshots"},
      {"GET", "/v1/tenants/edge/snapshots/" + snapshot_, "/v1/tenants/edge/snapshots/" + fake_id},
      {"GET", "/v1/tenants/edge/snapshots/" + snapshot_ + "/manifest",
       "/v1/tenants/edge/snapshots/" + fake_id + "/manifest"},
      {"GET", "/v1/tenants/edge/snapshots/" + snapshot_ + "/refs",
       "/v1/tenants/edge/snapshots/" + fake_id + "/refs"},
      {"GET", "/v1/tenants/edge/chunks/" + chunk, "/v1/tenants/edge/chunks/" + fake_id},
      {"GET", "/v1/tenants/edge/agents", "/v1/tenants/gamma/agents"},
      {"GET", "/v1/tenants/edge/agents/cam-1", "/v1/tenants/edge/agents/cam-9"},
      {"GET", "/v1/tenants/edge/streams", "/v1/tenants/gamma/streams"},
      {"GET", "/v1/streams/edge/cam-1/events", "/v1/streams/edge/cam-1/nothing"},
      {"GET", "/v1/tenants/edge/policies/p", "/v1/tenants/edge/policies/q"},
      {"GET", "/v1/tenants/edge/sessions", "/v1/tenants/gamma/sessions"},
      {"GET", "/v1/tenants/edge/status", "/v1/tenants/gamma/status"},
  };
  for (const Pair& p : pairs) {
    SCOPED_TRACE(p.exists + " / " + p.missing);
    HttpResult a = As(beta_admin, p.method, p.exists);
    HttpResult b = As(beta_admin, p.method, p.missing);
    EXPECT_EQ(a.status, 403) << a.body;
    EXPECT_EQ(b.status, a.status) << b.body;
    EXPECT_EQ(b.body, a.body);
    EXPECT_EQ(As(edge_reader, p.method, p.exists).status, 200);
  }
  // Writes are refused alike, and change nothing.
  EXPECT_EQ(As(beta_admin, "POST", "/v1/tenants/edge/agents/cam-1/revoke").status, 403);
  EXPECT_EQ(As(beta_admin, "POST", "/v1/tenants/edge/enrollment-tokens", "{}").status, 403);
  EXPECT_EQ(As(beta_admin, "DELETE", "/v1/tenants/edge/policies/p").status, 403);
  EXPECT_EQ(As(beta_admin, "POST", "/v1/tenants/edge/tokens", R"({"role":"admin"})").status, 403);
  HttpResult agent = fleet_->HubApi("GET", "/v1/tenants/edge/agents/cam-1");
  EXPECT_NE(agent.body.find("\"revoked\":false"), std::string::npos) << agent.body;
  EXPECT_EQ(fleet_->HubApi("GET", "/v1/tenants/edge/policies/p").status, 200);
  // Listings show beta only; token ids of edge read as absent.
  HttpResult tenants = As(beta_admin, "GET", "/v1/tenants");
  EXPECT_EQ(tenants.status, 200);
  EXPECT_EQ(tenants.body.find("edge"), std::string::npos) << tenants.body;
  EXPECT_EQ(As(beta_admin, "GET", "/v1/tokens").status, 403);
  HttpResult edge_tokens = fleet_->HubApi("GET", "/v1/tenants/edge/tokens");
  const std::string edge_token_id =
      std::string(ParseJson(edge_tokens.body).at("tokens").at(0).at("id").as_string());
  HttpResult t1 = As(beta_admin, "GET", "/v1/tokens/" + edge_token_id);
  HttpResult t2 = As(beta_admin, "GET", "/v1/tokens/tok-00000000");
  EXPECT_EQ(t1.status, 404);
  EXPECT_EQ(t2.status, 404);
  // ferryctl with beta's token: refused (exit 5), for the snapshot list
  // and the stream.
  const std::vector<std::string> as_beta = {"--hub",    fleet_->hub_http(), "--token",
                                            beta_admin, "--tenant",         "edge"};
  for (std::vector<std::string> args :
       {std::vector<std::string>{"snapshot", "list"},
        std::vector<std::string>{"stream", "read", "cam-1/events", "--keyset", fleet_->keyset()}}) {
    args.insert(args.begin(), BinDir() + "/ferryctl");
    args.insert(args.end(), as_beta.begin(), as_beta.end());
    CommandResult r = RunCommand(args, {"FERRY_PASSPHRASE=pw"});
    EXPECT_EQ(r.exit_code, 5) << args[1] << ": " << r.err;
  }

  // Over the link. A snapshot of cam-1's volume signed by a key file of
  // tenant edge: its chunk ids are those cam-1 already delivered.
  const std::string ctl = BinDir() + "/ferryctl";
  const std::string edge_keys = dir_.Sub("edge-2.keys");
  ASSERT_EQ(
      RunCommand({ctl, "keys", "export-agent", "--keyset", fleet_->keyset(), "--out", edge_keys})
          .exit_code,
      0);
  const std::string edge_store = dir_.Sub("edge-store");
  CommandResult snap = RunCommand(
      {ctl, "snapshot", "create", "--store", edge_store, "--keyset", edge_keys, volume_});
  ASSERT_EQ(snap.exit_code, 0) << snap.err;

  // Agents of beta and (a second one) of edge, played by ferry-link-peer.
  auto join = [&](const std::string& tenant) {
    HttpResult r = fleet_->HubApi("POST", "/v1/tenants/" + tenant + "/enrollment-tokens", "{}");
    EXPECT_EQ(r.status, 201) << r.body;
    return ParseJson(r.body);
  };
  const json::value beta_join = join("beta");
  const std::string fingerprint = std::string(beta_join.at("hub_fingerprint").as_string());
  const std::string url = "ws://127.0.0.1:" + std::to_string(fleet_->hub_port());
  const std::string peer = BinDir() + "/ferry-link-peer";
  const std::string beta_keys = dir_.Sub("beta.keys");
  const std::string beta_keyset = dir_.Sub("beta.keyset");
  ASSERT_EQ(RunCommand({ctl, "keys", "init", "--out", beta_keyset, "--argon2-memory", "8",
                        "--argon2-ops", "1"},
                       {"FERRY_PASSPHRASE=pw"})
                .exit_code,
            0);
  ASSERT_EQ(RunCommand({ctl, "keys", "export-agent", "--keyset", beta_keyset, "--out", beta_keys})
                .exit_code,
            0);
  auto enroll = [&](const std::string& key, const json::value& token, const std::string& name,
                    const std::string& keys) {
    CommandResult r =
        RunCommand({peer, "enroll", "--key", key, "--hub", url, "--hub-key", fingerprint, "--token",
                    std::string(token.at("token").as_string()), "--name", name, "--keyset", keys});
    EXPECT_EQ(r.exit_code, 0) << r.err;
  };
  enroll(dir_.Sub("beta.link"), beta_join, "beta-edge", beta_keys);
  enroll(dir_.Sub("edge-2.link"), join("edge"), "edge-2", edge_keys);
  auto push = [&](const std::string& key) {
    CommandResult r = RunCommand({peer, "push", "--key", key, "--hub", url, "--hub-key",
                                  fingerprint, "--store", edge_store});
    const json::value report = ParseJson(Trim(r.out).substr(Trim(r.out).rfind('\n') + 1));
    return std::make_pair(r, report);
  };
  // Edge's second agent: most of the chunks are already at the hub (the
  // oracle works: a tenant's own store answers "present").
  auto [edge_push, edge_report] = push(dir_.Sub("edge-2.link"));
  ASSERT_TRUE(edge_report.is_object()) << edge_push.out << edge_push.err;
  const uint64_t referenced = edge_report.at("chunks_referenced").to_number<uint64_t>();
  const uint64_t missing_in_edge = edge_report.at("chunks_missing").to_number<uint64_t>();
  EXPECT_LT(missing_in_edge, referenced);
  // Beta's agent pushes the same snapshot: every chunk is missing to it,
  // and its commit of a manifest signed by edge's key is refused.
  auto [beta_push, beta_report] = push(dir_.Sub("beta.link"));
  EXPECT_EQ(beta_push.exit_code, 1) << "beta's agent committed edge's snapshot";
  EXPECT_NE(beta_push.err.find("PERMISSION_DENIED"), std::string::npos) << beta_push.err;
  ASSERT_TRUE(beta_report.is_object()) << beta_push.out;
  EXPECT_EQ(beta_report.at("chunks_missing").to_number<uint64_t>(), referenced)
      << "beta's session saw some of edge's chunks as present";
  EXPECT_TRUE(HubSnapshots("beta").empty());
  const std::vector<std::string> edge_now = HubSnapshots("edge");
  for (const std::string& id : snapshots_) {
    EXPECT_EQ(std::count(edge_now.begin(), edge_now.end(), id), 1) << id;
  }
  std::printf(
      "[security] isolation: %zu REST pairs answered alike; a snapshot of %llu chunks: %llu "
      "missing to edge's own agent, %llu to beta's\n",
      pairs.size(), static_cast<unsigned long long>(referenced),
      static_cast<unsigned long long>(missing_in_edge),
      static_cast<unsigned long long>(beta_report.at("chunks_missing").to_number<uint64_t>()));
}

// ---------------------------------------------------------------------------
// Revocation

TEST_F(SecurityFleetTest, RevokedAgentIsRefusedAndWhatItSentStays) {
  const std::string expected = dir_.Sub("expected");
  ASSERT_EQ(RunCommand({"/bin/cp", "-a", volume_, expected}).exit_code, 0);
  HttpResult revoke = fleet_->HubApi("POST", "/v1/tenants/edge/agents/cam-1/revoke");
  ASSERT_EQ(revoke.status, 200) << revoke.body;
  const std::vector<std::string> before = HubSnapshots();
  ASSERT_FALSE(before.empty());
  // Its next connection: the agent is restarted, so it must connect anew.
  fleet_->StopAgent(SIGTERM);
  fleet_->StartAgent();
  Append(100, 150);
  WriteFileOrDie(volume_ + "/new", SeededBytes(3, 10 << 10));
  HttpResult run = fleet_->AgentApi("POST", "/v1/snapshots", R"({"policy":"p"})");
  ASSERT_EQ(run.status, 200) << run.body;
  // Both the snapshot's delivery and the stream's shipping were refused.
  std::string push_error, stream_error;
  ASSERT_TRUE(Fleet::WaitUntil(
      [&] {
        const json::value s = fleet_->AgentStatus();
        if (!s.is_object() || s.at("hubs").as_array().empty() ||
            s.at("stream_shipping").as_array().empty()) {
          return false;
        }
        push_error = std::string(s.at("hubs").at(0).at("last_error").as_string());
        stream_error = std::string(s.at("stream_shipping").at(0).at("last_error").as_string());
        return !push_error.empty() && !stream_error.empty();
      },
      seconds(20)))
      << fleet_->Logs();
  std::printf("[security] revoked agent's errors: %s | %s\n", push_error.c_str(),
              stream_error.c_str());
  EXPECT_NE(push_error.find("PERMISSION_DENIED"), std::string::npos) << push_error;
  EXPECT_NE(stream_error.find("PERMISSION_DENIED"), std::string::npos) << stream_error;
  EXPECT_TRUE(fleet_->hub()->running());
  // Nothing more arrived; what it sent before stays, readable.
  EXPECT_EQ(HubSnapshots(), before);
  EXPECT_EQ(HubStreamNext(), 100u);
  HttpResult agent = fleet_->HubApi("GET", "/v1/tenants/edge/agents/cam-1");
  EXPECT_NE(agent.body.find("\"revoked\":true"), std::string::npos) << agent.body;
  const std::string to = dir_.Sub("restored");
  CommandResult r = fleet_->Ctl({"restore", "--keyset", fleet_->keyset(), snapshot_, "--to", to});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(DiffTrees(expected, to), "");
  CommandResult v = fleet_->Ctl({"verify", "--keyset", fleet_->keyset(), snapshot_});
  EXPECT_EQ(v.exit_code, 0) << v.err;
  CommandResult s = fleet_->Ctl({"stream", "read", "cam-1/events", "--keyset", fleet_->keyset(),
                                 "--from", "0", "-o", "json"});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(std::count(s.out.begin(), s.out.end(), '\n'), 100);
}

// ---------------------------------------------------------------------------
// Replayed handshakes

TEST_F(SecurityTest, ReplayedEnrollmentEnrollsNothingAndTheTokenStillWorks) {
  StartHub();
  CreateTenant("alpha");
  const std::string token = JoinToken("alpha");
  const std::string keys = AgentKeys("alpha", "cam");
  {
    // On the path, the attacker lets Noise messages 1 and 3 and the Hello
    // through and keeps the EnrollRequest (with the token) to itself.
    RecordingRelay relay(port_, "", /*forward_messages=*/3);
    CommandResult cut = Enroll(relay.url(), dir_.Sub("cam.link"), token, "cam", keys);
    EXPECT_NE(cut.exit_code, 0) << cut.out;
    ASSERT_TRUE(Fleet::WaitUntil([&] { return relay.connections_done() == 1; }, seconds(10)));
    const Recording rec = relay.last();
    ASSERT_EQ(rec.message_ends.size(), 4u) << "noise 1, noise 3, hello, enroll";
    ASSERT_EQ(Count("/v1/tenants/alpha/agents", "agents"), 0u);

    const double sessions = MetricValue(Metrics(), "ferry_hub_sessions_total");
    const ReplayOutcome replay = Replay(port_, rec);
    std::printf(
        "[security] replayed enrollment (%zu bytes): upgraded %d, fresh noise message 2 %d, "
        "closed %d, %zu bytes after\n",
        rec.bytes.size(), replay.upgraded, replay.answered_first, replay.closed,
        replay.bytes_after);
    EXPECT_TRUE(replay.upgraded);
    EXPECT_TRUE(replay.answered_first);
    EXPECT_TRUE(replay.closed) << "the hub kept a replayed handshake open";
    EXPECT_EQ(MetricValue(Metrics(), "ferry_hub_sessions_total"), sessions)
        << "a replayed handshake became a session";
    EXPECT_EQ(Count("/v1/tenants/alpha/agents", "agents"), 0u);
    EXPECT_TRUE(Fleet::WaitUntil([&] { return RefusedHandshakes() == 1; }, seconds(5)))
        << hub_->Log();
  }
  // The token the replay carried was never spent: the real agent enrolls.
  CommandResult real = Enroll(Url(), dir_.Sub("cam.link"), token, "cam", keys);
  EXPECT_EQ(real.exit_code, 0) << real.err;
  EXPECT_EQ(Count("/v1/tenants/alpha/agents", "agents"), 1u);
  EXPECT_EQ(HttpRequest(port_, "GET", "/healthz").status, 200);
}

TEST_F(SecurityTest, ReplayedPushSessionCommitsNothing) {
  StartHub();
  CreateTenant("alpha");
  const std::string keys = AgentKeys("alpha", "cam");
  ASSERT_EQ(Enroll(Url(), dir_.Sub("cam.link"), JoinToken("alpha"), "cam", keys).exit_code, 0);
  const std::string tree = dir_.Sub("tree");
  MakeDirsOrDie(tree);
  WriteFileOrDie(tree + "/data", SeededBytes(7, 200 << 10));
  const std::string store = dir_.Sub("store");
  Capture(store, keys, tree);

  RecordingRelay relay(port_, "");
  CommandResult push = Push(relay.url(), dir_.Sub("cam.link"), store);
  ASSERT_EQ(push.exit_code, 0) << push.err;
  ASSERT_TRUE(Fleet::WaitUntil([&] { return relay.connections_done() == 1; }, seconds(10)));
  const Recording rec = relay.last();
  ASSERT_GE(rec.message_ends.size(), 5u);
  ASSERT_EQ(Count("/v1/tenants/alpha/snapshots", "snapshots"), 1u);

  // The recording holds a whole session: handshake, hello, queries,
  // uploads, the commit. Replayed, none of it may count.
  const std::string metrics = Metrics();
  const double sessions = MetricValue(metrics, "ferry_hub_sessions_total");
  const double commits = MetricValue(metrics, "ferry_hub_commits_total");
  for (int i = 0; i < 2; ++i) {
    const ReplayOutcome replay = Replay(port_, rec);
    EXPECT_TRUE(replay.upgraded);
    EXPECT_TRUE(replay.answered_first);
    EXPECT_TRUE(replay.closed);
    if (i == 0) {
      std::printf(
          "[security] replayed push session (%zu bytes, %zu messages): closed %d after the "
          "replayed noise message 3\n",
          rec.bytes.size(), rec.message_ends.size(), replay.closed);
    }
  }
  EXPECT_TRUE(Fleet::WaitUntil([&] { return RefusedHandshakes() == 2; }, seconds(5)))
      << hub_->Log();
  const std::string after = Metrics();
  EXPECT_EQ(MetricValue(after, "ferry_hub_sessions_total"), sessions);
  EXPECT_EQ(MetricValue(after, "ferry_hub_commits_total"), commits);
  EXPECT_EQ(MetricValue(after, "ferry_hub_chunks_received_total"),
            MetricValue(metrics, "ferry_hub_chunks_received_total"));
  EXPECT_EQ(Count("/v1/tenants/alpha/snapshots", "snapshots"), 1u);
  EXPECT_EQ(HttpRequest(port_, "GET", "/healthz").status, 200);
  // The real agent carries on.
  WriteFileOrDie(tree + "/more", SeededBytes(8, 10 << 10));
  Capture(store, keys, tree);
  CommandResult again = Push(Url(), dir_.Sub("cam.link"), store);
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(Count("/v1/tenants/alpha/snapshots", "snapshots"), 2u);
}

// ---------------------------------------------------------------------------
// Guessing tokens

// A well-formed token nobody was given ("fry_" or "fjt_" + 32 base32).
std::string RandomToken(const std::string& prefix, std::mt19937_64& rng) {
  static constexpr char kBase32[] = "abcdefghijklmnopqrstuvwxyz234567";
  std::string t = prefix;
  for (int i = 0; i < 32; ++i) t += kBase32[rng() % 32];
  return t;
}

TEST_F(SecurityTest, GuessingApiTokensIsThrottledPerAddress) {
  // The ten guesses must fit in the window (they take milliseconds).
  constexpr int kMaxFailures = 10;
  StartHub({"--auth-max-failures", std::to_string(kMaxFailures), "--auth-failure-window", "3s"});
  CreateTenant("alpha");
  const std::string reader = ApiToken("alpha", "reader");
  std::mt19937_64 rng(20251206);
  const std::string target = "/v1/tenants/alpha/snapshots";

  // From 127.0.0.1: guesses until the first 429.
  int refused = 0;
  HttpResult r;
  while (refused < 100) {
    r = HttpRequest(port_, "GET", target, "", RandomToken("fry_", rng));
    if (r.status != 401) break;
    ++refused;
  }
  const auto throttled_at = steady_clock::now();
  EXPECT_EQ(refused, kMaxFailures) << "401s before the first 429";
  ASSERT_EQ(r.status, 429) << r.body;
  EXPECT_NE(r.body.find("RESOURCE_EXHAUSTED"), std::string::npos) << r.body;
  const int retry_after = std::atoi(r.headers["retry-after"].c_str());
  EXPECT_GE(retry_after, 1);
  EXPECT_LE(retry_after, 3);
  // The right token from that address is refused too (not looked at), and
  // so is the admin's; the probes are not.
  EXPECT_EQ(HttpRequest(port_, "GET", target, "", reader).status, 429);
  EXPECT_EQ(HttpRequest(port_, "GET", "/v1/tenants", "", admin_).status, 429);
  EXPECT_EQ(HttpRequest(port_, "GET", "/healthz").status, 200);

  // Another address (127.0.0.2, also loopback) is unaffected, both ways.
  HttpResult other = HttpFrom("127.0.0.2", port_, "GET", target, reader);
  ASSERT_EQ(other.status, 200) << other.error << other.body;
  EXPECT_EQ(HttpFrom("127.0.0.2", port_, "GET", "/v1/tenants", admin_).status, 200);
  EXPECT_EQ(HttpFrom("127.0.0.2", port_, "GET", target, RandomToken("fry_", rng)).status, 401);

  // After the window the right token works again from 127.0.0.1 (polled:
  // each 429 on the way is answered without extending the wait).
  int polls = 0;
  ASSERT_TRUE(Fleet::WaitUntil(
      [&] {
        ++polls;
        return HttpRequest(port_, "GET", target, "", reader).status == 200;
      },
      seconds(10)));
  const double waited = std::chrono::duration<double>(steady_clock::now() - throttled_at).count();
  EXPECT_GE(waited, 2.0);
  const std::string metrics = Metrics();
  EXPECT_EQ(MetricValue(metrics, "ferry_hub_auth_failures_total{where=\"http\"}"),
            kMaxFailures + 1);
  const double throttled = MetricValue(metrics, "ferry_hub_auth_throttled_total{where=\"http\"}");
  EXPECT_GE(throttled, 3);
  std::printf(
      "[security] API tokens: %d refused (401) from one address, then 429 (Retry-After %d s); "
      "another address unaffected; the right token worked again after %.2f s (%d polls, "
      "%.0f requests refused unchecked)\n",
      refused, retry_after, waited, polls, throttled);
  EXPECT_TRUE(hub_->running());
}

TEST_F(SecurityTest, GuessingJoinTokensIsThrottledPerAddress) {
  // The ten guesses (a ferry-link-peer process each, about 50 ms on an
  // idle machine) must fit in the window, also on a loaded one.
  constexpr int kMaxFailures = 10;
  StartHub({"--auth-max-failures", std::to_string(kMaxFailures), "--auth-failure-window", "6s"});
  CreateTenant("alpha");
  const std::string keys = AgentKeys("alpha", "cam");
  std::mt19937_64 rng(20251207);

  int refused = 0;
  CommandResult r;
  const auto started = steady_clock::now();
  while (refused < 100) {
    r = Enroll(Url(), dir_.Sub("guess.link"), RandomToken("fjt_", rng), "guess", keys);
    if (r.err.find("join token is not valid") == std::string::npos) break;
    ++refused;
  }
  const auto throttled_at = steady_clock::now();
  const double guessing = std::chrono::duration<double>(throttled_at - started).count();
  EXPECT_EQ(refused, kMaxFailures)
      << "enrollments refused before the throttle (in " << guessing << " s)";
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("RESOURCE_EXHAUSTED"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("too many failed authentication attempts"), std::string::npos) << r.err;

  // A valid token from that address is refused unchecked: not spent.
  const std::string token = JoinToken("alpha");
  CommandResult valid = Enroll(Url(), dir_.Sub("cam.link"), token, "cam", keys);
  EXPECT_EQ(valid.exit_code, 1);
  EXPECT_NE(valid.err.find("RESOURCE_EXHAUSTED"), std::string::npos) << valid.err;
  EXPECT_EQ(Count("/v1/tenants/alpha/agents", "agents"), 0u);
  // The REST API counts apart: the same address's API calls are served.
  EXPECT_EQ(Api("GET", "/v1/tenants/alpha/agents").status, 200);
  // Another address (through a relay that connects from 127.0.0.2) enrolls.
  {
    RecordingRelay relay(port_, "127.0.0.2");
    CommandResult other =
        Enroll(relay.url(), dir_.Sub("other.link"), JoinToken("alpha"), "other", keys);
    EXPECT_EQ(other.exit_code, 0) << other.err;
  }
  // After the window, the same valid token enrolls from 127.0.0.1.
  int polls = 0;
  ASSERT_TRUE(Fleet::WaitUntil(
      [&] {
        ++polls;
        return Enroll(Url(), dir_.Sub("cam.link"), token, "cam", keys).exit_code == 0;
      },
      seconds(15)));
  const double waited = std::chrono::duration<double>(steady_clock::now() - throttled_at).count();
  EXPECT_GE(waited, 6.0 - guessing - 0.5);
  EXPECT_EQ(Count("/v1/tenants/alpha/agents", "agents"), 2u);
  const std::string metrics = Metrics();
  EXPECT_EQ(MetricValue(metrics, "ferry_hub_auth_failures_total{where=\"link\"}"), kMaxFailures);
  const double throttled = MetricValue(metrics, "ferry_hub_auth_throttled_total{where=\"link\"}");
  EXPECT_GE(throttled, 2);
  std::printf(
      "[security] join tokens: %d refused from one address (in %.2f s), then RESOURCE_EXHAUSTED "
      "unchecked (a valid token too, not spent); another address enrolled; the valid token "
      "enrolled %.2f s later (%d polls, %.0f enrollments refused unchecked)\n",
      refused, guessing, waited, polls, throttled);
  EXPECT_TRUE(hub_->running());
}

}  // namespace
}  // namespace ferry::testing
