// ferry-link-peer: the two ends of the link as separate processes, for the
// integration tests and the link benchmark, until ferry-hub and ferry-agent
// exist. Not shipped.
//
//   init        --state DIR                 identity + store; prints the fingerprint
//   add-token   --state DIR --tenant T [--ttl S] [--token X]
//                                           a one-time join token (printed)
//   serve       --state DIR [--port-file F] serves the link until SIGTERM/SIGINT
//   enroll      --key K --hub URL --hub-key FP --token X --name N --keyset F
//               [--label K=V]...            labels sent with the EnrollRequest
//   push        --key K --hub URL --hub-key FP --store DIR --snapshot ID
//               [--limit BYTES/S] [--json]   one push; a JSON report on stdout
//   watch-policies --key K --hub URL --hub-key FP [--count N] [--timeout-ms T]
//                                           prints one JSON line per PolicySync
//                                           ({"generation":G,"policies":[names]});
//                                           exits 0 after N (default 1), 1 on
//                                           timeout or error
//
// The serving side keeps, in --state DIR: identity.key, store/ (a LocalStore),
// peers (one enrolled agent per line: fingerprint, tenant, name, signing key
// in hex) and tokens (one join token per line: SHA-256 of the token in hex,
// expiry in Unix seconds, tenant, and "used" + the redeeming fingerprint
// once used). Both files are replaced atomically on every change.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/env.h"
#include "core/evp.h"
#include "core/log.h"
#include "core/sodium.h"
#include "mirror/identity.h"
#include "mirror/link/link_channel.h"
#include "mirror/policy/mirror_policy.h"
#include "mirror/replication/replication_receiver.h"
#include "mirror/replication/replication_sender.h"
#include "mirror/transport/link_client.h"
#include "mirror/transport/link_server.h"
#include "snapshot/keyset.h"
#include "snapshot/local_store.h"

namespace ferry {
namespace {

using mirror::StaticIdentity;
namespace linkpb = mirror::linkpb;

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

int Fail(const std::string& what, const Status& status) {
  std::fprintf(stderr, "ferry-link-peer: %s: %s\n", what.c_str(), status.ToString().c_str());
  return kExitError;
}

std::string TokenHash(std::string_view token) {
  const evp::Digest256 d =
      evp::Sha256(ByteView(reinterpret_cast<const uint8_t*>(token.data()), token.size()));
  return HexEncode(d);
}

// The enrolled agents and the join tokens of one serving state dir.
class PeerBook {
 public:
  struct Peer {
    std::string fingerprint;
    std::string tenant;
    std::string name;
    sodium::PublicKey signing_key{};
  };
  struct Token {
    std::string hash;
    int64_t expires = 0;
    std::string tenant;
    std::string used_by;  // fingerprint; empty while unused
  };

  static Result<std::unique_ptr<PeerBook>> Load(const std::string& dir) {
    auto book = std::unique_ptr<PeerBook>(new PeerBook(dir));
    RETURN_IF_ERROR(book->ReadPeers());
    RETURN_IF_ERROR(book->ReadTokens());
    return book;
  }

  std::optional<Peer> Find(const sodium::PublicKey& key) const {
    std::lock_guard lock(mu_);
    auto it = peers_.find(mirror::Fingerprint(key));
    if (it == peers_.end()) return std::nullopt;
    return it->second;
  }

  Status AddToken(const std::string& token, int64_t ttl_seconds, const std::string& tenant) {
    std::lock_guard lock(mu_);
    tokens_.push_back({TokenHash(token), std::time(nullptr) + ttl_seconds, tenant, ""});
    return WriteTokens();
  }

