// Tests of edge-agent/agent_config.cc: ferry-agent's config file, its
// defaults and its errors (each names its key and line), sizes, the sample
// configs/agent.yaml and the systemd unit that runs the agent with it.
#include "edge-agent/agent_config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/testing/test_util.h"

namespace ferry::agent {
namespace {

using ::ferry::testing::ReadFileOrDie;
using ::ferry::testing::TempDir;
using ::ferry::testing::WriteFileOrDie;

// The repository root: $FERRY_SOURCE_DIR (set by CTest), or two levels above
// this file when it is not set.
std::string SourceDir() {
  const char* src = std::getenv("FERRY_SOURCE_DIR");
  if (src != nullptr && *src != '\0') return src;
  const std::string here = __FILE__;  // tests/edge-agent/agent_config_test.cc
  return here.substr(0, here.rfind('/')) + "/../..";
}

std::string ReadText(const std::string& path) {
  const Bytes data = ReadFileOrDie(path);
  return std::string(data.begin(), data.end());
}

void WriteText(const std::string& path, const std::string& text) {
  WriteFileOrDie(path, ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

// `text` with the first `from` replaced by `to`; "" appends `to`.
std::string Replace(std::string text, const std::string& from, const std::string& to) {
  if (from.empty()) return text + to;
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

constexpr const char* kMinimal = R"(agent: {name: shop-1}
stateDir: /var/lib/ferry-agent
keyset: {file: /etc/ferry/agent.key}
)";

// Line numbers matter: the header's example error is about line 12.
constexpr const char* kBase = R"(agent:
  name: shop-1
  labels: {site: shop}
stateDir: /var/lib/ferry-agent
hubs:
  - {name: cloud-east, url: "ws://127.0.0.1:7070"}
  - {name: onprem-dc, url: "ws://[::1]:7080/v1/link"}
datasets:
  - name: events
    path: /srv/events
  - name: videos
    path: /srv/videos
    exclude: ["*.tmp", "cache/"]
keyset: {file: /etc/ferry/agent.key}
policies:
  - apiVersion: ferry/v1
    kind: MirrorPolicy
    metadata: {name: hourly}
    spec:
      datasets: [videos]
      schedule: {every: 1h}
      targets: [{hub: cloud-east}, {hub: onprem-dc}]
)";

// Parts of kBase, to replace whole.
constexpr const char* kHubsBlock = R"(hubs:
  - {name: cloud-east, url: "ws://127.0.0.1:7070"}
  - {name: onprem-dc, url: "ws://[::1]:7080/v1/link"}
)";
constexpr const char* kPoliciesBlock = R"(policies:
  - apiVersion: ferry/v1
    kind: MirrorPolicy
    metadata: {name: hourly}
    spec:
      datasets: [videos]
      schedule: {every: 1h}
      targets: [{hub: cloud-east}, {hub: onprem-dc}]
)";

std::string ErrorOf(const std::string& yaml) {
  Result<AgentConfig> c = ParseAgentConfig(yaml, "");
  if (c.ok()) return "(parsed)";
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << c.status().ToString();
  return c.status().message();
}

TEST(AgentConfigTest, SampleConfigParses) {
  const std::string path = SourceDir() + "/configs/agent.yaml";
  Result<AgentConfig> c = LoadAgentConfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->origin, path);
  EXPECT_EQ(c->name, "shop-1");
  EXPECT_EQ(c->state_dir, "/var/lib/ferry-agent");
  ASSERT_EQ(c->hubs.size(), 1u);
  EXPECT_EQ(c->hubs[0].url, "ws://127.0.0.1:7070");
  EXPECT_EQ(c->hubs[0].fingerprint, "");  // a placeholder, commented out
  ASSERT_EQ(c->datasets.size(), 2u);
  for (const DatasetConfig& d : c->datasets) {
    EXPECT_EQ(d.path.rfind("/srv/", 0), 0u) << d.path;
  }
  ASSERT_EQ(c->policies.size(), 1u);
  EXPECT_EQ(c->policies[0].tenant, "");
}

TEST(AgentConfigTest, StreamsAreParsedWithTheirDefaults) {
  Result<AgentConfig> c = ParseAgentConfig(
      Replace(kMinimal, "",
              "streams:\n  - {name: logs}\n  - {name: metrics, fsync: 50ms, maxRecordSize: 4KiB, "
              "segmentSize: 1MiB, retention: {age: 1d, size: 2GiB}}\n"),
      "");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->streams.size(), 2u);
  const StreamConfig defaults;
  EXPECT_TRUE(c->streams[0].fsync_every_batch);
  EXPECT_EQ(c->streams[0].max_record_bytes, defaults.max_record_bytes);
  EXPECT_EQ(c->streams[0].segment_bytes, defaults.segment_bytes);
  EXPECT_FALSE(c->streams[1].fsync_every_batch);
  EXPECT_EQ(c->streams[1].fsync_interval_ms, 50u);
  EXPECT_EQ(c->streams[1].max_record_bytes, 4096u);
  EXPECT_EQ(c->streams[1].segment_bytes, uint64_t{1} << 20);
  EXPECT_EQ(c->streams[1].retention_age, std::chrono::seconds(86400));
  EXPECT_EQ(c->streams[1].retention_bytes, uint64_t{2} << 30);
  EXPECT_NE(c->FindStream("metrics"), nullptr);
  EXPECT_EQ(c->FindStream("videos"), nullptr);
}

