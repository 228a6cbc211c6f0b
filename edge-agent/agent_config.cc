#include "edge-agent/agent_config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <sstream>
#include <utility>

#include <yaml-cpp/yaml.h>

#include "core/env.h"
#include "mirror/identity.h"
#include "mirror/policy/yaml_fields.h"
#include "mirror/transport/link_client.h"

namespace ferry::agent {
namespace {

// Bounds of a config (configs/agent.yaml documents them).
constexpr size_t kMaxConfigBytes = size_t{1} << 20;  // refused before parsing
constexpr size_t kMaxHubs = 64;
constexpr size_t kMaxDatasets = 256;
constexpr size_t kMaxStreams = 256;
// A record travels to the hubs in one link frame (8 MiB by default).
constexpr uint64_t kMaxStreamRecordBytes = uint64_t{4} << 20;
constexpr uint64_t kMinSegmentBytes = uint64_t{64} << 10;
constexpr uint64_t kMaxSegmentBytes = uint64_t{1} << 30;
constexpr int64_t kMinFsyncIntervalMs = 10;
constexpr int64_t kMaxFsyncIntervalMs = 10'000;
constexpr int64_t kMaxRetentionAgeSeconds = int64_t{3660} * 86400;
constexpr size_t kMaxPolicies = 64;
constexpr size_t kMaxLabels = 64;
constexpr size_t kMaxExcludes = 1024;
constexpr size_t kMaxHookArguments = 256;
constexpr size_t kMaxPathLength = 4096;  // PATH_MAX
constexpr size_t kMaxStringLength = 4096;
constexpr size_t kMaxUnixSocketPath = 107;  // sockaddr_un::sun_path less its NUL
constexpr size_t kMaxEnvNameLength = 255;
constexpr uint64_t kMinMemoryBytes = uint64_t{32} << 20;
constexpr size_t kMaxWorkers = 64;
constexpr uint64_t kMinOutboxQuotaBytes = uint64_t{1} << 20;
constexpr int64_t kMinHookTimeoutSeconds = 1;
constexpr int64_t kMaxHookTimeoutSeconds = 3600;
constexpr int64_t kMinFailoverAfterSeconds = 10;
constexpr int64_t kMinBackoffMs = 100;
constexpr int64_t kMaxBackoffInitialMs = int64_t{3600} * 1000;  // 1h
constexpr int64_t kMaxBackoffMaxMs = int64_t{86400} * 1000;     // 1d
// An inline policy is emitted back to YAML for mirror::ParseMirrorPolicy.
// Aliases are expanded on the way, so a few bytes of anchors could stand for
// a huge tree: the walk stops after this many nodes (or kMaxPolicyBytes).
constexpr size_t kMaxPolicyNodes = 100'000;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLowerAlnum(char c) { return IsDigit(c) || (c >= 'a' && c <= 'z'); }
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }

using mirror::yaml_fields::Child;
using mirror::yaml_fields::Describe;
using mirror::yaml_fields::Field;
using mirror::yaml_fields::FieldError;
using mirror::yaml_fields::Index;
using mirror::yaml_fields::LineColumn;
using mirror::yaml_fields::List;
using mirror::yaml_fields::Mapping;
using mirror::yaml_fields::PathKey;
using mirror::yaml_fields::Quote;
using mirror::yaml_fields::Sanitize;
using mirror::yaml_fields::Where;

// Every key of an agent config is called a "key" in messages.
constexpr const char* kNoun = "key";

// A string within the config's bounds: paths, argv and names all end up as
// C strings, so no NUL either.
Result<std::string> ConfigString(const Field& field) {
  if (!field.node.IsScalar()) return field.Error("must be a string, got " + Describe(field.node));
  const std::string& s = field.node.Scalar();
  if (s.size() > kMaxStringLength) {
    return field.Error("longer than " + std::to_string(kMaxStringLength) + " bytes");
  }
  // Paths, argv and names all end up as C strings.
  if (s.find('\0') != std::string::npos) return field.Error("must not contain a NUL byte");
  return s;
}

Result<std::string> NonEmptyString(const Field& field) {
  ASSIGN_OR_RETURN(std::string s, ConfigString(field));
  if (s.empty()) return field.Error("must not be empty");
  return s;
}

// The hub/policy name rule (mirror_policy.h: ValidateName rules).
Result<std::string> Name(const Field& field) {
  ASSIGN_OR_RETURN(std::string name, ConfigString(field));
  if (std::string problem = mirror::yaml_fields::NameProblem(name); !problem.empty()) {
    return field.Error(problem);
  }
  return name;
}

Result<std::string> AbsolutePath(const Field& field, size_t max_length = kMaxPathLength) {
  ASSIGN_OR_RETURN(std::string path, ConfigString(field));
  if (path.empty() || path.front() != '/') {
    return field.Error("must be an absolute path, got " + Quote(path));
  }
  if (path.size() > max_length) {
    return field.Error("longer than " + std::to_string(max_length) + " bytes");
  }
  return path;
}

// A whole number: a plain (unquoted) scalar of digits, as in the policy
// parser, so that a quoted "4" stays a string.
Result<uint64_t> Integer(const Field& field, uint64_t min, uint64_t max) {
  const std::string range = std::to_string(min) + ".." + std::to_string(max);
  const std::string bad = "must be an integer " + range + ", got " + Describe(field.node);
  if (!field.node.IsScalar() || field.node.Tag() == "!") return field.Error(bad);
  const std::string& s = field.node.Scalar();
  if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), IsDigit)) {
    return field.Error(bad);
  }
  const uint64_t v = std::stoull(s);
  if (v < min || v > max) return field.Error(bad);
  return v;
}

