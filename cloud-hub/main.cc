// ferry-hub: the hub daemon.
//
//   ferry-hub init --data-dir DIR [--tenant NAME]
//       identity key, catalog, a first admin token (printed once)
//   ferry-hub run [--config hub.yaml] [options]
//       serves the link, the REST API, /healthz, /readyz and /metrics on one
//       port until SIGTERM or SIGINT (graceful: see --shutdown-grace)
//   ferry-hub admin-token --data-dir DIR
//       another all-tenants admin token (when the first one is lost)
//   ferry-hub version
//
// Every `run` option is also a key of the config file and an environment
// variable (FERRY_HUB_<NAME>); a flag beats the environment, which beats the
// file, which beats the default. configs/hub.yaml is a commented sample.
#include <signal.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "cloud-hub/catalog.h"
#include "cloud-hub/hub.h"
#include "core/crash_site.h"
#include "core/env.h"
#include "core/log.h"
#include "core/version.h"
#include "mirror/policy/mirror_policy.h"

namespace ferry::hub {
namespace {

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

struct RunOptions {
  std::string config;
  std::string listen = "0.0.0.0:7070";
  std::string data_dir = "/var/lib/ferry-hub";
  std::string public_url;
  std::string log_format = "auto";  // auto | text | json
  std::string log_level = "info";
  int64_t max_sessions = 1024;
  int64_t io_threads = 2;
  std::string shutdown_grace = "20s";
  std::string session_idle_timeout = "2m";
  int64_t max_frame_bytes = 8 << 20;
  int64_t upload_window_bytes = 64 << 20;
  int64_t max_http_body_bytes = 1 << 20;
  int64_t auth_max_failures = 10;
  std::string auth_failure_window = "1m";
  int64_t auth_max_addresses = 4096;
  std::string port_file;
  bool check = false;
};

// A config file value for `key` unless the flag or its environment variable
// was given. Errors name the key and its line.
class ConfigFile {
 public:
  static Result<ConfigFile> Load(const std::string& path) {
    ConfigFile f;
    f.path_ = path;
    if (path.empty()) return f;
    Result<Bytes> data = Env::Default()->ReadFile(path, 1 << 20);
    if (!data.ok()) return data.status().WithContext("config file");
    try {
      f.root_ = YAML::Load(std::string(data->begin(), data->end()));
    } catch (const YAML::Exception& e) {
      return InvalidArgumentError(path + ":" + std::to_string(e.mark.line + 1) + ":" +
                                  std::to_string(e.mark.column + 1) + ": " + e.msg);
    }
    if (f.root_ && !f.root_.IsNull() && !f.root_.IsMap()) {
      return InvalidArgumentError(path + ": the config file must be a mapping of keys");
    }
    return f;
  }

  // Keys this binary knows, for the unknown-key check (dotted paths).
  Status CheckKnownKeys(const std::vector<std::string>& known) const {
    if (!root_ || !root_.IsMap()) return OkStatus();
    return CheckMap(root_, "", known);
  }

  template <typename T>
  Status Apply(const CLI::App& app, const std::string& flag, const std::string& key, T& value) {
    if (app.count(flag) > 0) return OkStatus();
    std::optional<YAML::Node> found = Find(key);
    if (!found) return OkStatus();
    const YAML::Node& node = *found;
    try {
      value = node.as<T>();
    } catch (const YAML::Exception&) {
      return InvalidArgumentError(path_ + ":" + std::to_string(node.Mark().line + 1) + ": " + key +
                                  ": expected " + TypeName<T>());
    }
    return OkStatus();
  }

 private:
  template <typename T>
  static const char* TypeName() {
    return std::is_integral_v<T> ? "an integer" : "a string";
  }

  std::optional<YAML::Node> Find(const std::string& dotted) const {
    if (!root_ || !root_.IsMap()) return std::nullopt;
    YAML::Node node;
    node.reset(root_);
    size_t start = 0;
    while (true) {
      const size_t dot = dotted.find('.', start);
      const std::string part = dotted.substr(start, dot == std::string::npos ? dot : dot - start);
      if (!node.IsMap()) return std::nullopt;
      YAML::Node next = node[part];
      if (!next.IsDefined() || next.IsNull()) return std::nullopt;
      node.reset(next);  // rebind (operator= would assign into the node)
      if (dot == std::string::npos) return node;
      start = dot + 1;
    }
  }