  // Binds `peer` to the token's tenant; the token is spent either way once
  // it matched (a second use names the first user).
  Result<Peer> Redeem(const std::string& token, const sodium::PublicKey& peer,
                      const std::string& name, ByteView signing_key) {
    if (name.empty()) return InvalidArgumentError("enrollment needs an agent name");
    if (signing_key.size() != sizeof(sodium::PublicKey)) {
      return InvalidArgumentError("enrollment needs the agent's 32-byte manifest signing key");
    }
    std::lock_guard lock(mu_);
    const std::string hash = TokenHash(token);
    for (Token& t : tokens_) {
      if (!sodium::ConstantTimeEqual(
              ByteView(reinterpret_cast<const uint8_t*>(t.hash.data()), t.hash.size()),
              ByteView(reinterpret_cast<const uint8_t*>(hash.data()), hash.size()))) {
        continue;
      }
      if (!t.used_by.empty()) {
        return PermissionDeniedError("join token was already used (by " + t.used_by + ")");
      }
      if (std::time(nullptr) >= t.expires) {
        return PermissionDeniedError("join token expired " +
                                     std::to_string(std::time(nullptr) - t.expires) + " s ago");
      }
      Peer p;
      p.fingerprint = mirror::Fingerprint(peer);
      p.tenant = t.tenant;
      p.name = name;
      std::copy(signing_key.begin(), signing_key.end(), p.signing_key.begin());
      t.used_by = p.fingerprint;
      RETURN_IF_ERROR(WriteTokens());
      peers_[p.fingerprint] = p;
      RETURN_IF_ERROR(WritePeers());
      return p;
    }
    return PermissionDeniedError("join token is not valid on this hub");
  }

 private:
  explicit PeerBook(std::string dir) : dir_(std::move(dir)) {}

  static Result<std::vector<std::vector<std::string>>> ReadLines(const std::string& path) {
    std::vector<std::vector<std::string>> lines;
    ASSIGN_OR_RETURN(bool exists, Env::Default()->FileExists(path));
    if (!exists) return lines;
    ASSIGN_OR_RETURN(Bytes data, Env::Default()->ReadFile(path, 64u << 20));
    std::istringstream in(std::string(data.begin(), data.end()));
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::vector<std::string> f;
      for (std::string w; fields >> w;) f.push_back(w);
      if (!f.empty()) lines.push_back(std::move(f));
    }
    return lines;
  }

  Status ReadPeers() {
    ASSIGN_OR_RETURN(auto lines, ReadLines(dir_ + "/peers"));
    for (const auto& f : lines) {
      if (f.size() != 4) return DataLossError(dir_ + "/peers: a line without 4 fields");
      ASSIGN_OR_RETURN(Bytes key, HexDecode(f[3]));
      if (key.size() != 32) return DataLossError(dir_ + "/peers: a signing key of bad size");
      Peer p{f[0], f[1], f[2], {}};
      std::copy(key.begin(), key.end(), p.signing_key.begin());
      peers_[p.fingerprint] = p;
    }
    return OkStatus();
  }
  Status ReadTokens() {
    ASSIGN_OR_RETURN(auto lines, ReadLines(dir_ + "/tokens"));
    for (const auto& f : lines) {
      if (f.size() != 3 && f.size() != 5) return DataLossError(dir_ + "/tokens: a bad line");
      tokens_.push_back({f[0], std::stoll(f[1]), f[2], f.size() == 5 ? f[4] : ""});
    }
    return OkStatus();
  }
  Status WritePeers() const {
    std::string out;
    for (const auto& [fp, p] : peers_) {
      out += p.fingerprint + " " + p.tenant + " " + p.name + " " + HexEncode(p.signing_key) + "\n";
    }
    return WriteFileAtomic(*Env::Default(), dir_ + "/peers", AsBytes(out), 0600);
  }
  Status WriteTokens() const {
    std::string out;
    for (const Token& t : tokens_) {
      out += t.hash + " " + std::to_string(t.expires) + " " + t.tenant;
      if (!t.used_by.empty()) out += " used " + t.used_by;
      out += "\n";
    }
    return WriteFileAtomic(*Env::Default(), dir_ + "/tokens", AsBytes(out), 0600);
  }
  static ByteView AsBytes(const std::string& s) {
    return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }

  const std::string dir_;
  mutable std::mutex mu_;
  std::map<std::string, Peer> peers_;
  std::vector<Token> tokens_;
};

// What one session may do: commit manifests signed by its agent's signing
// key; enroll with a join token.
class SessionPolicy final : public mirror::ReceiverPolicy {
 public:
  SessionPolicy(PeerBook& book, const sodium::PublicKey& peer) : book_(book), peer_(peer) {}