std::string FormatSize(uint64_t bytes) {
  static constexpr std::pair<std::string_view, uint64_t> kUnits[] = {{"TiB", uint64_t{1} << 40},
                                                                     {"GiB", uint64_t{1} << 30},
                                                                     {"MiB", uint64_t{1} << 20},
                                                                     {"KiB", uint64_t{1} << 10}};
  for (const auto& [unit, size] : kUnits) {
    if (bytes >= size && bytes % size == 0) return std::to_string(bytes / size) + std::string(unit);
  }
  return std::to_string(bytes);
}

Result<uint64_t> SizeField(const Field& field, uint64_t min) {
  if (!field.node.IsScalar()) {
    return field.Error("must be a size such as \"256MiB\" or a number of bytes, got " +
                       Describe(field.node));
  }
  Result<uint64_t> size = ParseSize(field.node.Scalar());
  if (!size.ok()) return field.Error(size.status().message());
  if (*size < min) {
    return field.Error("must be at least " + FormatSize(min) + ", got " +
                       Quote(field.node.Scalar()));
  }
  return *size;
}

// 0 (or "unlimited") or a rate ParseRate accepts.
Result<uint64_t> BandwidthField(const Field& field) {
  if (!field.node.IsScalar()) {
    return field.Error("must be a rate such as \"2MiB/s\", or 0 for unlimited, got " +
                       Describe(field.node));
  }
  const std::string& s = field.node.Scalar();
  if (s == "0" || s == "unlimited") return uint64_t{0};
  Result<uint64_t> rate = mirror::ParseRate(s);
  if (!rate.ok()) {
    return field.Error(rate.status().message() + " (0 or \"unlimited\": no limit)");
  }
  return *rate;
}

std::string FormatMillis(int64_t ms) {
  if (ms % 1000 == 0) return mirror::FormatDuration(ms / 1000);
  return std::to_string(ms) + "ms";
}

// ParseDuration's durations ("30s", "1h30m"), in seconds, within [min, max].
Result<int64_t> DurationSeconds(const Field& field, int64_t min, int64_t max) {
  if (!field.node.IsScalar()) {
    return field.Error("must be a duration such as \"30s\" or \"1h30m\", got " +
                       Describe(field.node));
  }
  Result<int64_t> d = mirror::ParseDuration(field.node.Scalar());
  if (!d.ok()) return field.Error(d.status().message());
  if (*d < min || *d > max) {
    return field.Error("must be from " + mirror::FormatDuration(min) + " to " +
                       mirror::FormatDuration(max) + ", got " + Quote(field.node.Scalar()));
  }
  return *d;
}

// ParseDuration's durations, or a whole number of milliseconds ("500ms"):
// backoffs start below a second.
Result<int64_t> DurationMillis(const Field& field, int64_t min_ms, int64_t max_ms) {
  if (!field.node.IsScalar()) {
    return field.Error("must be a duration such as \"500ms\", \"1s\" or \"5m\", got " +
                       Describe(field.node));
  }
  const std::string& s = field.node.Scalar();
  int64_t ms = 0;
  if (s.size() > 2 && s.size() <= 12 && s.compare(s.size() - 2, 2, "ms") == 0 &&
      std::all_of(s.begin(), s.end() - 2, IsDigit)) {
    ms = std::stoll(s.substr(0, s.size() - 2));
  } else {
    Result<int64_t> d = mirror::ParseDuration(s);
    if (!d.ok()) return field.Error(d.status().message() + " (or milliseconds: \"500ms\")");
    ms = *d * 1000;
  }
  if (ms < min_ms || ms > max_ms) {
    return field.Error("must be from " + FormatMillis(min_ms) + " to " + FormatMillis(max_ms) +
                       ", got " + Quote(s));
  }
  return ms;
}

Result<std::map<std::string, std::string>> Labels(const Field& field) {
  return mirror::yaml_fields::Labels(field, kMaxLabels);
}

// --- sections ---

Result<HubEndpoint> ParseHub(const Field& field) {
  ASSIGN_OR_RETURN(Mapping m, Mapping::Open(field, {"name", "url", "fingerprint"}));
  HubEndpoint hub;
  ASSIGN_OR_RETURN(const Field* name, m.Require("name", "the hub's name, as policies name it"));
  ASSIGN_OR_RETURN(hub.name, Name(*name));
  ASSIGN_OR_RETURN(const Field* url, m.Require("url", "the hub's link URL, ws://host[:port]"));
  ASSIGN_OR_RETURN(hub.url, NonEmptyString(*url));
  // ParseUrl takes the host as it comes; a space, a control character or a
  // non-ASCII byte would only fail later, at connect time, with a resolver's
  // message (and ParseUrl's messages quote the URL as it is).
  if (std::any_of(hub.url.begin(), hub.url.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f;
      })) {
    return url->Error("must not contain spaces or control characters and must be ASCII, got " +
                      Quote(hub.url));
  }
  Result<mirror::transport::LinkUrl> parsed = mirror::transport::LinkClient::ParseUrl(hub.url);
  if (!parsed.ok()) return url->Error(parsed.status().message());
  if (const Field* fingerprint = m.Get("fingerprint")) {
    ASSIGN_OR_RETURN(std::string text, ConfigString(*fingerprint));
    // Empty: not pinned yet (`enroll` saves it).
    if (!text.empty()) {
      Result<mirror::FingerprintDigest> digest = mirror::ParseFingerprint(text);
      if (!digest.ok()) return fingerprint->Error(digest.status().message());
      hub.fingerprint = mirror::FormatFingerprint(*digest);
    }
  }
  return hub;
}

