// HubConfigFile: the YAML config file of `ferry-hub run` (configs/hub.yaml
// is a commented sample), and the checks that turn the run settings into
// the HubConfig the hub starts with.
//
// Every setting is a flag of `ferry-hub run`, an environment variable
// (FERRY_HUB_<NAME>) and a key of the file; a flag beats the environment,
// which beats the file, which beats the built-in default. main.cc gives
// HubConfigFile::ApplyTo the flags (and environment variables) that were
// set; the file fills in the rest.
//
// Errors: kInvalidArgument for a file that is not YAML ("<path>:<line>:
// <column>: <yaml-cpp's message>"), not a mapping, names a key ferry-hub
// does not know ("<path>:<line>: unknown key 'limits.maxSesions'"), has a
// key that is not a name ("? [a]") or gives a value of the wrong type
// ("<path>:<line>: limits.ioThreads: expected an integer"), and for
// settings out of range (ValidateHubRunSettings: "max-sessions:
// 1..100000", named by flag); Load passes on the error of reading the file
// (kNotFound, ...) with the context "config file". Messages are one line of
// printable ASCII: the document's bytes are quoted (\xNN), never echoed.
// Thread-safety: a HubConfigFile is not shared; the functions are
// thread-safe.
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "cloud-hub/hub.h"
#include "core/log.h"
#include "core/status.h"

namespace ferry::hub {

// The settings of `ferry-hub run` as flags, environment and config file
// give them, before ValidateHubRunSettings checks them. Each default is
// the built-in one (configs/hub.yaml lists them); the config key and the
// flag of each field are in kHubConfigKeys (hub_config_file.cc).
struct HubRunSettings {
  std::string listen = "0.0.0.0:7070";          // listen, --listen: HOST:PORT
  std::string data_dir = "/var/lib/ferry-hub";  // dataDir, --data-dir
  std::string public_url;                       // publicUrl, --public-url ("": none)
  std::string log_format = "auto";              // log.format, --log-format: auto | text | json
  std::string log_level = "info";               // log.level, --log-level
  int64_t max_sessions = 1024;                  // limits.maxSessions, --max-sessions
  int64_t io_threads = 2;                       // limits.ioThreads, --io-threads
  std::string shutdown_grace = "20s";           // shutdownGrace, --shutdown-grace (a duration)
  std::string session_idle_timeout = "2m";      // limits.sessionIdleTimeout, --session-idle-timeout
  int64_t max_frame_bytes = 8 << 20;            // limits.maxFrameBytes, --max-frame-bytes
  int64_t upload_window_bytes = 64 << 20;       // limits.uploadWindowBytes, --upload-window-bytes
  int64_t max_http_body_bytes = 1 << 20;        // limits.maxHttpBodyBytes, --max-http-body-bytes
  int64_t auth_max_failures = 10;               // auth.maxFailures, --auth-max-failures
  std::string auth_failure_window = "1m";       // auth.failureWindow, --auth-failure-window
  int64_t auth_max_addresses = 4096;            // auth.maxAddresses, --auth-max-addresses
};

class HubConfigFile {
 public:
  // Reads `path` (at most 1 MiB) and parses it; an empty path is no file
  // (ApplyTo then changes nothing).
  static Result<HubConfigFile> Load(const std::string& path);
  // Parses `text`; `origin` names it in error messages (the file's path).
  // The document must be a mapping (or empty).
  static Result<HubConfigFile> Parse(std::string_view text, const std::string& origin);

  // Checks that every key is one ferry-hub knows, then copies the file's
  // value of each setting into `settings`, except for the settings whose
  // flag (e.g. "--max-sessions") `flag_given` says was given on the command
  // line or in the environment: their values in the file are not looked
  // at. A null value (`listen:`) leaves the setting as it is.
  Status ApplyTo(HubRunSettings& settings,
                 const std::function<bool(std::string_view flag)>& flag_given) const;

 private:
  template <typename T>
  Status Apply(std::string_view key, T& value) const;
  bool Find(std::string_view dotted, YAML::Node& out) const;
  Status CheckKnownKeys() const;
  Status CheckMap(const YAML::Node& map, const std::string& prefix) const;

  std::string origin_;
  YAML::Node root_;
};

// What ValidateHubRunSettings makes of the settings.
struct HubRunConfig {
  HubConfig hub;                           // what Hub::Start gets
  std::chrono::seconds shutdown_grace{0};  // what Hub::Shutdown gets on SIGTERM
  log::Level log_level = log::Level::kInfo;
};

// Checks every setting (the ranges configs/hub.yaml documents) and builds
// the hub's config. kInvalidArgument naming the setting by its flag name
// ("max-sessions: 1..100000").
Result<HubRunConfig> ValidateHubRunSettings(const HubRunSettings& settings);

}  // namespace ferry::hub