TEST(AgentConfigTest, BadStreamsNameTheKeyAndLine) {
  EXPECT_EQ(ErrorOf(Replace(kMinimal, "", "streams:\n  - {name: a}\n  - {name: a}\n")),
            "streams[1].name: stream \"a\" is configured twice (line 6, column 12)");
  EXPECT_EQ(ErrorOf(Replace(kBase, "keyset:", "streams: [{name: videos}]\nkeyset:")),
            "streams[0].name: \"videos\" is already a dataset's name; streams and datasets "
            "share names (line 14, column 18)");
  EXPECT_EQ(ErrorOf(Replace(kMinimal, "", "streams: [{name: a, fsync: always}]\n")),
            "streams[0].fsync: must be \"batch\" (every append fsync'd before it is answered) "
            "or an interval from 10ms to 10s, got always (line 4, column 28)");
  EXPECT_EQ(ErrorOf(Replace(kMinimal, "", "streams: [{name: a, maxRecordSize: 32MiB}]\n")),
            "streams[0].maxRecordSize: must be at most 4MiB (a record travels in one link frame), "
            "got \"32MiB\" (line 4, column 36)");
  EXPECT_EQ(ErrorOf(Replace(kMinimal, "", "streams: [{name: a, retention: {days: 1}}]\n")),
            "streams[0].retention.days: unknown key (known: age, size) (line 4, column 33)");
}