Result<Hook> ParseHook(const Field& field) {
  ASSIGN_OR_RETURN(Mapping m, Mapping::Open(field, {"command", "timeout"}));
  Hook hook;
  ASSIGN_OR_RETURN(const Field* command,
                   m.Require("command", "the program and its arguments, a list"));
  ASSIGN_OR_RETURN(std::vector<Field> argv,
                   List(*command, 1, kMaxHookArguments, "program arguments"));
  for (size_t i = 0; i < argv.size(); ++i) {
    if (i == 0) {
      // Run without a shell and without PATH lookup: the program is named.
      ASSIGN_OR_RETURN(std::string program, ConfigString(argv[0]));
      if (program.empty() || program.front() != '/') {
        return argv[0].Error(
            "must be the program's absolute path (hooks run without a shell), got " +
            Quote(program));
      }
      hook.command.push_back(std::move(program));
    } else {
      ASSIGN_OR_RETURN(std::string arg, ConfigString(argv[i]));
      hook.command.push_back(std::move(arg));
    }
  }
  if (const Field* timeout = m.Get("timeout")) {
    ASSIGN_OR_RETURN(const int64_t seconds,
                     DurationSeconds(*timeout, kMinHookTimeoutSeconds, kMaxHookTimeoutSeconds));
    hook.timeout = std::chrono::seconds(seconds);
  }
  return hook;
}

constexpr uint64_t kMinChunkSize = 4 << 10;
constexpr uint64_t kMaxChunkSize = 1 << 20;

Result<DatasetConfig> ParseDataset(const Field& field) {
  ASSIGN_OR_RETURN(Mapping m, Mapping::Open(field, {"name", "kind", "path", "exclude", "chunkSize",
                                                    "delta", "preHook", "postHook"}));
  DatasetConfig d;
  ASSIGN_OR_RETURN(const Field* name, m.Require("name", "the dataset's name, as policies name it"));
  ASSIGN_OR_RETURN(d.name, Name(*name));
  if (const Field* kind = m.Get("kind")) {
    ASSIGN_OR_RETURN(d.kind, ConfigString(*kind));
    if (d.kind == "stream" || d.kind == "table") {
      return kind->Error(Quote(d.kind) +
                         " is not supported yet (a later release adds streams and tables)");
    }
    if (d.kind != "volume") return kind->Error("must be \"volume\", got " + Quote(d.kind));
  }
  ASSIGN_OR_RETURN(const Field* path, m.Require("path", "the directory to capture, absolute"));
  ASSIGN_OR_RETURN(d.path, AbsolutePath(*path));
  if (const Field* exclude = m.Get("exclude")) {
    ASSIGN_OR_RETURN(std::vector<Field> patterns, List(*exclude, 0, kMaxExcludes, "glob patterns"));
    for (const Field& pattern : patterns) {
      ASSIGN_OR_RETURN(std::string p, NonEmptyString(pattern));
      d.excludes.push_back(std::move(p));
    }
  }
  if (const Field* chunk = m.Get("chunkSize")) {
    ASSIGN_OR_RETURN(uint64_t avg, SizeField(*chunk, kMinChunkSize));
    if (avg > kMaxChunkSize || (avg & (avg - 1)) != 0) {
      return chunk->Error("must be a power of two from 4KiB to 1MiB, got " + std::to_string(avg));
    }
    d.chunk_avg_bytes = static_cast<uint32_t>(avg);
  }
  if (const Field* delta = m.Get("delta")) {
    ASSIGN_OR_RETURN(std::string v, ConfigString(*delta));
    if (v != "true" && v != "false") return delta->Error("must be true or false, got " + Quote(v));
    d.delta = v == "true";
  }
  if (const Field* hook = m.Get("preHook")) {
    ASSIGN_OR_RETURN(d.pre_hook, ParseHook(*hook));
  }
  if (const Field* hook = m.Get("postHook")) {
    ASSIGN_OR_RETURN(d.post_hook, ParseHook(*hook));
  }
  return d;
}

