#include "cloud-hub/hub_config_file.h"

#include <cstdlib>
#include <type_traits>
#include <utility>
#include <variant>

#include "core/env.h"
#include "mirror/policy/mirror_policy.h"
#include "mirror/policy/yaml_fields.h"

namespace ferry::hub {
namespace {

using mirror::yaml_fields::Describe;
using mirror::yaml_fields::Sanitize;

// The config file's keys (dotted paths), the flag that overrides each, and
// the setting it fills, in the order they are applied.
struct HubConfigKey {
  std::string_view key;
  std::string_view flag;
  std::variant<std::string HubRunSettings::*, int64_t HubRunSettings::*> field;
};

const HubConfigKey kHubConfigKeys[] = {
    {"listen", "--listen", &HubRunSettings::listen},
    {"dataDir", "--data-dir", &HubRunSettings::data_dir},
    {"publicUrl", "--public-url", &HubRunSettings::public_url},
    {"log.format", "--log-format", &HubRunSettings::log_format},
    {"log.level", "--log-level", &HubRunSettings::log_level},
    {"limits.maxSessions", "--max-sessions", &HubRunSettings::max_sessions},
    {"limits.ioThreads", "--io-threads", &HubRunSettings::io_threads},
    {"limits.maxFrameBytes", "--max-frame-bytes", &HubRunSettings::max_frame_bytes},
    {"limits.uploadWindowBytes", "--upload-window-bytes", &HubRunSettings::upload_window_bytes},
    {"limits.maxHttpBodyBytes", "--max-http-body-bytes", &HubRunSettings::max_http_body_bytes},
    {"limits.sessionIdleTimeout", "--session-idle-timeout", &HubRunSettings::session_idle_timeout},
    {"auth.maxFailures", "--auth-max-failures", &HubRunSettings::auth_max_failures},
    {"auth.failureWindow", "--auth-failure-window", &HubRunSettings::auth_failure_window},
    {"auth.maxAddresses", "--auth-max-addresses", &HubRunSettings::auth_max_addresses},
    {"shutdownGrace", "--shutdown-grace", &HubRunSettings::shutdown_grace},
};

Result<std::pair<std::string, uint16_t>> ParseListen(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    return InvalidArgumentError("listen: expected HOST:PORT, got '" + Sanitize(listen) + "'");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port_text = listen.substr(colon + 1);
  char* end = nullptr;
  const long port = std::strtol(port_text.c_str(), &end, 10);
  if (*end != '\0' || port < 0 || port > 65535) {
    return InvalidArgumentError("listen: bad port '" + Sanitize(port_text) + "'");
  }
  return std::make_pair(host, static_cast<uint16_t>(port));
}

}  // namespace

Result<HubConfigFile> HubConfigFile::Load(const std::string& path) {
  if (path.empty()) {
    HubConfigFile f;
    return f;
  }
  Result<Bytes> data = Env::Default()->ReadFile(path, 1 << 20);
  if (!data.ok()) return data.status().WithContext("config file");
  return Parse(std::string_view(reinterpret_cast<const char*>(data->data()), data->size()), path);
}

Result<HubConfigFile> HubConfigFile::Parse(std::string_view text, const std::string& origin) {
  HubConfigFile f;
  f.origin_ = origin;
  try {
    f.root_ = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    // yaml-cpp's message may quote a byte of the document (an unknown
    // escape): printable, as every message is.
    return InvalidArgumentError(origin + ":" + std::to_string(e.mark.line + 1) + ":" +
                                std::to_string(e.mark.column + 1) + ": " + Sanitize(e.msg));
  }
  if (f.root_ && !f.root_.IsNull() && !f.root_.IsMap()) {
    return InvalidArgumentError(origin + ": the config file must be a mapping of keys");
  }
  return f;
}

Status HubConfigFile::ApplyTo(HubRunSettings& settings,
                              const std::function<bool(std::string_view flag)>& flag_given) const {
  RETURN_IF_ERROR(CheckKnownKeys());
  for (const HubConfigKey& k : kHubConfigKeys) {
    if (flag_given && flag_given(k.flag)) continue;
    RETURN_IF_ERROR(std::visit([&](auto field) { return Apply(k.key, settings.*field); }, k.field));
  }
  return OkStatus();
}

template <typename T>
Status HubConfigFile::Apply(std::string_view key, T& value) const {
  YAML::Node node;
  if (!Find(key, node)) return OkStatus();
  try {
    value = node.as<T>();
  } catch (const YAML::Exception&) {
    return InvalidArgumentError(origin_ + ":" + std::to_string(node.Mark().line + 1) + ": " +
                                std::string(key) + ": expected " +
                                (std::is_integral_v<T> ? "an integer" : "a string"));
  }
  return OkStatus();
}

bool HubConfigFile::Find(std::string_view dotted, YAML::Node& out) const {
  if (!root_ || !root_.IsMap()) return false;
  YAML::Node node;
  node.reset(root_);
  size_t start = 0;
  while (true) {
    const size_t dot = dotted.find('.', start);
    const std::string part(dotted.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (!node.IsMap()) return false;
    YAML::Node next = node[part];
    if (!next.IsDefined() || next.IsNull()) return false;
    node.reset(next);  // rebind (operator= would assign into the node)
    if (dot == std::string_view::npos) {
      out.reset(node);
      return true;
    }
    start = dot + 1;
  }
}

Status HubConfigFile::CheckKnownKeys() const {
  if (!root_ || !root_.IsMap()) return OkStatus();
  return CheckMap(root_, "");
}

Status HubConfigFile::CheckMap(const YAML::Node& map, const std::string& prefix) const {
  for (const auto& kv : map) {
    // A list or a mapping as a key (`? [a]`) is no name: as<std::string>
    // would throw.
    if (!kv.first.IsScalar()) {
      return InvalidArgumentError(origin_ + ":" + std::to_string(kv.first.Mark().line + 1) +
                                  ": keys must be names, got " + Describe(kv.first));
    }
    const std::string key = prefix + kv.first.Scalar();
    bool found = false, parent = false;
    for (const HubConfigKey& k : kHubConfigKeys) {
      if (k.key == key) found = true;
      if (k.key.starts_with(key + ".")) parent = true;
    }
    if (parent && kv.second.IsMap()) {
      RETURN_IF_ERROR(CheckMap(kv.second, key + "."));
    } else if (!found) {
      return InvalidArgumentError(origin_ + ":" + std::to_string(kv.first.Mark().line + 1) +
                                  ": unknown key '" + Sanitize(key) + "'");
    }
  }
  return OkStatus();
}

Result<HubRunConfig> ValidateHubRunSettings(const HubRunSettings& o) {
  HubRunConfig run;
  HubConfig& config = run.hub;
  ASSIGN_OR_RETURN(auto listen, ParseListen(o.listen));
  config.listen_address = listen.first;
  config.port = listen.second;
  config.data_dir = o.data_dir;
  config.public_url = o.public_url;
  if (o.max_sessions < 1 || o.max_sessions > 100000) {
    return InvalidArgumentError("max-sessions: 1..100000");
  }
  if (o.io_threads < 1 || o.io_threads > 64) return InvalidArgumentError("io-threads: 1..64");
  if (o.max_frame_bytes < (64 << 10) || o.max_frame_bytes > (64 << 20)) {
    return InvalidArgumentError("max-frame-bytes: 65536..67108864");
  }
  if (o.upload_window_bytes < o.max_frame_bytes || o.upload_window_bytes > (1ll << 30)) {
    return InvalidArgumentError("upload-window-bytes: at least max-frame-bytes, at most 1 GiB");
  }
  if (o.max_http_body_bytes < 1024 || o.max_http_body_bytes > (64 << 20)) {
    return InvalidArgumentError("max-http-body-bytes: 1024..67108864");
  }
  config.max_sessions = static_cast<size_t>(o.max_sessions);
  config.io_threads = static_cast<int>(o.io_threads);
  config.max_frame_bytes = static_cast<uint64_t>(o.max_frame_bytes);
  config.upload_window_bytes = static_cast<uint64_t>(o.upload_window_bytes);
  config.max_http_body_bytes = static_cast<size_t>(o.max_http_body_bytes);
  Result<int64_t> grace = mirror::ParseDuration(o.shutdown_grace);
  if (!grace.ok()) return InvalidArgumentError("shutdown-grace: " + grace.status().message());
  run.shutdown_grace = std::chrono::seconds(*grace);
  Result<int64_t> idle = mirror::ParseDuration(o.session_idle_timeout);
  if (!idle.ok()) {
    return InvalidArgumentError("session-idle-timeout: " + idle.status().message());
  }
  config.session_idle_timeout = std::chrono::seconds(*idle);
  if (o.auth_max_failures < 0 || o.auth_max_failures > 1'000'000) {
    return InvalidArgumentError("auth-max-failures: 0 (no throttle)..1000000");
  }
  Result<int64_t> auth_window = mirror::ParseDuration(o.auth_failure_window);
  if (!auth_window.ok()) {
    return InvalidArgumentError("auth-failure-window: " + auth_window.status().message());
  }
  if (*auth_window < 1 || *auth_window > 86'400) {
    return InvalidArgumentError("auth-failure-window: 1s..1d");
  }
  if (o.auth_max_addresses < 16 || o.auth_max_addresses > 1'000'000) {
    return InvalidArgumentError("auth-max-addresses: 16..1000000");
  }
  config.auth_throttle.max_failures = static_cast<uint32_t>(o.auth_max_failures);
  config.auth_throttle.window = std::chrono::seconds(*auth_window);
  config.auth_throttle.max_addresses = static_cast<size_t>(o.auth_max_addresses);
  Result<log::Level> level = log::ParseLevel(o.log_level);
  if (!level.ok()) {
    // ParseLevel's message, with the name quoted printable.
    return InvalidArgumentError("log-level: unknown log level '" + Sanitize(o.log_level) +
                                "' (expected debug, info, warn, error or off)");
  }
  run.log_level = *level;
  if (o.log_format != "auto" && o.log_format != "text" && o.log_format != "json") {
    return InvalidArgumentError("log-format: auto, text or json");
  }
  return run;
}

}  // namespace ferry::hub