  Status CheckMap(const YAML::Node& map, const std::string& prefix,
                  const std::vector<std::string>& known) const {
    for (const auto& kv : map) {
      const std::string key = prefix + kv.first.as<std::string>();
      bool found = false, parent = false;
      for (const std::string& k : known) {
        if (k == key) found = true;
        if (k.rfind(key + ".", 0) == 0) parent = true;
      }
      if (parent && kv.second.IsMap()) {
        RETURN_IF_ERROR(CheckMap(kv.second, key + ".", known));
      } else if (!found) {
        return InvalidArgumentError(path_ + ":" + std::to_string(kv.first.Mark().line + 1) +
                                    ": unknown key '" + key + "'");
      }
    }
    return OkStatus();
  }

  std::string path_;
  YAML::Node root_;
};

Result<std::pair<std::string, uint16_t>> ParseListen(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    return InvalidArgumentError("listen: expected HOST:PORT, got '" + listen + "'");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port_text = listen.substr(colon + 1);
  char* end = nullptr;
  const long port = std::strtol(port_text.c_str(), &end, 10);
  if (*end != '\0' || port < 0 || port > 65535) {
    return InvalidArgumentError("listen: bad port '" + port_text + "'");
  }
  return std::make_pair(host, static_cast<uint16_t>(port));
}

int Fail(const std::string& what, const Status& status) {
  log::Error("{}: {}", what, status.ToString());
  return kExitError;
}

int Run(CLI::App& cmd, RunOptions o) {
  // Config file under flags and environment.
  Result<ConfigFile> file = ConfigFile::Load(o.config);
  if (!file.ok()) {
    std::fprintf(stderr, "ferry-hub: %s\n", file.status().ToString().c_str());
    return kExitUsage;
  }
  const std::vector<std::string> known = {"listen",
                                          "dataDir",
                                          "publicUrl",
                                          "log.format",
                                          "log.level",
                                          "limits.maxSessions",
                                          "limits.ioThreads",
                                          "limits.maxFrameBytes",
                                          "limits.uploadWindowBytes",
                                          "limits.maxHttpBodyBytes",
                                          "limits.sessionIdleTimeout",
                                          "auth.maxFailures",
                                          "auth.failureWindow",
                                          "auth.maxAddresses",
                                          "shutdownGrace"};
  Status s = file->CheckKnownKeys(known);
  if (s.ok()) s = file->Apply(cmd, "--listen", "listen", o.listen);
  if (s.ok()) s = file->Apply(cmd, "--data-dir", "dataDir", o.data_dir);
  if (s.ok()) s = file->Apply(cmd, "--public-url", "publicUrl", o.public_url);
  if (s.ok()) s = file->Apply(cmd, "--log-format", "log.format", o.log_format);
  if (s.ok()) s = file->Apply(cmd, "--log-level", "log.level", o.log_level);
  if (s.ok()) s = file->Apply(cmd, "--max-sessions", "limits.maxSessions", o.max_sessions);
  if (s.ok()) s = file->Apply(cmd, "--io-threads", "limits.ioThreads", o.io_threads);
  if (s.ok()) s = file->Apply(cmd, "--max-frame-bytes", "limits.maxFrameBytes", o.max_frame_bytes);
  if (s.ok()) {
    s = file->Apply(cmd, "--upload-window-bytes", "limits.uploadWindowBytes",
                    o.upload_window_bytes);
  }
  if (s.ok()) {
    s = file->Apply(cmd, "--max-http-body-bytes", "limits.maxHttpBodyBytes", o.max_http_body_bytes);
  }
  if (s.ok()) {
    s = file->Apply(cmd, "--session-idle-timeout", "limits.sessionIdleTimeout",
                    o.session_idle_timeout);
  }
  if (s.ok()) {
    s = file->Apply(cmd, "--auth-max-failures", "auth.maxFailures", o.auth_max_failures);
  }
  if (s.ok()) {
    s = file->Apply(cmd, "--auth-failure-window", "auth.failureWindow", o.auth_failure_window);
  }
  if (s.ok()) {
    s = file->Apply(cmd, "--auth-max-addresses", "auth.maxAddresses", o.auth_max_addresses);
  }
  if (s.ok()) s = file->Apply(cmd, "--shutdown-grace", "shutdownGrace", o.shutdown_grace);
  if (!s.ok()) {
    std::fprintf(stderr, "ferry-hub: %s\n", s.ToString().c_str());
    return kExitUsage;
  }

  // Validate everything before starting.
  HubConfig config;
  auto usage = [](const std::string& message) {
    std::fprintf(stderr, "ferry-hub: %s\n", message.c_str());
    return kExitUsage;
  };
  Result<std::pair<std::string, uint16_t>> listen = ParseListen(o.listen);
  if (!listen.ok()) return usage(listen.status().message());
  config.listen_address = listen->first;
  config.port = listen->second;
  config.data_dir = o.data_dir;
  config.public_url = o.public_url;
  if (o.max_sessions < 1 || o.max_sessions > 100000) return usage("max-sessions: 1..100000");
  if (o.io_threads < 1 || o.io_threads > 64) return usage("io-threads: 1..64");
  if (o.max_frame_bytes < (64 << 10) || o.max_frame_bytes > (64 << 20)) {
    return usage("max-frame-bytes: 65536..67108864");
  }
  if (o.upload_window_bytes < o.max_frame_bytes || o.upload_window_bytes > (1ll << 30)) {
    return usage("upload-window-bytes: at least max-frame-bytes, at most 1 GiB");
  }
  if (o.max_http_body_bytes < 1024 || o.max_http_body_bytes > (64 << 20)) {
    return usage("max-http-body-bytes: 1024..67108864");
  }
  config.max_sessions = static_cast<size_t>(o.max_sessions);
  config.io_threads = static_cast<int>(o.io_threads);
  config.max_frame_bytes = static_cast<uint64_t>(o.max_frame_bytes);
  config.upload_window_bytes = static_cast<uint64_t>(o.upload_window_bytes);
  config.max_http_body_bytes = static_cast<size_t>(o.max_http_body_bytes);
  Result<int64_t> grace = mirror::ParseDuration(o.shutdown_grace);
  if (!grace.ok()) return usage("shutdown-grace: " + grace.status().message());
  Result<int64_t> idle = mirror::ParseDuration(o.session_idle_timeout);
  if (!idle.ok()) return usage("session-idle-timeout: " + idle.status().message());
  config.session_idle_timeout = std::chrono::seconds(*idle);
  if (o.auth_max_failures < 0 || o.auth_max_failures > 1'000'000) {
    return usage("auth-max-failures: 0 (no throttle)..1000000");
  }
  Result<int64_t> auth_window = mirror::ParseDuration(o.auth_failure_window);
  if (!auth_window.ok()) return usage("auth-failure-window: " + auth_window.status().message());
  if (*auth_window < 1 || *auth_window > 86'400) return usage("auth-failure-window: 1s..1d");
  if (o.auth_max_addresses < 16 || o.auth_max_addresses > 1'000'000) {
    return usage("auth-max-addresses: 16..1000000");
  }
  config.auth_throttle.max_failures = static_cast<uint32_t>(o.auth_max_failures);
  config.auth_throttle.window = std::chrono::seconds(*auth_window);
  config.auth_throttle.max_addresses = static_cast<size_t>(o.auth_max_addresses);
  Result<log::Level> level = log::ParseLevel(o.log_level);
  if (!level.ok()) return usage("log-level: " + level.status().message());
  if (o.log_format != "auto" && o.log_format != "text" && o.log_format != "json") {
    return usage("log-format: auto, text or json");
  }
  const bool json = o.log_format == "json" || (o.log_format == "auto" && !::isatty(2));
  log::Init({.level = *level, .program = "ferry-hub", .json = json});

  if (o.check) {
    std::printf(
        "config ok: listen %s:%u, data dir %s, max sessions %zu, io threads %d, max frame %llu, "
        "upload window %llu, http body %zu, idle timeout %llds, auth throttle %u failures per "
        "%llds (%zu addresses), shutdown grace %llds, log %s/%s\n",
        config.listen_address.c_str(), config.port, config.data_dir.c_str(), config.max_sessions,
        config.io_threads, static_cast<unsigned long long>(config.max_frame_bytes),
        static_cast<unsigned long long>(config.upload_window_bytes), config.max_http_body_bytes,
        static_cast<long long>(*idle), config.auth_throttle.max_failures,
        static_cast<long long>(*auth_window), config.auth_throttle.max_addresses,
        static_cast<long long>(*grace), o.log_format.c_str(), o.log_level.c_str());
    return 0;
  }

  // SIGTERM/SIGINT are taken by this thread (sigwait); block them before
  // any other thread starts.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  Result<std::unique_ptr<Hub>> hub = Hub::Start(config);
  if (!hub.ok()) return Fail("start", hub.status());
  if (!o.port_file.empty()) {
    const std::string text = std::to_string((*hub)->port()) + "\n";
    Status w =
        WriteFileAtomic(*Env::Default(), o.port_file,
                        ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    if (!w.ok()) return Fail("port file", w);
  }
  int sig = 0;
  sigwait(&stop_signals, &sig);
  log::Info("signal {}: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  Status stopped = (*hub)->Shutdown(std::chrono::seconds(*grace));
  hub->reset();
  if (!stopped.ok()) return Fail("shutdown", stopped);
  log::Info("stopped");
  return 0;
}

int Init(const std::string& data_dir, const std::string& tenant) {
  Result<InitResult> r = InitDataDir(data_dir, tenant);
  if (!r.ok()) return Fail("init", r.status());
  std::printf(
      "initialized hub in %s\n"
      "hub fingerprint (agents pin this): %s\n"
      "admin token (shown once; keep it secret): %s\n",
      data_dir.c_str(), r->fingerprint.c_str(), r->admin_token.c_str());
  return 0;
}

// A new all-tenants admin token, straight into the catalog (for when the
// first one is lost; needs access to the data dir, as init does).
int AdminToken(const std::string& data_dir, const std::string& description) {
  Result<std::unique_ptr<Catalog>> catalog = Catalog::Open(data_dir + "/catalog.db");
  if (!catalog.ok()) return Fail("admin-token", catalog.status());
  Result<std::string> token = (*catalog)->CreateApiToken("", Role::kAdmin, description);
  if (!token.ok()) return Fail("admin-token", token.status());
  std::printf("admin token (shown once; keep it secret): %s\n", token->c_str());
  return 0;
}

}  // namespace
}  // namespace ferry::hub

int main(int argc, char** argv) {
  using namespace ferry;
  using namespace ferry::hub;
  log::Init({.level = log::Level::kInfo, .program = "ferry-hub", .json = false});
  if (Status armed = ArmCrashSiteFromEnvironment(); !armed.ok()) {
    std::fprintf(stderr, "ferry-hub: %s\n", armed.ToString().c_str());
    return 2;
  }
  CLI::App app{"ferry-hub: the Ferry hub (link endpoint, chunk stores, catalog, REST API)"};
  app.require_subcommand(1);
  int exit_code = 0;

  std::string init_dir, init_tenant;
  CLI::App* init = app.add_subcommand(
      "init", "Create a hub data dir: identity key, catalog, first admin token (printed once)");
  init->add_option("--data-dir", init_dir, "Data dir to create")
      ->envname("FERRY_HUB_DATA_DIR")
      ->required();
  init->add_option("--tenant", init_tenant, "Also create this tenant");
  init->callback([&] { exit_code = Init(init_dir, init_tenant); });

  std::string token_dir, token_description = "created by ferry-hub admin-token";
  CLI::App* admin_token = app.add_subcommand(
      "admin-token",
      "Create another all-tenants admin token (printed once), e.g. when the first is lost");
  admin_token->add_option("--data-dir", token_dir, "The hub's data dir")
      ->envname("FERRY_HUB_DATA_DIR")
      ->required();
  admin_token->add_option("--description", token_description, "What the token is for");
  admin_token->callback([&] { exit_code = AdminToken(token_dir, token_description); });

  RunOptions o;
  CLI::App* run = app.add_subcommand("run", "Serve until SIGTERM");
  run->add_option("--config", o.config, "YAML config file (configs/hub.yaml)")
      ->envname("FERRY_HUB_CONFIG");
  run->add_option("--listen", o.listen, "HOST:PORT for the link, REST API and probes")
      ->envname("FERRY_HUB_LISTEN")
      ->capture_default_str();
  run->add_option("--data-dir", o.data_dir, "Data dir (made by ferry-hub init)")
      ->envname("FERRY_HUB_DATA_DIR")
      ->capture_default_str();
  run->add_option("--public-url", o.public_url, "ws:// URL agents use (shown with join tokens)")
      ->envname("FERRY_HUB_PUBLIC_URL");
  run->add_option("--log-format", o.log_format, "auto (text on a TTY, else JSON), text, json")
      ->envname("FERRY_HUB_LOG_FORMAT")
      ->capture_default_str();
  run->add_option("--log-level", o.log_level, "debug, info, warn, error")
      ->envname("FERRY_HUB_LOG_LEVEL")
      ->capture_default_str();
  run->add_option("--max-sessions", o.max_sessions, "Link sessions at once")
      ->envname("FERRY_HUB_MAX_SESSIONS")
      ->capture_default_str();
  run->add_option("--io-threads", o.io_threads, "Network I/O threads")
      ->envname("FERRY_HUB_IO_THREADS")
      ->capture_default_str();
  run->add_option("--max-frame-bytes", o.max_frame_bytes, "Largest link frame")
      ->envname("FERRY_HUB_MAX_FRAME_BYTES")
      ->capture_default_str();
  run->add_option("--upload-window-bytes", o.upload_window_bytes, "Upload credit per session")
      ->envname("FERRY_HUB_UPLOAD_WINDOW_BYTES")
      ->capture_default_str();
  run->add_option("--max-http-body-bytes", o.max_http_body_bytes, "Largest REST request body")
      ->envname("FERRY_HUB_MAX_HTTP_BODY_BYTES")
      ->capture_default_str();
  run->add_option("--session-idle-timeout", o.session_idle_timeout,
                  "Close a link session silent this long")
      ->envname("FERRY_HUB_SESSION_IDLE_TIMEOUT")
      ->capture_default_str();
  run->add_option("--auth-max-failures", o.auth_max_failures,
                  "Failed tokens per address and window before its attempts are refused "
                  "(0: never)")
      ->envname("FERRY_HUB_AUTH_MAX_FAILURES")
      ->capture_default_str();
  run->add_option("--auth-failure-window", o.auth_failure_window,
                  "Window failed tokens are counted in; also how long an address is refused")
      ->envname("FERRY_HUB_AUTH_FAILURE_WINDOW")
      ->capture_default_str();
  run->add_option("--auth-max-addresses", o.auth_max_addresses,
                  "Addresses the auth throttle tracks at once (oldest forgotten first)")
      ->envname("FERRY_HUB_AUTH_MAX_ADDRESSES")
      ->capture_default_str();
  run->add_option("--shutdown-grace", o.shutdown_grace,
                  "On SIGTERM, how long sessions get to finish their current batch")
      ->envname("FERRY_HUB_SHUTDOWN_GRACE")
      ->capture_default_str();
  run->add_option("--port-file", o.port_file, "Write the bound port here (tests, --listen :0)");
  run->add_flag("--check", o.check, "Validate the configuration, print it and exit");
  run->callback([&] { exit_code = Run(*run, o); });

  CLI::App* version = app.add_subcommand("version", "Print the version");
  version->callback([&] { std::printf("ferry-hub %s\n", kFerryVersion); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int r = app.exit(e);
    return r == 0 ? 0 : kExitUsage;
  }
  return exit_code;
}