TEST(AgentConfigTest, SampleConfigSetsEveryOptionalKeyToItsDefault) {
  Result<AgentConfig> c = LoadAgentConfig(SourceDir() + "/configs/agent.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const Limits limits;
  EXPECT_EQ(c->limits.memory_bytes, limits.memory_bytes);
  EXPECT_EQ(c->limits.workers, limits.workers);
  EXPECT_EQ(c->limits.outbox_quota_bytes, limits.outbox_quota_bytes);
  EXPECT_EQ(c->limits.bandwidth_bytes_per_second, limits.bandwidth_bytes_per_second);
  const ApiConfig api;
  EXPECT_EQ(c->api.address, api.address);
  EXPECT_EQ(c->api.port, api.port);
  EXPECT_EQ(c->api.unix_socket, api.unix_socket);
  const ReplicationConfig replication;
  EXPECT_EQ(c->replication.failover_after, replication.failover_after);
  EXPECT_EQ(c->replication.backoff_initial, replication.backoff_initial);
  EXPECT_EQ(c->replication.backoff_max, replication.backoff_max);
  EXPECT_EQ(c->keyset.passphrase_file, "");
  EXPECT_EQ(c->keyset.passphrase_env, "");
}

TEST(AgentConfigTest, SampleConfigMentionsEveryKey) {
  const std::string text = ReadText(SourceDir() + "/configs/agent.yaml");
  for (const char* key : {"agent:",         "name:",
                          "labels:",        "stateDir:",
                          "hubs:",          "url:",
                          "fingerprint:",   "datasets:",
                          "kind:",          "path:",
                          "exclude:",       "preHook:",
                          "postHook:",      "command:",
                          "timeout:",       "keyset:",
                          "file:",          "passphraseFile:",
                          "passphraseEnv:", "limits:",
                          "memory:",        "workers:",
                          "outboxQuota:",   "bandwidth:",
                          "api:",           "listen:",
                          "unixSocket:",    "replication:",
                          "failoverAfter:", "backoffInitial:",
                          "backoffMax:",    "policies:",
                          "streams:",       "fsync:",
                          "maxRecordSize:", "segmentSize:",
                          "retention:",     "age:"}) {
    EXPECT_NE(text.find(key), std::string::npos) << key;
  }
}

// The unit runs the binary with the sample's installed path, and its state
// directory is the sample's stateDir.
TEST(AgentConfigTest, SystemdUnitRunsTheAgentWithTheSampleConfigAndStateDir) {
  const std::string unit = ReadText(SourceDir() + "/configs/systemd/ferry-agent.service");
  std::map<std::string, std::string> settings;  // last value of each key
  std::istringstream lines(unit);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#' || line[0] == '[') continue;
    const size_t eq = line.find('=');
    ASSERT_NE(eq, std::string::npos) << line;
    settings[line.substr(0, eq)] = line.substr(eq + 1);
  }
  EXPECT_EQ(settings["Type"], "simple");
  EXPECT_EQ(settings["ExecStart"], "/usr/local/bin/ferry-agent run --config /etc/ferry/agent.yaml");
  EXPECT_EQ(settings["Restart"], "on-failure");
  EXPECT_FALSE(settings["User"].empty());
  EXPECT_NE(settings["User"], "root");
  EXPECT_EQ(settings["NoNewPrivileges"], "yes");
  EXPECT_EQ(settings["ProtectSystem"], "strict");

  Result<AgentConfig> c = LoadAgentConfig(SourceDir() + "/configs/agent.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->state_dir, "/var/lib/" + settings["StateDirectory"]);
  EXPECT_EQ(settings["ReadWritePaths"], c->state_dir);
}

TEST(AgentConfigTest, MinimalConfigGetsTheDocumentedDefaults) {
  Result<AgentConfig> c = ParseAgentConfig(kMinimal, "agent.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->origin, "agent.yaml");
  EXPECT_EQ(c->name, "shop-1");
  EXPECT_TRUE(c->labels.empty());
  EXPECT_EQ(c->state_dir, "/var/lib/ferry-agent");
  EXPECT_TRUE(c->hubs.empty());
  EXPECT_TRUE(c->datasets.empty());
  EXPECT_EQ(c->keyset.file, "/etc/ferry/agent.key");
  EXPECT_EQ(c->keyset.passphrase_file, "");
  EXPECT_EQ(c->keyset.passphrase_env, "");
  EXPECT_EQ(c->limits.memory_bytes, uint64_t{256} << 20);
  EXPECT_EQ(c->limits.workers, 2u);
  EXPECT_EQ(c->limits.outbox_quota_bytes, uint64_t{10} << 30);
  EXPECT_EQ(c->limits.bandwidth_bytes_per_second, 0u);
  EXPECT_EQ(c->api.address, "127.0.0.1");
  EXPECT_EQ(c->api.port, 7071);
  EXPECT_EQ(c->api.unix_socket, "");
  EXPECT_EQ(c->replication.failover_after, std::chrono::seconds(600));
  EXPECT_EQ(c->replication.backoff_initial, std::chrono::milliseconds(1000));
  EXPECT_EQ(c->replication.backoff_max, std::chrono::milliseconds(300'000));
  EXPECT_TRUE(c->policies.empty());
}

TEST(AgentConfigTest, FullConfigFillsEveryField) {
  const std::string yaml = Replace(
      kBase, "", R"(limits: {memory: 1GiB, workers: 8, outboxQuota: 500MB, bandwidth: 2MiB/s}
api: {listen: "[::1]:0"}
replication: {failoverAfter: 1h, backoffInitial: 250ms, backoffMax: 10m}
)");
  const std::string with_hooks = Replace(
      Replace(yaml, "exclude: [\"*.tmp\", \"cache/\"]",
              "exclude: [\"*.tmp\", \"cache/\"]\n"
              "    preHook: {command: [/usr/local/bin/freeze, --all, \"\"], timeout: 30s}\n"
              "    postHook: {command: [/usr/local/bin/thaw]}"),
      "{file: /etc/ferry/agent.key}", "{file: /etc/ferry/keyset, passphraseEnv: FERRY_PASS}");
  const std::string pinned =
      Replace(with_hooks, "url: \"ws://127.0.0.1:7070\"}",
              "url: \"ws://127.0.0.1:7070\", fingerprint: \"FRY1:MZXW 6YTB OI5C A3DP NVSG K4TB "
              "MFZG S3LF\"}");
  Result<AgentConfig> c = ParseAgentConfig(pinned, "");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->labels, (std::map<std::string, std::string>{{"site", "shop"}}));
  ASSERT_EQ(c->hubs.size(), 2u);
  EXPECT_EQ(c->hubs[0].name, "cloud-east");
  // Stored in the canonical form.
  EXPECT_EQ(c->hubs[0].fingerprint, "fry1:mzxw-6ytb-oi5c-a3dp-nvsg-k4tb-mfzg-s3lf");
  EXPECT_EQ(c->hubs[1].url, "ws://[::1]:7080/v1/link");
  EXPECT_EQ(c->hubs[1].fingerprint, "");
  ASSERT_EQ(c->datasets.size(), 2u);
  const DatasetConfig& videos = c->datasets[1];
  EXPECT_EQ(videos.name, "videos");
  EXPECT_EQ(videos.kind, "volume");
  EXPECT_EQ(videos.path, "/srv/videos");
  EXPECT_EQ(videos.excludes, (std::vector<std::string>{"*.tmp", "cache/"}));
  ASSERT_TRUE(videos.pre_hook.has_value());
  EXPECT_EQ(videos.pre_hook->command,
            (std::vector<std::string>{"/usr/local/bin/freeze", "--all", ""}));
  EXPECT_EQ(videos.pre_hook->timeout, std::chrono::seconds(30));
  ASSERT_TRUE(videos.post_hook.has_value());
  EXPECT_EQ(videos.post_hook->timeout, std::chrono::seconds(60));
  EXPECT_FALSE(c->datasets[0].pre_hook.has_value());
  EXPECT_EQ(c->keyset.file, "/etc/ferry/keyset");
  EXPECT_EQ(c->keyset.passphrase_env, "FERRY_PASS");
  EXPECT_EQ(c->limits.memory_bytes, uint64_t{1} << 30);
  EXPECT_EQ(c->limits.workers, 8u);
  EXPECT_EQ(c->limits.outbox_quota_bytes, 500'000'000u);
  EXPECT_EQ(c->limits.bandwidth_bytes_per_second, uint64_t{2} << 20);
  EXPECT_EQ(c->api.address, "::1");
  EXPECT_EQ(c->api.port, 0);
  EXPECT_EQ(c->replication.failover_after, std::chrono::seconds(3600));
  EXPECT_EQ(c->replication.backoff_initial, std::chrono::milliseconds(250));
  EXPECT_EQ(c->replication.backoff_max, std::chrono::milliseconds(600'000));
  ASSERT_EQ(c->policies.size(), 1u);
  EXPECT_EQ(c->policies[0].name, "hourly");
  EXPECT_EQ(c->policies[0].tenant, "");  // a local policy may leave it out
  EXPECT_EQ(c->policies[0].targets, (std::vector<std::string>{"cloud-east", "onprem-dc"}));
}

TEST(AgentConfigTest, ErrorNamesTheKeyAndItsLineAndColumn) {
  // The header's example, to the character.
  EXPECT_EQ(ErrorOf(Replace(kBase, "path: /srv/videos", "path: videos")),
            "datasets[1].path: must be an absolute path, got \"videos\" (line 12, column 11)");
  // With an origin, the message starts with it.
  Result<AgentConfig> c = ParseAgentConfig(Replace(kBase, "path: /srv/videos", "path: videos"),
                                           "/etc/ferry/agent.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message().rfind("/etc/ferry/agent.yaml: datasets[1].path: ", 0), 0u)
      << c.status().message();
}

TEST(AgentConfigTest, UnknownKeyIsRefusedListingTheKnownOnes) {
  EXPECT_EQ(ErrorOf(Replace(kMinimal, "", "stateDirectory: /x\n")),
            "stateDirectory: unknown key (known: agent, stateDir, hubs, datasets, streams, keyset, "
            "limits, api, replication, policies) (line 4, column 1)");
  EXPECT_EQ(ErrorOf(Replace(kBase, "labels: {site: shop}", "label: {site: shop}")),
            "agent.label: unknown key (known: name, labels) (line 3, column 3)");
}

TEST(AgentConfigTest, KeyGivenTwiceIsRefused) {
  EXPECT_EQ(ErrorOf(Replace(kMinimal, "", "stateDir: /var/lib/other\n")),
            "stateDir: given twice (line 4, column 1)");
  EXPECT_EQ(ErrorOf(Replace(kMinimal, "{name: shop-1}", "{name: shop-1, name: shop-2}")),
            "agent.name: given twice (line 1, column 23)");
}

TEST(AgentConfigTest, HubNamedTwiceIsRefused) {
  EXPECT_EQ(ErrorOf(Replace(kBase, "{name: onprem-dc,", "{name: cloud-east,")),
            "hubs[1].name: hub \"cloud-east\" is configured twice (line 7, column 12)");
  EXPECT_EQ(ErrorOf(Replace(kBase, "name: events", "name: videos")),
            "datasets[1].name: dataset \"videos\" is configured twice (line 11, column 11)");
}

// Found by agent_config_fuzz: a byte >= 0x80 in a hub URL was accepted and
// later quoted raw in LinkClient's messages.
TEST(AgentConfigTest, HubUrlWithNonAsciiBytesIsRefused) {
  const std::string error = ErrorOf(Replace(kBase, "ws://127.0.0.1:7070",
                                            "ws://127.0.0.1:\xff"
                                            "7070"));
  EXPECT_NE(error.find("hubs[0].url: must not contain spaces or control characters and must be "
                       "ASCII"),
            std::string::npos)
      << error;
  for (unsigned char c : error) EXPECT_LT(c, 0x80) << "the message quotes a raw byte: " << error;
}

TEST(AgentConfigTest, PolicyErrorIsPrefixedAndPointsIntoTheFile) {
  // The policy parser's own message, under policies[0] and with the line and
  // column of the value in this file.
  EXPECT_EQ(ErrorOf(Replace(kBase, "{every: 1h}", "{every: 5s}")),
            "policies[0].spec.schedule.every: must be at least 10s, got \"5s\" "
            "(line 21, column 25)");
  EXPECT_EQ(ErrorOf(Replace(kBase, "kind: MirrorPolicy", "kind: Policy")),
            "policies[0].kind: must be MirrorPolicy, got \"Policy\" (line 17, column 11)");
  EXPECT_EQ(ErrorOf(Replace(kBase, "    metadata: {name: hourly}\n", "")),
            "policies[0].metadata: required: {name: ..., tenant: ...} (line 16, column 5)");
  // A quoted number stays a string on the way to the policy parser.
  EXPECT_EQ(ErrorOf(Replace(kBase, "", "      retention: {keepLast: \"4\"}\n")),
            "policies[0].spec.retention.keepLast: must be an integer >= 0, got \"4\" "
            "(line 23, column 29)");
  // Not a document at all.
  EXPECT_EQ(ErrorOf(Replace(kMinimal, "", "policies: [/etc/ferry/policy.yaml]\n")),
            "policies[0]: must be a MirrorPolicy document (a mapping: apiVersion, kind, metadata, "
            "spec), got /etc/ferry/policy.yaml (line 4, column 12)");
}

TEST(AgentConfigTest, PolicyNamingAnUnknownHubOrDatasetIsRefused) {
  EXPECT_EQ(ErrorOf(Replace(kBase, "{hub: onprem-dc}", "{hub: nowhere}")),
            "policies[0].spec.targets[1].hub: no hub named \"nowhere\" in hubs "
            "(line 22, column 42)");
  EXPECT_EQ(ErrorOf(Replace(kBase, "datasets: [videos]", "datasets: [videos, audio]")),
            "policies[0].spec.datasets[1]: no dataset named \"audio\" in datasets or streams "
            "(line 20, column 26)");
}

TEST(AgentConfigTest, PolicyDefinedTwiceIsRefused) {
  const std::string policy = R"(  - apiVersion: ferry/v1
    kind: MirrorPolicy
    metadata: {name: hourly}
    spec: {datasets: [events], schedule: "0 * * * *", targets: [{hub: cloud-east}]}
)";
  EXPECT_EQ(ErrorOf(Replace(kBase, "", policy)),
            "policies[1].metadata.name: policy \"hourly\" is defined twice (line 25, column 22)");
}

TEST(AgentConfigTest, PolicyAliasesCannotExpandWithoutBound) {
  // Nine levels of ten aliases each: 10^9 nodes once expanded.
  std::string yaml = Replace(kMinimal, "", "x0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
  for (int i = 1; i < 9; ++i) {
    const std::string a = "*a" + std::to_string(i - 1);
    yaml += "x" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + a + ", " + a + ", " + a +
            ", " + a + ", " + a + ", " + a + ", " + a + ", " + a + ", " + a + ", " + a + "]\n";
  }
  // The anchors sit in unknown keys: those are refused before anything expands.
  EXPECT_NE(ErrorOf(yaml).find("x0: unknown key"), std::string::npos);
  // Inside a policy they are expanded, and stopped.
  std::string bomb = "policies:\n  - apiVersion: ferry/v1\n    kind: MirrorPolicy\n";
  bomb += "    metadata: {name: p}\n    spec:\n      agents: {matchLabels: {}}\n";
  bomb += "      bomb0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 9; ++i) {
    const std::string a = "*a" + std::to_string(i - 1);
    bomb += "      bomb" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + a + ", " + a +
            ", " + a + ", " + a + ", " + a + ", " + a + ", " + a + ", " + a + ", " + a + ", " + a +
            "]\n";
  }
  const std::string message = ErrorOf(Replace(kMinimal, "", bomb));
  EXPECT_EQ(message.rfind("policies[0]: too large once its aliases are expanded", 0), 0u)
      << message;
}

struct BadCase {
  std::string from;  // text of kBase to replace; "" = append `to`
  std::string to;
  std::string want;  // the start of the error message
};

TEST(AgentConfigTest, EveryKindOfErrorNamesItsKeyAndLine) {
  const std::string long_socket = "/run/" + std::string(110, 's');
  const std::vector<BadCase> cases = {
      // Required keys and top-level types.
      {"agent:\n  name: shop-1\n  labels: {site: shop}\n", "", "agent: required"},
      {"  name: shop-1\n", "", "agent.name: required"},
      {"stateDir: /var/lib/ferry-agent\n", "", "stateDir: required"},
      {"keyset: {file: /etc/ferry/agent.key}\n", "", "keyset: required"},
      {"{file: /etc/ferry/agent.key}", "{passphraseEnv: X}", "keyset.file: required"},
      {"stateDir: /var/lib/ferry-agent", "stateDir: var/lib/ferry-agent",
       "stateDir: must be an absolute path, got \"var/lib/ferry-agent\""},
      {"stateDir: /var/lib/ferry-agent", "stateDir: [/var/lib]",
       "stateDir: must be a string, got a list"},
      {"stateDir: /var/lib/ferry-agent", "stateDir:", "stateDir: must be a string, got null"},
      {kHubsBlock, "hubs: {}\n", "hubs: must be a list of hubs, got a mapping"},
      // Names and labels.
      {"name: shop-1", "name: Shop_1", "agent.name: must be 1-63 characters of a-z"},
      {"name: shop-1", "name: -shop", "agent.name: must be 1-63 characters"},
      {"{site: shop}", "{\"bad key!\": x}", "agent.labels.\"bad key!\": invalid label name"},
      {"{site: shop}", "{site: -shop}", "agent.labels.site: invalid label value"},
      {"{site: shop}", "[site]", "agent.labels: must be a mapping of label names"},
      // Chunk size.
      {"path: /srv/videos", "path: /srv/videos\n    chunkSize: 24KiB",
       "datasets[1].chunkSize: must be a power of two from 4KiB to 1MiB, got 24576"},
      {"path: /srv/videos", "path: /srv/videos\n    chunkSize: 2MiB",
       "datasets[1].chunkSize: must be a power of two from 4KiB to 1MiB"},
      // Hubs.
      {"{name: cloud-east,", "{name: Cloud_East,", "hubs[0].name: must be 1-63 characters"},
      {"url: \"ws://127.0.0.1:7070\"", "uri: \"ws://127.0.0.1:7070\"",
       "hubs[0].uri: unknown key (known: name, url, fingerprint)"},
      {", url: \"ws://127.0.0.1:7070\"", "", "hubs[0].url: required"},
      {"ws://127.0.0.1:7070", "http://127.0.0.1:7070",
       "hubs[0].url: link URL 'http://127.0.0.1:7070' must start with ws://"},
      {"ws://127.0.0.1:7070", "wss://127.0.0.1:7070",
       "hubs[0].url: link URL 'wss://127.0.0.1:7070': wss:// is not supported yet"},
      {"ws://127.0.0.1:7070", "ws://:7070", "hubs[0].url: link URL 'ws://:7070' has no host"},
      {"ws://127.0.0.1:7070", "ws://127.0.0.1:99999", "hubs[0].url: link URL "},
      {"ws://127.0.0.1:7070", "ws://hub example:7070",
       "hubs[0].url: must not contain spaces or control characters"},
      {"ws://127.0.0.1:7070", "127.0.0.1:7070", "hubs[0].url: link URL '127.0.0.1:7070' must"},
      {"url: \"ws://127.0.0.1:7070\"}", "url: \"ws://127.0.0.1:7070\", fingerprint: \"fry1:abc\"}",
       "hubs[0].fingerprint: "},
      {"url: \"ws://127.0.0.1:7070\"}", "url: \"ws://127.0.0.1:7070\", fingerprint: [x]}",
       "hubs[0].fingerprint: must be a string"},
      // Datasets.
      {"  - name: events\n    path: /srv/events\n", "  - name: events\n",
       "datasets[0].path: required"},
      {"path: /srv/events", "path: /srv/events\n    kind: stream",
       "datasets[0].kind: \"stream\" is not supported yet (a later release adds streams and "
       "tables)"},
      {"path: /srv/events", "path: /srv/events\n    kind: table",
       "datasets[0].kind: \"table\" is not supported yet"},
      {"path: /srv/events", "path: /srv/events\n    kind: block",
       "datasets[0].kind: must be \"volume\", got \"block\""},
      {"[\"*.tmp\", \"cache/\"]", "[\"*.tmp\", \"\"]", "datasets[1].exclude[1]: must not be empty"},
      {"[\"*.tmp\", \"cache/\"]", "\"*.tmp\"", "datasets[1].exclude: must be a list"},
      {"path: /srv/events", "path: /srv/events\n    preHook: {command: [freeze]}",
       "datasets[0].preHook.command[0]: must be the program's absolute path (hooks run without "
       "a shell), got \"freeze\""},
      {"path: /srv/events", "path: /srv/events\n    preHook: {command: []}",
       "datasets[0].preHook.command: must list at least one"},
      {"path: /srv/events", "path: /srv/events\n    preHook: {command: /bin/freeze}",
       "datasets[0].preHook.command: must be a list"},
      {"path: /srv/events", "path: /srv/events\n    postHook: {timeout: 10s}",
       "datasets[0].postHook.command: required"},
      {"path: /srv/events", "path: /srv/events\n    postHook: {command: [/bin/thaw], timeout: 2h}",
       "datasets[0].postHook.timeout: must be from 1s to 1h, got \"2h\""},
      {"path: /srv/events", "path: /srv/events\n    postHook: {command: [/bin/thaw], timeout: 30}",
       "datasets[0].postHook.timeout: duration \"30\": missing unit"},
      {"path: /srv/events", "path: /srv/events\n    postHook: {command: [/bin/thaw], shell: yes}",
       "datasets[0].postHook.shell: unknown key (known: command, timeout)"},
      // Keyset.
      {"{file: /etc/ferry/agent.key}", "{file: agent.key}",
       "keyset.file: must be an absolute path"},
      {"{file: /etc/ferry/agent.key}",
       "{file: /etc/ferry/keyset, passphraseFile: /etc/ferry/pass, passphraseEnv: PASS}",
       "keyset.passphraseEnv: give passphraseFile or passphraseEnv, not both"},
      {"{file: /etc/ferry/agent.key}", "{file: /etc/ferry/keyset, passphraseFile: pass}",
       "keyset.passphraseFile: must be an absolute path"},
      {"{file: /etc/ferry/agent.key}", "{file: /etc/ferry/keyset, passphraseEnv: 1PASS}",
       "keyset.passphraseEnv: must be an environment variable's name"},
      // Limits.
      {"", "limits: {memory: 12XB}\n",
       "limits.memory: size \"12XB\": unknown unit \"XB\"; use B, KB"},
      {"", "limits: {memory: 16MiB}\n", "limits.memory: must be at least 32MiB, got \"16MiB\""},
      {"", "limits: {memory: [1]}\n", "limits.memory: must be a size"},
      {"", "limits: {workers: \"2\"}\n", "limits.workers: must be an integer 1..64, got \"2\""},
      {"", "limits: {workers: 0}\n", "limits.workers: must be an integer 1..64, got 0"},
      {"", "limits: {workers: 65}\n", "limits.workers: must be an integer 1..64, got 65"},
      {"", "limits: {workers: 2.5}\n", "limits.workers: must be an integer 1..64, got 2.5"},
      {"", "limits: {outboxQuota: 512KiB}\n", "limits.outboxQuota: must be at least 1MiB"},
      {"", "limits: {bandwidth: 2MiB}\n", "limits.bandwidth: rate \"2MiB\": add \"/s\""},
      {"", "limits: {bandwidth: -1}\n", "limits.bandwidth: rate \"-1\""},
      {"", "limits: {cpu: 2}\n",
       "limits.cpu: unknown key (known: memory, workers, outboxQuota, "
       "bandwidth)"},
      // API.
      {"", "api: {listen: \"0.0.0.0:7071\"}\n",
       "api.listen: must be a loopback address (127.0.0.0/8, [::1] or localhost)"},
      {"", "api: {listen: \"10.1.2.3:7071\"}\n", "api.listen: must be a loopback address"},
      {"", "api: {listen: \"example.com:7071\"}\n", "api.listen: must be a loopback address"},
      {"", "api: {listen: \"[::]:7071\"}\n", "api.listen: must be a loopback address"},
      {"", "api: {listen: \"127.1:7071\"}\n", "api.listen: must be a loopback address"},
      {"", "api: {listen: \"::1:7071\"}\n", "api.listen: an IPv6 address goes in brackets"},
      {"", "api: {listen: \"127.0.0.1\"}\n", "api.listen: must be HOST:PORT on a loopback"},
      {"", "api: {listen: \"[::1]\"}\n", "api.listen: must be HOST:PORT on a loopback"},
      {"", "api: {listen: \"127.0.0.1:70000\"}\n", "api.listen: port must be 0..65535"},
      {"", "api: {listen: \"127.0.0.1:http\"}\n", "api.listen: port must be 0..65535"},
      {"", "api: {listen: \"127.0.0.1:7071\", unixSocket: /run/ferry-agent/api.sock}\n",
       "api.unixSocket: give listen or unixSocket, not both"},
      {"", "api: {unixSocket: api.sock}\n", "api.unixSocket: must be an absolute path"},
      {"", "api: {unixSocket: " + long_socket + "}\n", "api.unixSocket: longer than 107 bytes"},
      // Replication.
      {"", "replication: {failoverAfter: 5s}\n",
       "replication.failoverAfter: must be from 10s to 366d, got \"5s\""},
      {"", "replication: {backoffInitial: 50ms}\n",
       "replication.backoffInitial: must be from 100ms to 1h, got \"50ms\""},
      {"", "replication: {backoffInitial: 1.5s}\n", "replication.backoffInitial: duration"},
      {"", "replication: {backoffInitial: 10m, backoffMax: 1m}\n",
       "replication.backoffMax: backoffMax (1m) must be at least backoffInitial (10m)"},
      {"", "replication: {backoffInitial: 10m}\n",
       "replication.backoffInitial: backoffMax (5m) must be at least backoffInitial (10m)"},
      // Policies.
      {kPoliciesBlock, "policies: {}\n", "policies: must be a list of MirrorPolicy documents"},
      {"{name: hourly}", "{name: hourly, tenant: retail, owner: me}",
       "policies[0].metadata.owner: unknown field"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.to);
    const std::string message = ErrorOf(Replace(kBase, c.from, c.to));
    EXPECT_EQ(message.rfind(c.want, 0), 0u) << message;
    EXPECT_NE(message.find(" (line "), std::string::npos) << message;
  }
}

TEST(AgentConfigTest, ApiListensOnLoopbackOnly) {
  struct Case {
    std::string listen;
    std::string address;
    uint16_t port;
  };
  for (const Case& c : std::vector<Case>{{"127.0.0.1:7071", "127.0.0.1", 7071},
                                         {"127.9.8.7:0", "127.9.8.7", 0},
                                         {"[::1]:7072", "::1", 7072},
                                         {"[0:0:0:0:0:0:0:1]:7073", "::1", 7073},
                                         {"localhost:65535", "127.0.0.1", 65535}}) {
    SCOPED_TRACE(c.listen);
    Result<AgentConfig> config =
        ParseAgentConfig(Replace(kMinimal, "", "api: {listen: \"" + c.listen + "\"}\n"), "");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    EXPECT_EQ(config->api.address, c.address);
    EXPECT_EQ(config->api.port, c.port);
    EXPECT_EQ(config->api.unix_socket, "");
  }
  Result<AgentConfig> unix_socket =
      ParseAgentConfig(Replace(kMinimal, "", "api: {unixSocket: /run/ferry-agent/api.sock}\n"), "");
  ASSERT_TRUE(unix_socket.ok()) << unix_socket.status().ToString();
  EXPECT_EQ(unix_socket->api.unix_socket, "/run/ferry-agent/api.sock");
}

TEST(AgentConfigTest, BandwidthIsARateOrZeroOrUnlimited) {
  struct Case {
    std::string text;
    uint64_t want;
  };
  for (const Case& c : std::vector<Case>{{"0", 0},
                                         {"\"0\"", 0},
                                         {"unlimited", 0},
                                         {"2MiB/s", uint64_t{2} << 20},
                                         {"1000000", 1'000'000}}) {
    SCOPED_TRACE(c.text);
    Result<AgentConfig> config =
        ParseAgentConfig(Replace(kMinimal, "", "limits: {bandwidth: " + c.text + "}\n"), "");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    EXPECT_EQ(config->limits.bandwidth_bytes_per_second, c.want);
  }
}

TEST(AgentConfigTest, DocumentLevelErrors) {
  EXPECT_EQ(ErrorOf(""),
            "document: empty; an agent config needs at least agent.name, stateDir and keyset.file");
  EXPECT_EQ(ErrorOf("# nothing but a comment\n"),
            "document: empty; an agent config needs at least agent.name, stateDir and keyset.file");
  EXPECT_EQ(ErrorOf("- agent\n").rfind("document: must be a mapping (agent, stateDir,", 0), 0u);
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "---\n" + kMinimal),
            "document: more than one YAML document (a \"---\" separator?); an agent config is one "
            "(line 4, column 1)");
  EXPECT_EQ(ErrorOf("agent: {name: shop-1\nstateDir: /x\n").rfind("YAML syntax error at line ", 0),
            0u);
  // yaml-cpp reads a stream of empty documents here; refused without
  // reading them all.
  EXPECT_EQ(ErrorOf(", ,").rfind("document: more than one YAML document", 0), 0u);
}

TEST(AgentConfigTest, FileLargerThanOneMebibyteIsRefused) {
  constexpr size_t kLimit = size_t{1} << 20;
  // Exactly 1 MiB (the minimal config padded with a comment) is fine.
  std::string at_limit = kMinimal;
  at_limit += "#" + std::string(kLimit - at_limit.size() - 2, 'x') + "\n";
  ASSERT_EQ(at_limit.size(), kLimit);
  EXPECT_TRUE(ParseAgentConfig(at_limit, "").ok());
  const std::string over = at_limit + "\n";
  EXPECT_EQ(ErrorOf(over),
            "document: 1048577 bytes; an agent config is at most 1048576 bytes (1 MiB)");

  TempDir dir;
  const std::string path = dir.Sub("agent.yaml");
  WriteText(path, over);
  Result<AgentConfig> c = LoadAgentConfig(path);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            path + ": 1048577 bytes; an agent config is at most 1048576 bytes (1 MiB)");
  WriteText(path, at_limit);
  EXPECT_TRUE(LoadAgentConfig(path).ok());
}

TEST(AgentConfigTest, LoadNamesTheFileInErrors) {
  TempDir dir;
  Result<AgentConfig> missing = LoadAgentConfig(dir.Sub("missing.yaml"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(dir.Sub("missing.yaml")), std::string::npos);

  const std::string path = dir.Sub("agent.yaml");
  WriteText(path, Replace(kMinimal, "/var/lib/ferry-agent", "relative"));
  Result<AgentConfig> bad = LoadAgentConfig(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            path + ": stateDir: must be an absolute path, got \"relative\" (line 2, column 11)");
}

TEST(AgentConfigTest, FindHubAndFindDatasetLookUpByName) {
  Result<AgentConfig> c = ParseAgentConfig(kBase, "");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_NE(c->FindHub("onprem-dc"), nullptr);
  EXPECT_EQ(c->FindHub("onprem-dc")->url, "ws://[::1]:7080/v1/link");
  EXPECT_EQ(c->FindHub("nowhere"), nullptr);
  ASSERT_NE(c->FindDataset("events"), nullptr);
  EXPECT_EQ(c->FindDataset("events")->path, "/srv/events");
  EXPECT_EQ(c->FindDataset("video"), nullptr);
}

TEST(ParseSizeTest, ParsesDecimalAndBinaryUnits) {
  struct Case {
    std::string text;
    uint64_t want;
  };
  for (const Case& c : std::vector<Case>{
           {"0", 0},
           {"1000", 1000},
           {"1B", 1},
           {"512KB", 512'000},
           {"1kB", 1000},
           {"20MB", 20'000'000},
           {"3GB", 3'000'000'000},
           {"2TB", 2'000'000'000'000},
           {"1KiB", 1024},
           {"256MiB", uint64_t{256} << 20},
           {"10GiB", uint64_t{10} << 30},
           {"2TiB", uint64_t{2} << 40},
           {"256 MiB", uint64_t{256} << 20},
           {"1.5GiB", uint64_t{3} << 29},
           {"0.5KB", 500},
           {"18446744073709551615", UINT64_MAX},
           {"16777215TiB", uint64_t{16777215} << 40},
       }) {
    SCOPED_TRACE(c.text);
    Result<uint64_t> size = ParseSize(c.text);
    ASSERT_TRUE(size.ok()) << size.status().ToString();
    EXPECT_EQ(*size, c.want);
  }
}

TEST(ParseSizeTest, RefusesUnknownUnitsAndNonsense) {
  struct Case {
    std::string text;
    std::string want;
  };
  for (const Case& c : std::vector<Case>{
           {"", "give a number of bytes"},
           {"MiB", "give a number of bytes"},
           {"-1", "give a number of bytes"},
           {"12XB", "unknown unit \"XB\""},
           {"256mib", "unknown unit \"mib\""},
           {"256M", "unknown unit \"M\""},
           {"2MiB/s", "unknown unit \"MiB/s\""},
           {"1.5", "a plain number is whole bytes"},
           {"1.GiB", "a decimal point needs digits"},
           {"1.1234567GiB", "at most 6 decimals"},
           {"18446744073709551616", "too large"},
           {"16777216TiB", "too large"},
       }) {
    SCOPED_TRACE(c.text);
    Result<uint64_t> size = ParseSize(c.text);
    ASSERT_FALSE(size.ok());
    EXPECT_EQ(size.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(size.status().message().rfind("size \"" + c.text + "\": ", 0), 0u)
        << size.status().message();
    EXPECT_NE(size.status().message().find(c.want), std::string::npos) << size.status().message();
  }
}

}  // namespace
}  // namespace ferry::agent