Result<StreamConfig> ParseStream(const Field& field) {
  ASSIGN_OR_RETURN(Mapping m, Mapping::Open(field, {"name", "fsync", "maxRecordSize", "segmentSize",
                                                    "retention"}));
  StreamConfig st;
  ASSIGN_OR_RETURN(const Field* name, m.Require("name", "the stream's name"));
  ASSIGN_OR_RETURN(st.name, Name(*name));
  if (const Field* fsync = m.Get("fsync")) {
    if (fsync->node.IsScalar() && fsync->node.Scalar() == "batch") {
      st.fsync_every_batch = true;
    } else {
      Result<int64_t> ms = DurationMillis(*fsync, kMinFsyncIntervalMs, kMaxFsyncIntervalMs);
      if (!ms.ok()) {
        return fsync->Error(
            "must be \"batch\" (every append fsync'd before it is answered) or "
            "an interval from 10ms to 10s, got " +
            Describe(fsync->node));
      }
      st.fsync_every_batch = false;
      st.fsync_interval_ms = static_cast<uint32_t>(*ms);
    }
  }
  if (const Field* max = m.Get("maxRecordSize")) {
    ASSIGN_OR_RETURN(uint64_t bytes, SizeField(*max, 1));
    if (bytes > kMaxStreamRecordBytes) {
      return max->Error("must be at most 4MiB (a record travels in one link frame), got " +
                        Quote(max->node.Scalar()));
    }
    st.max_record_bytes = static_cast<uint32_t>(bytes);
  }
  if (const Field* seg = m.Get("segmentSize")) {
    ASSIGN_OR_RETURN(st.segment_bytes, SizeField(*seg, kMinSegmentBytes));
    if (st.segment_bytes > kMaxSegmentBytes) {
      return seg->Error("must be at most 1GiB, got " + Quote(seg->node.Scalar()));
    }
  }
  if (const Field* retention = m.Get("retention")) {
    ASSIGN_OR_RETURN(Mapping r, Mapping::Open(*retention, {"age", "size"}));
    if (const Field* age = r.Get("age")) {
      ASSIGN_OR_RETURN(int64_t secs, DurationSeconds(*age, 1, kMaxRetentionAgeSeconds));
      st.retention_age = std::chrono::seconds(secs);
    }
    if (const Field* size = r.Get("size")) {
      ASSIGN_OR_RETURN(st.retention_bytes, SizeField(*size, 1));
    }
  }
  return st;
}

Result<KeysetConfig> ParseKeyset(const Field& field) {
  ASSIGN_OR_RETURN(Mapping m, Mapping::Open(field, {"file", "passphraseFile", "passphraseEnv"}));
  KeysetConfig k;
  ASSIGN_OR_RETURN(const Field* file,
                   m.Require("file", "the agent key file or tenant keyset, absolute"));
  ASSIGN_OR_RETURN(k.file, AbsolutePath(*file));
  const Field* passphrase_file = m.Get("passphraseFile");
  const Field* passphrase_env = m.Get("passphraseEnv");
  if (passphrase_file != nullptr && passphrase_env != nullptr) {
    return passphrase_env->Error("give passphraseFile or passphraseEnv, not both");
  }
  if (passphrase_file != nullptr) {
    ASSIGN_OR_RETURN(k.passphrase_file, AbsolutePath(*passphrase_file));
  }
  if (passphrase_env != nullptr) {
    ASSIGN_OR_RETURN(k.passphrase_env, ConfigString(*passphrase_env));
    const std::string& e = k.passphrase_env;
    const bool ok = !e.empty() && e.size() <= kMaxEnvNameLength && !IsDigit(e.front()) &&
                    std::all_of(e.begin(), e.end(), [](char c) { return IsAlnum(c) || c == '_'; });
    if (!ok) {
      return passphrase_env->Error(
          "must be an environment variable's name (letters, digits and '_', not starting with a "
          "digit), got " +
          Quote(e));
    }
  }
  return k;
}

Result<Limits> ParseLimits(const Field& field) {
  ASSIGN_OR_RETURN(Mapping m,
                   Mapping::Open(field, {"memory", "workers", "outboxQuota", "bandwidth"}));
  Limits limits;
  if (const Field* memory = m.Get("memory")) {
    ASSIGN_OR_RETURN(limits.memory_bytes, SizeField(*memory, kMinMemoryBytes));
  }
  if (const Field* workers = m.Get("workers")) {
    ASSIGN_OR_RETURN(const uint64_t n, Integer(*workers, 1, kMaxWorkers));
    limits.workers = static_cast<size_t>(n);
  }
  if (const Field* quota = m.Get("outboxQuota")) {
    ASSIGN_OR_RETURN(limits.outbox_quota_bytes, SizeField(*quota, kMinOutboxQuotaBytes));
  }
  if (const Field* bandwidth = m.Get("bandwidth")) {
    ASSIGN_OR_RETURN(limits.bandwidth_bytes_per_second, BandwidthField(*bandwidth));
  }
  return limits;
}

