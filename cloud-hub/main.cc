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

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>

#include "cloud-hub/catalog.h"
#include "cloud-hub/hub.h"
#include "cloud-hub/hub_config_file.h"
#include "core/crash_site.h"
#include "core/env.h"
#include "core/log.h"
#include "core/version.h"

namespace ferry::hub {
namespace {

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

// `ferry-hub run`'s own options; the settings are in HubRunSettings.
struct RunOptions {
  std::string config;
  HubRunSettings settings;
  std::string port_file;
  bool check = false;
};

int Fail(const std::string& what, const Status& status) {
  log::Error("{}: {}", what, status.ToString());
  return kExitError;
}

int Run(CLI::App& cmd, RunOptions o) {
  // Config file under flags and environment (HubConfigFile).
  Result<HubConfigFile> file = HubConfigFile::Load(o.config);
  if (!file.ok()) {
    std::fprintf(stderr, "ferry-hub: %s\n", file.status().ToString().c_str());
    return kExitUsage;
  }
  Status s = file->ApplyTo(o.settings,
                           [&](std::string_view flag) { return cmd.count(std::string(flag)) > 0; });
  if (!s.ok()) {
    std::fprintf(stderr, "ferry-hub: %s\n", s.ToString().c_str());
    return kExitUsage;
  }

  // Validate everything before starting.
  Result<HubRunConfig> run = ValidateHubRunSettings(o.settings);
  if (!run.ok()) {
    std::fprintf(stderr, "ferry-hub: %s\n", run.status().message().c_str());
    return kExitUsage;
  }
  const HubConfig& config = run->hub;
  const std::string& log_format = o.settings.log_format;
  const bool json = log_format == "json" || (log_format == "auto" && !::isatty(2));
  log::Init({.level = run->log_level, .program = "ferry-hub", .json = json});

  if (o.check) {
    std::printf(
        "config ok: listen %s:%u, data dir %s, max sessions %zu, io threads %d, max frame %llu, "
        "upload window %llu, http body %zu, idle timeout %llds, auth throttle %u failures per "
        "%llds (%zu addresses), shutdown grace %llds, log %s/%s\n",
        config.listen_address.c_str(), config.port, config.data_dir.c_str(), config.max_sessions,
        config.io_threads, static_cast<unsigned long long>(config.max_frame_bytes),
        static_cast<unsigned long long>(config.upload_window_bytes), config.max_http_body_bytes,
        static_cast<long long>(
            std::chrono::duration_cast<std::chrono::seconds>(config.session_idle_timeout).count()),
        config.auth_throttle.max_failures,
        static_cast<long long>(
            std::chrono::duration_cast<std::chrono::seconds>(config.auth_throttle.window).count()),
        config.auth_throttle.max_addresses, static_cast<long long>(run->shutdown_grace.count()),
        o.settings.log_format.c_str(), o.settings.log_level.c_str());
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
  Status stopped = (*hub)->Shutdown(run->shutdown_grace);
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
  run->add_option("--listen", o.settings.listen, "HOST:PORT for the link, REST API and probes")
      ->envname("FERRY_HUB_LISTEN")
      ->capture_default_str();
  run->add_option("--data-dir", o.settings.data_dir, "Data dir (made by ferry-hub init)")
      ->envname("FERRY_HUB_DATA_DIR")
      ->capture_default_str();
  run->add_option("--public-url", o.settings.public_url,
                  "ws:// URL agents use (shown with join tokens)")
      ->envname("FERRY_HUB_PUBLIC_URL");
  run->add_option("--log-format", o.settings.log_format,
                  "auto (text on a TTY, else JSON), text, json")
      ->envname("FERRY_HUB_LOG_FORMAT")
      ->capture_default_str();
  run->add_option("--log-level", o.settings.log_level, "debug, info, warn, error")
      ->envname("FERRY_HUB_LOG_LEVEL")
      ->capture_default_str();
  run->add_option("--max-sessions", o.settings.max_sessions, "Link sessions at once")
      ->envname("FERRY_HUB_MAX_SESSIONS")
      ->capture_default_str();
  run->add_option("--io-threads", o.settings.io_threads, "Network I/O threads")
      ->envname("FERRY_HUB_IO_THREADS")
      ->capture_default_str();
  run->add_option("--max-frame-bytes", o.settings.max_frame_bytes, "Largest link frame")
      ->envname("FERRY_HUB_MAX_FRAME_BYTES")
      ->capture_default_str();
  run->add_option("--upload-window-bytes", o.settings.upload_window_bytes,
                  "Upload credit per session")
      ->envname("FERRY_HUB_UPLOAD_WINDOW_BYTES")
      ->capture_default_str();
  run->add_option("--max-http-body-bytes", o.settings.max_http_body_bytes,
                  "Largest REST request body")
      ->envname("FERRY_HUB_MAX_HTTP_BODY_BYTES")
      ->capture_default_str();
  run->add_option("--session-idle-timeout", o.settings.session_idle_timeout,
                  "Close a link session silent this long")
      ->envname("FERRY_HUB_SESSION_IDLE_TIMEOUT")
      ->capture_default_str();
  run->add_option("--auth-max-failures", o.settings.auth_max_failures,
                  "Failed tokens per address and window before its attempts are refused "
                  "(0: never)")
      ->envname("FERRY_HUB_AUTH_MAX_FAILURES")
      ->capture_default_str();
  run->add_option("--auth-failure-window", o.settings.auth_failure_window,
                  "Window failed tokens are counted in; also how long an address is refused")
      ->envname("FERRY_HUB_AUTH_FAILURE_WINDOW")
      ->capture_default_str();
  run->add_option("--auth-max-addresses", o.settings.auth_max_addresses,
                  "Addresses the auth throttle tracks at once (oldest forgotten first)")
      ->envname("FERRY_HUB_AUTH_MAX_ADDRESSES")
      ->capture_default_str();
  run->add_option("--shutdown-grace", o.settings.shutdown_grace,
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