  Status AuthorizeCommit(const snapshot::ParsedManifest& manifest) override {
    std::optional<PeerBook::Peer> p = book_.Find(peer_);
    if (!p) return PermissionDeniedError("agent is not enrolled");
    if (!sodium::ConstantTimeEqual(manifest.signer, p->signing_key)) {
      return PermissionDeniedError("manifest is signed by " + HexEncode(manifest.signer) +
                                   ", not by agent " + p->name + "'s signing key " +
                                   HexEncode(p->signing_key));
    }
    return OkStatus();
  }
  Result<linkpb::EnrollResponse> Enroll(const linkpb::EnrollRequest& request,
                                        const sodium::PublicKey& peer) override {
    const std::string& key = request.signing_key();
    ASSIGN_OR_RETURN(
        PeerBook::Peer p,
        book_.Redeem(request.token(), peer, request.agent_name(),
                     ByteView(reinterpret_cast<const uint8_t*>(key.data()), key.size())));
    log::Info("enrolled {} as {} of tenant {}", p.fingerprint, p.name, p.tenant);
    linkpb::EnrollResponse response;
    response.set_tenant(p.tenant);
    response.set_agent_name(p.name);
    return response;
  }

 private:
  PeerBook& book_;
  const sodium::PublicKey peer_;
};

struct CommonPaths {
  std::string state;
  std::string IdentityPath() const { return state + "/identity.key"; }
  std::string StorePath() const { return state + "/store"; }
};

int Init(const CommonPaths& paths) {
  Env& env = *Env::Default();
  if (Status s = env.CreateDirs(paths.state, 0700); !s.ok()) return Fail("init", s);
  Result<StaticIdentity> id = StaticIdentity::LoadOrCreate(env, paths.IdentityPath());
  if (!id.ok()) return Fail("init", id.status());
  auto store = snapshot::LocalStore::OpenOrCreate(paths.StorePath());
  if (!store.ok()) return Fail("init", store.status());
  std::printf("%s\n", id->fingerprint().c_str());
  return 0;
}

int AddToken(const CommonPaths& paths, const std::string& tenant, int64_t ttl, std::string token) {
  auto book = PeerBook::Load(paths.state);
  if (!book.ok()) return Fail("add-token", book.status());
  if (token.empty()) token = "fjt1-" + HexEncode(sodium::RandomArray<16>());
  if (Status s = (*book)->AddToken(token, ttl, tenant); !s.ok()) return Fail("add-token", s);
  std::printf("%s\n", token.c_str());
  return 0;
}

struct ServeArgs {
  CommonPaths paths;
  std::string listen = "127.0.0.1";
  uint16_t port = 0;
  std::string port_file;
  uint64_t upload_window = 64u << 20;
  int64_t idle_timeout_ms = 60'000;
};

int Serve(const ServeArgs& args) {
  // Signals are taken synchronously by this thread (sigwait below); block
  // them before any other thread starts so that none of those gets them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  Env& env = *Env::Default();
  Result<StaticIdentity> id = StaticIdentity::Load(env, args.paths.IdentityPath());
  if (!id.ok()) return Fail("serve (run init first)", id.status());
  auto store =
      snapshot::LocalStore::Open(args.paths.StorePath(), snapshot::LocalStore::Mode::kReadWrite);
  if (!store.ok()) return Fail("serve", store.status());
  auto book = PeerBook::Load(args.paths.state);
  if (!book.ok()) return Fail("serve", book.status());

  mirror::ReceiverOptions receiver_options;
  receiver_options.upload_window_bytes = args.upload_window;
  receiver_options.software = "ferry-link-peer";
  const auto idle = std::chrono::milliseconds(args.idle_timeout_ms);

  mirror::transport::LinkServerCallbacks callbacks;
  PeerBook& peers = **book;
  snapshot::LocalStore& local = **store;
  callbacks.authorize = [&peers](const sodium::PublicKey& key) {
    return peers.Find(key) ? mirror::transport::PeerAuthorization::kKnown
                           : mirror::transport::PeerAuthorization::kUnknown;
  };
  callbacks.on_session = [&](std::shared_ptr<mirror::transport::LinkConnection> connection) {
    const std::string who = connection->peer_fingerprint();
    SessionPolicy policy(peers, connection->peer_key());
    mirror::ReplicationReceiver receiver(local, policy, connection->peer_key(),
                                         connection->peer_enrolled(), receiver_options);
    mirror::LinkChannel channel(connection);
    const Status ended = mirror::ServeSession(channel, receiver, idle);
    const auto& st = receiver.stats();
    log::Info("session {} from {} ended ({}): {} chunks received, {} new, {} bytes, {} commits",
              who, connection->remote_endpoint(), ended.ToString(), st.chunks_received,
              st.chunks_new, st.bytes_received, st.commits);
  };

  mirror::transport::LinkServerOptions options;
  options.address = args.listen;
  options.port = args.port;
  options.link.idle_timeout = idle;
  auto server = mirror::transport::LinkServer::Start(*id, options, std::move(callbacks));
  if (!server.ok()) return Fail("serve", server.status());
  const uint16_t port = (*server)->port();
  log::Info("serving the link on ws://{}:{}/v1/link as {}", args.listen, port, id->fingerprint());
  if (!args.port_file.empty()) {
    const std::string text = std::to_string(port) + "\n";
    Status s = WriteFileAtomic(
        env, args.port_file, ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    if (!s.ok()) return Fail("serve", s);
  }

  int sig = 0;
  sigwait(&stop_signals, &sig);
  log::Info("signal {}: stopping", sig);
  (*server)->Stop();
  if (Status s = local.Flush(); !s.ok()) return Fail("serve: flush", s);
  return 0;
}

struct ClientArgs {
  std::string key;
  std::string hub;
  std::string hub_key;
};

Result<std::shared_ptr<mirror::transport::LinkConnection>> Connect(const ClientArgs& args) {
  ASSIGN_OR_RETURN(StaticIdentity identity,
                   StaticIdentity::LoadOrCreate(*Env::Default(), args.key));
  return mirror::transport::LinkClient::Connect(args.hub, identity, args.hub_key);
}

int Enroll(const ClientArgs& client, const std::string& token, const std::string& name,
           const std::string& keyset_path, const std::vector<std::string>& labels) {
  auto keyset = snapshot::Keyset::Load(*Env::Default(), keyset_path);
  if (!keyset.ok()) return Fail("enroll", keyset.status());
  auto connection = Connect(client);
  if (!connection.ok()) return Fail("enroll", connection.status());
  mirror::LinkChannel channel(*connection);
  mirror::ReplicationSender sender(channel);
  linkpb::EnrollRequest request;
  request.set_token(token);
  request.set_agent_name(name);
  for (const std::string& label : labels) {
    const size_t eq = label.find('=');
    if (eq == std::string::npos) {
      return Fail("enroll", InvalidArgumentError("--label wants KEY=VALUE, got " + label));
    }
    (*request.mutable_labels())[label.substr(0, eq)] = label.substr(eq + 1);
  }
  const auto& signer = (*keyset)->signing_key().public_key;
  request.set_signing_key(std::string(signer.begin(), signer.end()));
  auto response = sender.Enroll(request);
  if (!response.ok()) return Fail("enroll", response.status());
  std::printf("enrolled as %s in tenant %s\n", response->agent_name().c_str(),
              response->tenant().c_str());
  return 0;
}

struct PushArgs {
  ClientArgs client;
  std::string store;
  std::string snapshot = "latest";
  uint64_t limit = 0;
  uint64_t upload_batch = 1u << 20;
};

void PrintReport(const mirror::PushReport& r, const mirror::transport::LinkCounters& c,
                 const Status& status) {
  boost::json::object o;
  o["ok"] = status.ok();
  o["error"] = status.ok() ? "" : status.ToString();
  o["snapshot"] = HexEncode(r.snapshot_id);
  o["chunks_referenced"] = r.chunks_referenced;
  o["chunks_missing"] = r.chunks_missing;
  o["chunks_sent"] = r.chunks_sent;
  o["bytes_sent"] = r.bytes_sent;
  o["uploads"] = r.uploads;
  o["queries"] = r.queries;
  o["already_present"] = r.already_present;
  o["seconds"] = r.seconds;
  o["wire_bytes_sent"] = c.bytes_sent;
  o["wire_bytes_received"] = c.bytes_received;
  std::printf("%s\n", boost::json::serialize(o).c_str());
}

int Push(const PushArgs& args) {
  auto store = snapshot::LocalStore::Open(args.store, snapshot::LocalStore::Mode::kReadOnly);
  if (!store.ok()) return Fail("push", store.status());
  Result<snapshot::SnapshotId> id = (*store)->ResolveSnapshot(args.snapshot);
  if (!id.ok()) return Fail("push", id.status());
  auto connection = Connect(args.client);
  if (!connection.ok()) {
    PrintReport({}, {}, connection.status());
    return Fail("push", connection.status());
  }
  std::optional<mirror::TokenBucket> bucket;
  mirror::SenderOptions options;
  options.software = "ferry-link-peer";
  options.upload_batch_bytes = args.upload_batch;
  if (args.limit > 0) {
    // A burst of a quarter second keeps the rate smooth at any size.
    bucket.emplace(args.limit, std::max<uint64_t>(args.limit / 4, args.upload_batch));
    options.bandwidth = &*bucket;
  }
  mirror::LinkChannel channel(*connection);
  mirror::ReplicationSender sender(channel, **store, options);
  Result<mirror::PushReport> report = sender.Push(*id);
  channel.Close(OkStatus());
  const auto counters = (*connection)->counters();
  PrintReport(sender.progress(), counters, report.status());
  if (!report.ok()) return Fail("push", report.status());
  return 0;
}

struct WatchArgs {
  ClientArgs client;
  int count = 1;
  int64_t timeout_ms = 30'000;
};

// Hello, then Listen until `count` syncs arrived; each is printed (and
// flushed) as it arrives, so a test can act between two.
int WatchPolicies(const WatchArgs& args) {
  auto connection = Connect(args.client);
  if (!connection.ok()) return Fail("watch-policies", connection.status());
  int received = 0;
  Status bad_policy;
  mirror::SenderOptions options;
  options.software = "ferry-link-peer";
  options.on_policy_sync = [&](const linkpb::PolicySync& sync) {
    boost::json::array names;
    for (const std::string& text : sync.policies()) {
      // Each entry must read back as a policy (canonical JSON).
      Result<mirror::MirrorPolicy> policy = mirror::ParseMirrorPolicy(text);
      if (!policy.ok()) {
        if (bad_policy.ok()) bad_policy = policy.status();
        continue;
      }
      names.emplace_back(policy->name);
    }
    boost::json::object o;
    o["generation"] = sync.generation();
    o["policies"] = std::move(names);
    std::printf("%s\n", boost::json::serialize(o).c_str());
    std::fflush(stdout);
    ++received;
  };
  mirror::LinkChannel channel(*connection);
  mirror::ReplicationSender sender(channel, options);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(args.timeout_ms);
  Status status = sender.Hello();
  while (status.ok() && bad_policy.ok() && received < args.count) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      status = DeadlineExceededError("received " + std::to_string(received) + " of " +
                                     std::to_string(args.count) + " policy syncs in " +
                                     std::to_string(args.timeout_ms) + " ms");
      break;
    }
    status = sender.Listen(left);
  }
  channel.Close(OkStatus());
  if (!status.ok()) return Fail("watch-policies", status);
  if (!bad_policy.ok()) return Fail("watch-policies: a synced policy does not parse", bad_policy);
  return 0;
}

}  // namespace
}  // namespace ferry