// "127.0.0.1:7071", "[::1]:7071", "localhost:7071" -> address and port.
Status ParseListen(const Field& field, ApiConfig* api) {
  ASSIGN_OR_RETURN(const std::string listen, ConfigString(field));
  const std::string usage =
      "must be HOST:PORT on a loopback address (\"127.0.0.1:7071\", \"[::1]:7071\" or "
      "\"localhost:7071\"), got " +
      Quote(listen);
  std::string host;
  std::string_view port_text;
  if (!listen.empty() && listen.front() == '[') {
    const size_t close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      return field.Error(usage);
    }
    host = listen.substr(1, close - 1);
    port_text = std::string_view(listen).substr(close + 2);
  } else {
    const size_t colon = listen.rfind(':');
    if (colon == std::string::npos) return field.Error(usage);
    host = listen.substr(0, colon);
    if (host.find(':') != std::string::npos) {
      return field.Error("an IPv6 address goes in brackets (\"[::1]:7071\"), got " + Quote(listen));
    }
    port_text = std::string_view(listen).substr(colon + 1);
  }
  if (port_text.empty() || port_text.size() > 5 ||
      !std::all_of(port_text.begin(), port_text.end(), IsDigit) ||
      std::stoul(std::string(port_text)) > 65535) {
    return field.Error("port must be 0..65535 (0: any free port), got " + Quote(listen));
  }
  // The local API controls the agent: it is reachable from this host only.
  std::string address;
  in_addr v4{};
  in6_addr v6{};
  if (host == "localhost") {
    // Pinned to the IPv4 loopback rather than resolved: /etc/hosts could
    // say otherwise.
    address = "127.0.0.1";
  } else if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    if ((ntohl(v4.s_addr) >> 24) == 127) address = host;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (std::memcmp(&v6, &in6addr_loopback, sizeof v6) == 0) address = "::1";
  }
  if (address.empty()) {
    return field.Error(
        "must be a loopback address (127.0.0.0/8, [::1] or localhost): the local API is for "
        "this host only; got " +
        Quote(listen));
  }
  api->address = std::move(address);
  api->port = static_cast<uint16_t>(std::stoul(std::string(port_text)));
  return OkStatus();
}

Result<ApiConfig> ParseApi(const Field& field) {
  ASSIGN_OR_RETURN(Mapping m, Mapping::Open(field, {"listen", "unixSocket"}));
  ApiConfig api;
  const Field* listen = m.Get("listen");
  const Field* unix_socket = m.Get("unixSocket");
  if (listen != nullptr && unix_socket != nullptr) {
    return unix_socket->Error("give listen or unixSocket, not both");
  }
  if (listen != nullptr) RETURN_IF_ERROR(ParseListen(*listen, &api));
  if (unix_socket != nullptr) {
    ASSIGN_OR_RETURN(api.unix_socket, AbsolutePath(*unix_socket, kMaxUnixSocketPath));
  }
  return api;
}

Result<ReplicationConfig> ParseReplication(const Field& field) {
  ASSIGN_OR_RETURN(Mapping m,
                   Mapping::Open(field, {"failoverAfter", "backoffInitial", "backoffMax"}));
  ReplicationConfig r;
  if (const Field* failover = m.Get("failoverAfter")) {
    ASSIGN_OR_RETURN(const int64_t s, DurationSeconds(*failover, kMinFailoverAfterSeconds,
                                                      mirror::kMaxDurationSeconds));
    r.failover_after = std::chrono::seconds(s);
  }
  if (const Field* initial = m.Get("backoffInitial")) {
    ASSIGN_OR_RETURN(const int64_t ms,
                     DurationMillis(*initial, kMinBackoffMs, kMaxBackoffInitialMs));
    r.backoff_initial = std::chrono::milliseconds(ms);
  }
  if (const Field* max = m.Get("backoffMax")) {
    ASSIGN_OR_RETURN(const int64_t ms, DurationMillis(*max, kMinBackoffMs, kMaxBackoffMaxMs));
    r.backoff_max = std::chrono::milliseconds(ms);
  }
  if (r.backoff_max < r.backoff_initial) {
    const Field* at =
        m.Get("backoffMax") != nullptr ? m.Get("backoffMax") : m.Get("backoffInitial");
    return at->Error("backoffMax (" + FormatMillis(r.backoff_max.count()) +
                     ") must be at least backoffInitial (" +
                     FormatMillis(r.backoff_initial.count()) + ")");
  }
  return r;
}

// --- inline policies ---

// Writes `node` as block YAML for mirror::ParseMirrorPolicy. Not
// `emitter << node`: that drops the quotes of a quoted scalar ("4" would
// turn into the number 4), so the policy parser would accept here what it
// refuses in a policy file.
Status EmitNode(const YAML::Node& node, const Field& policy, YAML::Emitter& out, size_t* budget) {
  if (*budget == 0 || out.size() > mirror::kMaxPolicyBytes) {
    return policy.Error("too large once its aliases are expanded (more than " +
                        std::to_string(kMaxPolicyNodes) + " nodes or " +
                        std::to_string(mirror::kMaxPolicyBytes) + " bytes)");
  }
  --*budget;
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      if (node.Tag() == "!") {
        out << YAML::DoubleQuoted << node.Scalar();
      } else {
        if (!node.Tag().empty() && node.Tag() != "?") out << YAML::VerbatimTag(node.Tag());
        out << node.Scalar();
      }
      break;
    case YAML::NodeType::Sequence:
      out << YAML::BeginSeq;
      for (auto it = node.begin(); it != node.end(); ++it) {
        RETURN_IF_ERROR(EmitNode(*it, policy, out, budget));
      }
      out << YAML::EndSeq;
      break;
    case YAML::NodeType::Map:
      out << YAML::BeginMap;
      for (auto it = node.begin(); it != node.end(); ++it) {
        const YAML::Node key = it->first;
        if (!key.IsScalar()) {
          return FieldError(policy.path, key.Mark(), "keys must be strings");
        }
        out << YAML::Key;
        RETURN_IF_ERROR(EmitNode(key, policy, out, budget));
        out << YAML::Value;
        RETURN_IF_ERROR(EmitNode(it->second, policy, out, budget));
      }
      out << YAML::EndMap;
      break;
    default:
      out << YAML::Null;
      break;
  }
  return OkStatus();
}

