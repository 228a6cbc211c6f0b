// ferry-agent: the edge daemon and its commands.
//
//   ferry-agent enroll   --config FILE --hub URL --hub-key FINGERPRINT --token TOKEN [--hub-name N]
//   ferry-agent run      --config FILE [--log-format auto|text|json] [--log-level L]
//   ferry-agent snapshot --config FILE [--dataset NAME | --policy NAME] [--json]
//   ferry-agent status   --config FILE [--json]
//   ferry-agent version
//
// Exit codes: 0 ok, 1 error, 2 usage or config error, 3 no daemon running
// (status).
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "core/crash_site.h"
#include "core/env.h"
#include "core/log.h"
#include "core/malloc_arenas.h"
#include "core/sodium.h"
#include "core/version.h"
#include "edge-agent/agent.h"
#include "edge-agent/local_api.h"
#include "mirror/link/link_channel.h"
#include "mirror/replication/replication_sender.h"
#include "mirror/transport/link_client.h"

namespace ferry::agent {
namespace {

namespace json = boost::json;

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNoDaemon = 3;

int Fail(const std::string& what, const Status& status) {
  std::fprintf(stderr, "ferry-agent: %s: %s\n", what.c_str(), status.ToString().c_str());
  return kExitError;
}

Result<AgentConfig> LoadConfigOrExplain(const std::string& path, int* exit_code) {
  Result<AgentConfig> config = LoadAgentConfig(path);
  if (!config.ok()) {
    // The message names the file, the key and the line.
    std::fprintf(stderr, "ferry-agent: %s\n", config.status().message().c_str());
    *exit_code = kExitUsage;
  }
  return config;
}

double TimeScale() {
  const char* s = std::getenv("FERRY_TEST_TIME_SCALE");
  return s == nullptr ? 1.0 : std::max(1.0, std::atof(s));
}

struct EnrollArgs {
  std::string config;
  std::string hub_url;
  std::string hub_key;
  std::string token;
  std::string hub_name;
};

int Enroll(const EnrollArgs& a) {
  int code = 0;
  Result<AgentConfig> config = LoadConfigOrExplain(a.config, &code);
  if (!config.ok()) return code;
  // Which configured hub this is: --hub-name, else the one with this URL,
  // else the only one.
  std::string name = a.hub_name;
  if (name.empty()) {
    for (const HubEndpoint& h : config->hubs) {
      if (h.url == a.hub_url) name = h.name;
    }
    if (name.empty() && config->hubs.size() == 1) name = config->hubs[0].name;
  }
  if (name.empty() || config->FindHub(name) == nullptr) {
    std::fprintf(stderr,
                 "ferry-agent: enroll: %s names no hub with URL %s; add it to hubs or pass "
                 "--hub-name\n",
                 a.config.c_str(), a.hub_url.c_str());
    return kExitUsage;
  }
  if (Result<mirror::FingerprintDigest> fp = mirror::ParseFingerprint(a.hub_key); !fp.ok()) {
    return Fail("enroll: --hub-key", fp.status());
  }
  Env& env = *Env::Default();
  const StatePaths paths{config->state_dir};
  if (Status s = env.CreateDirs(paths.dir, 0700); !s.ok()) return Fail("enroll", s);
  Result<mirror::StaticIdentity> identity =
      mirror::StaticIdentity::LoadOrCreate(env, paths.Identity());
  if (!identity.ok()) return Fail("enroll", identity.status());
  Result<std::unique_ptr<snapshot::Keyset>> keyset =
      snapshot::Keyset::Load(env, config->keyset.file);
  if (!keyset.ok()) return Fail("enroll: keyset", keyset.status());
  Result<std::unique_ptr<AgentState>> state = AgentState::Open(paths.Database());
  if (!state.ok()) return Fail("enroll", state.status());

  auto connection = mirror::transport::LinkClient::Connect(a.hub_url, *identity, a.hub_key);
  if (!connection.ok()) return Fail("enroll", connection.status());
  mirror::LinkChannel channel(*connection);
  mirror::ReplicationSender sender(channel);
  mirror::linkpb::EnrollRequest request;
  request.set_token(a.token);
  request.set_agent_name(config->name);
  for (const auto& [k, v] : config->labels) (*request.mutable_labels())[k] = v;
  const auto& signer = (*keyset)->signing_key().public_key;
  request.set_signing_key(std::string(signer.begin(), signer.end()));
  Result<mirror::linkpb::EnrollResponse> response = sender.Enroll(request);
  channel.Close(OkStatus());
  if (!response.ok()) return Fail("enroll", response.status());
  EnrolledHub hub{name,
                  a.hub_url,
                  a.hub_key,
                  response->tenant(),
                  response->agent_name(),
                  static_cast<int64_t>(std::time(nullptr))};
  if (Status s = (*state)->SaveEnrollment(hub); !s.ok()) return Fail("enroll: save", s);
  std::printf("enrolled %s as agent %s of tenant %s at hub %s (%s)\nagent key: %s\n",
              config->name.c_str(), response->agent_name().c_str(), response->tenant().c_str(),
              name.c_str(), a.hub_url.c_str(), identity->fingerprint().c_str());
  return 0;
}

struct RunArgs {
  std::string config;
  std::string log_format = "auto";
  std::string log_level = "info";
};

int Run(const RunArgs& a) {
  Result<log::Level> level = log::ParseLevel(a.log_level);
  if (!level.ok()) return Fail("--log-level", level.status());
  if (a.log_format != "auto" && a.log_format != "text" && a.log_format != "json") {
    std::fprintf(stderr, "ferry-agent: --log-format: auto, text or json\n");
    return kExitUsage;
  }
  const bool json_logs = a.log_format == "json" || (a.log_format == "auto" && !::isatty(2));
  log::Init({.level = *level, .program = "ferry-agent", .json = json_logs});
  int code = 0;
  Result<AgentConfig> config = LoadConfigOrExplain(a.config, &code);
  if (!config.ok()) return code;

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const StatePaths paths{config->state_dir};
  const ApiConfig api_config = config->api;
  Result<std::unique_ptr<Agent>> agent =
      Agent::Start(std::move(*config), {.time_scale = TimeScale(), .replicate = true});
  if (!agent.ok()) return Fail("start", agent.status());
  Result<std::unique_ptr<LocalApi>> api = LocalApi::Start(**agent, api_config, paths.ApiPort());
  if (!api.ok()) return Fail("start", api.status());
  if (api_config.unix_socket.empty()) {
    log::Info("local API on http://{}:{}", api_config.address, (*api)->port());
  } else {
    log::Info("local API on unix socket {}", api_config.unix_socket);
  }
  int sig = 0;
  sigwait(&stop_signals, &sig);
  log::Info("signal {}: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*api)->Stop();
  Status stopped = (*agent)->Stop();
  Env::Default()->RemoveFile(paths.ApiPort()).IgnoreError();
  if (!stopped.ok()) return Fail("stop", stopped);
  log::Info("stopped");
  return 0;
}

struct SnapshotArgs {
  std::string config;
  std::string dataset;
  std::string policy;
  bool json = false;
};

void PrintRuns(const json::value& v) {
  if (!v.is_object() || !v.as_object().contains("runs")) return;
  for (const json::value& r : v.at("runs").as_array()) {
    const json::object& o = r.as_object();
    std::printf("policy %s (cut %s):\n", json::value_to<std::string>(o.at("policy")).c_str(),
                json::value_to<std::string>(o.at("cut")).c_str());
    for (const json::value& s : o.at("snapshots").as_array()) {
      std::printf("  %s: snapshot %s, %llu new bytes in the outbox\n",
                  json::value_to<std::string>(s.at("dataset")).c_str(),
                  json::value_to<std::string>(s.at("snapshot")).substr(0, 16).c_str(),
                  static_cast<unsigned long long>(s.at("new_sealed_bytes").to_number<uint64_t>()));
    }
    if (o.contains("error")) {
      std::printf("  error: %s\n",
                  json::value_to<std::string>(o.at("error").at("message")).c_str());
    }
  }
}

int Snapshot(const SnapshotArgs& a) {
  int code = 0;
  Result<AgentConfig> config = LoadConfigOrExplain(a.config, &code);
  if (!config.ok()) return code;
  const StatePaths paths{config->state_dir};
  json::object body;
  if (!a.policy.empty()) body["policy"] = a.policy;
  if (!a.dataset.empty()) body["dataset"] = a.dataset;
  Result<ApiResponse> r = CallLocalApi(config->api, paths.ApiPort(), "POST", "/v1/snapshots",
                                       json::serialize(body), std::chrono::seconds(24 * 3600));
  std::string text;
  int status = 0;
  if (r.ok()) {
    text = r->body;
    status = r->status;
  } else if (r.status().code() == StatusCode::kUnavailable) {
    // No daemon: capture once here (the daemon replicates it when it runs).
    log::Init({.level = log::Level::kWarn, .program = "ferry-agent", .json = false});
    Result<std::unique_ptr<Agent>> agent =
        Agent::Start(std::move(*config), {.time_scale = TimeScale(), .replicate = false});
    if (!agent.ok()) return Fail("snapshot (no daemon running)", agent.status());
    Result<std::vector<RunResult>> runs = (*agent)->RunNow(a.policy, a.dataset);
    Status stopped = (*agent)->Stop();
    if (!runs.ok()) return Fail("snapshot", runs.status());
    bool ok = stopped.ok();
    for (const RunResult& run : *runs) ok = ok && run.status.ok();
    text = json::serialize(RunResultsJson(*runs));
    status = ok ? 200 : 500;
  } else {
    return Fail("snapshot", r.status());
  }
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (a.json || ec) {
    std::printf("%s\n", text.c_str());
  } else if (v.is_object() && v.as_object().contains("error")) {
    std::fprintf(stderr, "ferry-agent: snapshot: %s\n",
                 json::value_to<std::string>(v.at("error").at("message")).c_str());
  } else {
    PrintRuns(v);
  }
  return status == 200 ? 0 : kExitError;
}

int StatusCommand(const std::string& config_path, bool as_json) {
  int code = 0;
  Result<AgentConfig> config = LoadConfigOrExplain(config_path, &code);
  if (!config.ok()) return code;
  const StatePaths paths{config->state_dir};
  Result<ApiResponse> r =
      CallLocalApi(config->api, paths.ApiPort(), "GET", "/v1/status", "", std::chrono::seconds(30));
  if (!r.ok()) {
    std::fprintf(stderr, "ferry-agent: status: %s\n", r.status().message().c_str());
    return kExitNoDaemon;
  }
  if (as_json) {
    std::printf("%s", r->body.c_str());
    return r->status == 200 ? 0 : kExitError;
  }
  boost::system::error_code ec;
  json::value v = json::parse(r->body, ec);
  if (ec || !v.is_object()) {
    std::printf("%s", r->body.c_str());
    return kExitError;
  }
  const json::object& o = v.as_object();
  auto str = [](const json::value& x) {
    return x.is_string() ? std::string(x.as_string()) : json::serialize(x);
  };
  std::printf("agent %s (%s)\n", str(o.at("agent")).c_str(), str(o.at("fingerprint")).c_str());
  const json::object& outbox = o.at("outbox").as_object();
  std::printf("outbox: %s of %s bytes%s\n", str(outbox.at("bytes")).c_str(),
              str(outbox.at("quota_bytes")).c_str(),
              outbox.at("capture_paused").as_bool()
                  ? (" — CAPTURE PAUSED: " + str(outbox.at("reason"))).c_str()
                  : "");
  for (const json::value& p : o.at("policies").as_array()) {
    const json::object& po = p.as_object();
    std::printf("policy %s (%s): runs %s, skipped %s", str(po.at("name")).c_str(),
                str(po.at("source")).c_str(),
                po.contains("runs") ? str(po.at("runs")).c_str() : "0",
                po.contains("skipped_runs") ? str(po.at("skipped_runs")).c_str() : "0");
    if (po.contains("replicated_age_seconds")) {
      std::printf(", replicated %s s ago", str(po.at("replicated_age_seconds")).c_str());
    }
    if (po.contains("rpo_met")) {
      std::printf(", RPO %s %s", str(po.at("rpo_seconds")).c_str(),
                  po.at("rpo_met").as_bool() ? "met" : "NOT MET");
    }
    if (po.contains("last_error") && !po.at("last_error").as_string().empty()) {
      std::printf(", last error: %s", str(po.at("last_error")).c_str());
    }
    std::printf("\n");
  }
  for (const json::value& e : o.at("policy_errors").as_array()) {
    std::printf("policy problem: %s\n", str(e).c_str());
  }
  for (const json::value& h : o.at("hubs").as_array()) {
    const json::object& ho = h.as_object();
    std::printf("hub %s: %s%s, %s commits, %s bytes sent", str(ho.at("hub")).c_str(),
                str(ho.at("state")).c_str(), ho.at("connected").as_bool() ? " (connected)" : "",
                str(ho.at("commits")).c_str(), str(ho.at("bytes_sent")).c_str());
    if (!ho.at("last_error").as_string().empty()) {
      std::printf(", last error: %s", str(ho.at("last_error")).c_str());
    }
    std::printf("\n");
  }
  for (const json::value& p : o.at("pending").as_array()) {
    std::printf("pending for %s: %s snapshot(s), %s bytes\n", str(p.at("target")).c_str(),
                str(p.at("snapshots")).c_str(), str(p.at("bytes")).c_str());
  }
  int shown = 0;
  for (const json::value& d : o.at("deliveries").as_array()) {
    if (++shown > 10) break;
    std::printf("  #%s %s %s -> %s: %s%s\n", str(d.at("seq")).c_str(), str(d.at("dataset")).c_str(),
                str(d.at("snapshot")).substr(0, 16).c_str(), str(d.at("target")).c_str(),
                str(d.at("state")).c_str(),
                d.as_object().contains("error") ? (" (" + str(d.at("error")) + ")").c_str() : "");
  }
  return 0;
}

}  // namespace
}  // namespace ferry::agent

int main(int argc, char** argv) {
  using namespace ferry::agent;
  ferry::UseOneMallocArena();  // before any thread: small devices (core/malloc_arenas.h)
  ferry::log::Init({.level = ferry::log::Level::kInfo, .program = "ferry-agent", .json = false});
  ferry::sodium::InitSodium();
  if (ferry::Status armed = ferry::ArmCrashSiteFromEnvironment(); !armed.ok()) {
    std::fprintf(stderr, "ferry-agent: %s\n", armed.ToString().c_str());
    return 2;
  }
  CLI::App app{"ferry-agent: snapshots an edge device's datasets and replicates them to hubs."};
  app.require_subcommand(1);
  int exit_code = 0;

  EnrollArgs enroll_args;
  CLI::App* enroll = app.add_subcommand("enroll", "Register this agent's key with a hub");
  enroll->add_option("--config", enroll_args.config, "Agent config file")->required();
  enroll->add_option("--hub", enroll_args.hub_url, "The hub's link URL (ws://host:port)")
      ->required();
  enroll->add_option("--hub-key", enroll_args.hub_key, "The hub's fingerprint (pinned)")
      ->required();
  enroll->add_option("--token", enroll_args.token, "One-time join token")->required();
  enroll->add_option("--hub-name", enroll_args.hub_name, "Which configured hub this is");
  enroll->callback([&] { exit_code = Enroll(enroll_args); });

  RunArgs run_args;
  CLI::App* run = app.add_subcommand("run", "Run the daemon until SIGTERM");
  run->add_option("--config", run_args.config, "Agent config file")->required();
  run->add_option("--log-format", run_args.log_format, "auto (JSON unless a terminal), text, json");
  run->add_option("--log-level", run_args.log_level, "debug, info, warn, error");
  run->callback([&] { exit_code = Run(run_args); });

  SnapshotArgs snap_args;
  CLI::App* snap = app.add_subcommand(
      "snapshot", "Take a snapshot now (through the running daemon, or once without one)");
  snap->add_option("--config", snap_args.config, "Agent config file")->required();
  snap->add_option("--dataset", snap_args.dataset, "Run the policies that hold this dataset");
  snap->add_option("--policy", snap_args.policy, "Run this policy");
  snap->add_flag("--json", snap_args.json, "Print the JSON answer");
  snap->callback([&] { exit_code = Snapshot(snap_args); });

  std::string status_config;
  bool status_json = false;
  CLI::App* status = app.add_subcommand("status", "What the running daemon is doing");
  status->add_option("--config", status_config, "Agent config file")->required();
  status->add_flag("--json", status_json, "Print the JSON status");
  status->callback([&] { exit_code = StatusCommand(status_config, status_json); });

  CLI::App* version = app.add_subcommand("version", "Print the version");
  version->callback([&] { std::printf("ferry-agent %s\n", ferry::kFerryVersion); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int r = app.exit(e);
    return r == 0 ? 0 : kExitUsage;
  }
  return exit_code;
}