int main(int argc, char** argv) {
  using namespace ferry;
  log::Init({.level = log::Level::kInfo, .program = "ferry-link-peer"});
  CLI::App app{"Both ends of the Ferry link as processes (tests and benchmarks)."};
  app.require_subcommand(1);
  int exit_code = 0;

  CommonPaths init_paths;
  CLI::App* init = app.add_subcommand("init", "Create a serving state dir; print its fingerprint");
  init->add_option("--state", init_paths.state, "State dir")->required();
  init->callback([&] { exit_code = Init(init_paths); });

  CommonPaths token_paths;
  std::string tenant, token;
  int64_t ttl = 3600;
  CLI::App* add_token = app.add_subcommand("add-token", "Add a one-time join token; print it");
  add_token->add_option("--state", token_paths.state, "State dir")->required();
  add_token->add_option("--tenant", tenant, "Tenant the token enrolls into")->required();
  add_token->add_option("--ttl", ttl, "Seconds until it expires (may be negative)");
  add_token->add_option("--token", token, "The token (default: a random one)");
  add_token->callback([&] { exit_code = AddToken(token_paths, tenant, ttl, token); });

  ServeArgs serve_args;
  CLI::App* serve = app.add_subcommand("serve", "Serve the link until SIGTERM");
  serve->add_option("--state", serve_args.paths.state, "State dir")->required();
  serve->add_option("--listen", serve_args.listen, "Address");
  serve->add_option("--port", serve_args.port, "Port (0: any free one)");
  serve->add_option("--port-file", serve_args.port_file, "Write the bound port here");
  serve->add_option("--upload-window", serve_args.upload_window, "Upload credit in bytes");
  serve->add_option("--idle-timeout-ms", serve_args.idle_timeout_ms, "Session idle timeout");
  serve->callback([&] { exit_code = Serve(serve_args); });

  auto add_client = [](CLI::App* cmd, ClientArgs& c) {
    cmd->add_option("--key", c.key, "Identity key file (created if missing)")->required();
    cmd->add_option("--hub", c.hub, "ws://host:port")->required();
    cmd->add_option("--hub-key", c.hub_key, "The hub's pinned fingerprint")->required();
  };
  ClientArgs enroll_client;
  std::string enroll_token, enroll_name, enroll_keyset;
  std::vector<std::string> enroll_labels;
  CLI::App* enroll = app.add_subcommand("enroll", "Enroll this key with a join token");
  add_client(enroll, enroll_client);
  enroll->add_option("--token", enroll_token, "Join token")->required();
  enroll->add_option("--name", enroll_name, "Agent name")->required();
  enroll->add_option("--keyset", enroll_keyset, "Keyset or agent key file (signing key)")
      ->required();
  enroll->add_option("--label", enroll_labels, "A label KEY=VALUE for the agent (repeatable)");
  enroll->callback([&] {
    exit_code = Enroll(enroll_client, enroll_token, enroll_name, enroll_keyset, enroll_labels);
  });

  PushArgs push_args;
  CLI::App* push = app.add_subcommand("push", "Push one snapshot; print a JSON report");
  add_client(push, push_args.client);
  push->add_option("--store", push_args.store, "Local store")->required();
  push->add_option("--snapshot", push_args.snapshot, "Snapshot id, prefix or 'latest'");
  push->add_option("--limit", push_args.limit, "Upload limit in bytes/s (0: none)");
  push->add_option("--upload-batch", push_args.upload_batch, "Bytes per upload frame");
  push->callback([&] { exit_code = Push(push_args); });

  WatchArgs watch_args;
  CLI::App* watch = app.add_subcommand("watch-policies",
                                       "Print each policy sync the hub sends (one JSON line each)");
  add_client(watch, watch_args.client);
  watch->add_option("--count", watch_args.count, "Exit 0 after this many syncs (default 1)")
      ->check(CLI::PositiveNumber);
  watch->add_option("--timeout-ms", watch_args.timeout_ms, "Give up (exit 1) after this long")
      ->check(CLI::PositiveNumber);
  watch->callback([&] { exit_code = WatchPolicies(watch_args); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int r = app.exit(e);
    return r == 0 ? 0 : kExitUsage;
  }
  return exit_code;
}