// The mark in `original` of the node found at (line, column) of `emitted`
// (the same tree, emitted and read back).
std::optional<YAML::Mark> OriginalMark(const YAML::Node& emitted, const YAML::Node& original,
                                       int line, int column) {
  const YAML::Mark m = emitted.Mark();
  if (m.line == line && m.column == column) return original.Mark();
  if (emitted.IsSequence() && original.IsSequence() && emitted.size() == original.size()) {
    for (size_t i = 0; i < emitted.size(); ++i) {
      if (auto found = OriginalMark(emitted[i], original[i], line, column)) return found;
    }
  } else if (emitted.IsMap() && original.IsMap() && emitted.size() == original.size()) {
    auto e = emitted.begin();
    auto o = original.begin();
    for (; e != emitted.end() && o != original.end(); ++e, ++o) {
      const YAML::Node emitted_key = e->first;
      const YAML::Node original_key = o->first;
      if (auto found = OriginalMark(emitted_key, original_key, line, column)) return found;
      const YAML::Node emitted_value = e->second;
      const YAML::Node original_value = o->second;
      if (auto found = OriginalMark(emitted_value, original_value, line, column)) return found;
    }
  }
  return std::nullopt;
}

// A policy parser message ("spec.rpo: ... (line 3, column 8)", lines of the
// emitted text) as a message about the config file: the key path under
// policies[i] and the line and column in the file.
std::string PolicyMessage(const std::string& message, const Field& policy,
                          const std::string& emitted) {
  std::string text = message;
  YAML::Mark mark = policy.mark;
  // Strip the trailing " (line L, column C)" and find that node in the file.
  const size_t open = text.rfind(" (line ");
  int line = 0;
  int column = 0;
  if (open != std::string::npos && text.back() == ')' &&
      std::sscanf(text.c_str() + open, " (line %d, column %d)", &line, &column) == 2) {
    text.erase(open);
    try {
      const YAML::Node reread = YAML::Load(emitted);
      if (auto found = OriginalMark(reread, policy.node, line - 1, column - 1)) mark = *found;
    } catch (const YAML::Exception&) {
      // Keep the policy's own line.
    }
  }
  // "spec.targets[0].hub: ..." joins the path; "document: ..." and other
  // messages that name no key go after "policies[i]: ".
  static constexpr std::string_view kTopKeys[] = {"apiVersion", "kind", "metadata", "spec"};
  for (std::string_view key : kTopKeys) {
    if (text.compare(0, key.size(), key) == 0 && text.size() > key.size() &&
        (text[key.size()] == '.' || text[key.size()] == '[' || text[key.size()] == ':')) {
      return policy.path + "." + text + Where(mark);
    }
  }
  if (text.compare(0, 10, "document: ") == 0) text.erase(0, 10);
  return policy.path + ": " + text + Where(mark);
}

// Looks a key up without yaml-cpp's operator[] (which may insert).
YAML::Node Get(const YAML::Node& map, std::string_view key) {
  if (map.IsMap()) {
    for (auto it = map.begin(); it != map.end(); ++it) {
      if (it->first.IsScalar() && it->first.Scalar() == key) return it->second;
    }
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

Result<mirror::MirrorPolicy> ParsePolicy(const Field& field) {
  if (!field.node.IsMap()) {
    return field.Error(
        "must be a MirrorPolicy document (a mapping: apiVersion, kind, metadata, spec), got " +
        Describe(field.node));
  }
  YAML::Emitter out;
  size_t budget = kMaxPolicyNodes;
  RETURN_IF_ERROR(EmitNode(field.node, field, out, &budget));
  if (!out.good()) return field.Error("cannot be written back as YAML: " + out.GetLastError());
  const std::string emitted(out.c_str(), out.size());
  Result<mirror::MirrorPolicy> policy = mirror::ParseMirrorPolicy(emitted);
  if (!policy.ok()) {
    return InvalidArgumentError(PolicyMessage(policy.status().message(), field, emitted));
  }
  return policy;
}

// Every hub and dataset a policy names must be configured here.
Status CheckPolicyReferences(const mirror::MirrorPolicy& policy, const Field& field,
                             const AgentConfig& config) {
  const YAML::Node spec = Get(field.node, "spec");
  const YAML::Node datasets = Get(spec, "datasets");
  for (size_t i = 0; i < policy.datasets.size(); ++i) {
    if (config.FindDataset(policy.datasets[i]) != nullptr) continue;
    if (config.FindStream(policy.datasets[i]) != nullptr) continue;
    const YAML::Node item = datasets.IsSequence() && i < datasets.size() ? datasets[i] : spec;
    return FieldError(Index(field.path + ".spec.datasets", i), item.Mark(),
                      "no dataset named " + Quote(policy.datasets[i]) + " in datasets or streams");
  }
  const YAML::Node targets = Get(spec, "targets");
  for (size_t i = 0; i < policy.targets.size(); ++i) {
    if (config.FindHub(policy.targets[i]) != nullptr) continue;
    YAML::Node at = spec;
    if (targets.IsSequence() && i < targets.size()) {
      const YAML::Node hub = Get(targets[i], "hub");
      at = hub.IsDefined() ? hub : targets[i];
    }
    return FieldError(Index(field.path + ".spec.targets", i) + ".hub", at.Mark(),
                      "no hub named " + Quote(policy.targets[i]) + " in hubs");
  }
  return OkStatus();
}

// --- the document ---

Result<AgentConfig> ParseDocument(const YAML::Node& root) {
  AgentConfig c;
  if (!root.IsDefined() || root.IsNull()) {
    return InvalidArgumentError(
        "document: empty; an agent config needs at least agent.name, stateDir and keyset.file");
  }
  ASSIGN_OR_RETURN(Mapping doc,
                   Mapping::Open(Field{root, "", root.Mark(), kNoun},
                                 {"agent", "stateDir", "hubs", "datasets", "streams", "keyset",
                                  "limits", "api", "replication", "policies"}));

  ASSIGN_OR_RETURN(const Field* agent_field, doc.Require("agent", "{name: ..., labels: {...}}"));
  ASSIGN_OR_RETURN(Mapping agent, Mapping::Open(*agent_field, {"name", "labels"}));
  ASSIGN_OR_RETURN(const Field* name, agent.Require("name", "this agent's name"));
  ASSIGN_OR_RETURN(c.name, Name(*name));
  if (const Field* labels = agent.Get("labels")) {
    ASSIGN_OR_RETURN(c.labels, Labels(*labels));
  }

  ASSIGN_OR_RETURN(const Field* state_dir,
                   doc.Require("stateDir", "the agent's state directory, absolute"));
  ASSIGN_OR_RETURN(c.state_dir, AbsolutePath(*state_dir));

  if (const Field* hubs = doc.Get("hubs")) {
    ASSIGN_OR_RETURN(std::vector<Field> items, List(*hubs, 0, kMaxHubs, "hubs"));
    for (const Field& item : items) {
      ASSIGN_OR_RETURN(HubEndpoint hub, ParseHub(item));
      if (c.FindHub(hub.name) != nullptr) {
        const YAML::Node n = Get(item.node, "name");
        return FieldError(item.path + ".name", n.Mark(),
                          "hub " + Quote(hub.name) + " is configured twice");
      }
      c.hubs.push_back(std::move(hub));
    }
  }

  if (const Field* datasets = doc.Get("datasets")) {
    ASSIGN_OR_RETURN(std::vector<Field> items, List(*datasets, 0, kMaxDatasets, "datasets"));
    for (const Field& item : items) {
      ASSIGN_OR_RETURN(DatasetConfig dataset, ParseDataset(item));
      if (c.FindDataset(dataset.name) != nullptr) {
        const YAML::Node n = Get(item.node, "name");
        return FieldError(item.path + ".name", n.Mark(),
                          "dataset " + Quote(dataset.name) + " is configured twice");
      }
      c.datasets.push_back(std::move(dataset));
    }
  }

  if (const Field* streams = doc.Get("streams")) {
    ASSIGN_OR_RETURN(std::vector<Field> items, List(*streams, 0, kMaxStreams, "streams"));
    for (const Field& item : items) {
      ASSIGN_OR_RETURN(StreamConfig stream, ParseStream(item));
      const YAML::Node n = Get(item.node, "name");
      if (c.FindStream(stream.name) != nullptr) {
        return FieldError(item.path + ".name", n.Mark(),
                          "stream " + Quote(stream.name) + " is configured twice");
      }
      if (c.FindDataset(stream.name) != nullptr) {
        return FieldError(
            item.path + ".name", n.Mark(),
            Quote(stream.name) + " is already a dataset's name; streams and datasets share names");
      }
      c.streams.push_back(std::move(stream));
    }
  }

  ASSIGN_OR_RETURN(const Field* keyset, doc.Require("keyset", "{file: /etc/ferry/agent.key}"));
  ASSIGN_OR_RETURN(c.keyset, ParseKeyset(*keyset));

  if (const Field* limits = doc.Get("limits")) {
    ASSIGN_OR_RETURN(c.limits, ParseLimits(*limits));
  }
  if (const Field* api = doc.Get("api")) {
    ASSIGN_OR_RETURN(c.api, ParseApi(*api));
  }
  if (const Field* replication = doc.Get("replication")) {
    ASSIGN_OR_RETURN(c.replication, ParseReplication(*replication));
  }

  if (const Field* policies = doc.Get("policies")) {
    ASSIGN_OR_RETURN(std::vector<Field> items,
                     List(*policies, 0, kMaxPolicies, "MirrorPolicy documents"));
    for (const Field& item : items) {
      ASSIGN_OR_RETURN(mirror::MirrorPolicy policy, ParsePolicy(item));
      for (const mirror::MirrorPolicy& other : c.policies) {
        if (other.name != policy.name) continue;
        const YAML::Node n = Get(Get(item.node, "metadata"), "name");
        return FieldError(item.path + ".metadata.name", n.IsDefined() ? n.Mark() : item.mark,
                          "policy " + Quote(policy.name) + " is defined twice");
      }
      RETURN_IF_ERROR(CheckPolicyReferences(policy, item, c));
      c.policies.push_back(std::move(policy));
    }
  }
  return c;
}

Result<AgentConfig> Parse(std::string_view yaml) {
  if (yaml.size() > kMaxConfigBytes) {
    return InvalidArgumentError("document: " + std::to_string(yaml.size()) +
                                " bytes; an agent config is at most " +
                                std::to_string(kMaxConfigBytes) + " bytes (1 MiB)");
  }
  ASSIGN_OR_RETURN(mirror::yaml_fields::LoadedDocument loaded,
                   mirror::yaml_fields::LoadDocument(yaml));
  if (loaded.documents > 1) {
    return FieldError("document", loaded.second_start,
                      "more than one YAML document (a \"---\" separator?); an agent config is one");
  }
  const YAML::Node& root = loaded.root;
  try {
    return ParseDocument(root);
  } catch (const YAML::Exception& e) {
    // Not expected: every node is type-checked before it is read.
    return InvalidArgumentError("document: " + e.msg + Where(e.mark));
  }
}

}  // namespace

const HubEndpoint* AgentConfig::FindHub(std::string_view hub_name) const {
  for (const HubEndpoint& hub : hubs) {
    if (hub.name == hub_name) return &hub;
  }
  return nullptr;
}

const StreamConfig* AgentConfig::FindStream(std::string_view stream_name) const {
  for (const StreamConfig& s : streams) {
    if (s.name == stream_name) return &s;
  }
  return nullptr;
}

const DatasetConfig* AgentConfig::FindDataset(std::string_view dataset_name) const {
  for (const DatasetConfig& dataset : datasets) {
    if (dataset.name == dataset_name) return &dataset;
  }
  return nullptr;
}

Result<AgentConfig> ParseAgentConfig(std::string_view yaml, std::string_view origin) {
  Result<AgentConfig> config = Parse(yaml);
  if (!config.ok()) {
    if (origin.empty()) return config.status();
    return config.status().WithContext(origin);
  }
  config->origin = std::string(origin);
  return config;
}

Result<AgentConfig> LoadAgentConfig(const std::string& path) {
  Env* env = Env::Default();
  Result<Bytes> data = env->ReadFile(path, kMaxConfigBytes);
  if (!data.ok()) {
    if (data.status().code() == StatusCode::kResourceExhausted) {
      // A config file is input like any other: too large is invalid.
      Result<uint64_t> size = env->FileSize(path);
      return InvalidArgumentError(path + ": " + (size.ok() ? std::to_string(*size) : "more than") +
                                  " bytes; an agent config is at most " +
                                  std::to_string(kMaxConfigBytes) + " bytes (1 MiB)");
    }
    return data.status().WithContext("agent config");
  }
  return ParseAgentConfig(
      std::string_view(reinterpret_cast<const char*>(data->data()), data->size()), path);
}

Result<uint64_t> ParseSize(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("size " + Quote(text) + ": " + std::string(why));
  };
  static constexpr std::pair<std::string_view, uint64_t> kUnits[] = {
      {"B", 1},
      {"KB", 1000},
      {"kB", 1000},
      {"MB", 1000 * 1000},
      {"GB", 1000 * 1000 * 1000},
      {"TB", uint64_t{1000} * 1000 * 1000 * 1000},
      {"KiB", uint64_t{1} << 10},
      {"MiB", uint64_t{1} << 20},
      {"GiB", uint64_t{1} << 30},
      {"TiB", uint64_t{1} << 40},
  };
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  size_t i = 0;
  uint64_t whole = 0;
  while (i < text.size() && IsDigit(text[i])) {
    const auto digit = static_cast<uint64_t>(text[i] - '0');
    if (whole > (kMax - digit) / 10) return bad("too large");
    whole = whole * 10 + digit;
    ++i;
  }
  if (i == 0) return bad("give a number of bytes with an optional unit: \"256MiB\", \"10GB\"");
  uint64_t fraction = 0;
  uint64_t fraction_scale = 1;
  if (i < text.size() && text[i] == '.') {
    ++i;
    const size_t start = i;
    while (i < text.size() && IsDigit(text[i])) {
      if (i - start >= 6) return bad("at most 6 decimals");
      fraction = fraction * 10 + static_cast<uint64_t>(text[i] - '0');
      fraction_scale *= 10;
      ++i;
    }
    if (i == start) return bad("a decimal point needs digits after it");
  }
  while (i < text.size() && text[i] == ' ') ++i;
  const std::string_view unit = text.substr(i);
  if (unit.empty()) {
    if (fraction_scale != 1) {
      return bad("a plain number is whole bytes; use a unit for a decimal (\"1.5GiB\")");
    }
    return whole;
  }
  uint64_t multiplier = 0;
  for (const auto& [name, m] : kUnits) {
    if (name == unit) multiplier = m;
  }
  if (multiplier == 0) {
    return bad("unknown unit " + Quote(unit) +
               "; use B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)");
  }
  if (whole > kMax / multiplier) return bad("too large");
  const uint64_t value = whole * multiplier;
  // fraction < 10^6 and multiplier <= 2^40: the product fits.
  const uint64_t part = fraction * multiplier / fraction_scale;
  if (value > kMax - part) return bad("too large");
  return value + part;
}

}  // namespace ferry::agent
