// AgentConfig: ferry-agent's configuration file (YAML; sample with every key
// explained: configs/agent.yaml).
//
//   agent: {name: shop-1, labels: {site: shop}}
//   stateDir: /var/lib/ferry-agent
//   hubs:                                    # in order of preference
//     - {name: cloud-east, url: "ws://hub.example:7070", fingerprint: "fry1:..."}
//   datasets:
//     - name: videos
//       path: /srv/videos
//       exclude: ["*.tmp", "cache/"]
//       chunkSize: 64KiB                     # average content-defined chunk
//       delta: true                          # changed files: send what changed
//       preHook: {command: [/usr/local/bin/freeze], timeout: 30s}
//       postHook: {command: [/usr/local/bin/thaw], timeout: 30s}
//   streams:                                 # append-only logs, written through the local API
//     - {name: events, fsync: batch, maxRecordSize: 1MiB, retention: {age: 1d, size: 1GiB}}
//   keyset: {file: /etc/ferry/agent.key}     # agent key file (or a tenant keyset)
//   limits: {memory: 256MiB, workers: 2, outboxQuota: 10GiB, bandwidth: 0}
//   api: {listen: "127.0.0.1:7071"}          # or {unixSocket: /run/ferry-agent.sock}
//   replication: {failoverAfter: 10m, backoffInitial: 1s, backoffMax: 5m}
//   policies: [ <MirrorPolicy documents, for devices managed locally> ]
//
// Every error is kInvalidArgument and names the key and its line:
//   "datasets[1].path: must be an absolute path, got \"videos\" (line 12, column 11)".
// Unknown keys are errors. Relative paths are refused (the daemon's working
// directory is not something to depend on).
// Thread-safety: free functions, thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "mirror/policy/mirror_policy.h"

namespace ferry::agent {

struct HubEndpoint {
  std::string name;         // ValidateName rules ([a-z0-9-], 1-63); policy targets name it
  std::string url;          // ws://host[:port][/path]
  std::string fingerprint;  // pinned hub key ("fry1:..."); may be empty until `enroll` saves it
};

struct Hook {
  std::vector<std::string> command;  // argv; command[0] absolute, run without a shell
  std::chrono::seconds timeout{60};
};

struct DatasetConfig {
  std::string name;  // ValidateName rules
  std::string kind = "volume";
  std::string path;                   // absolute
  std::vector<std::string> excludes;  // glob patterns (snapshot::CaptureOptions::excludes)
  // Average chunk size ("chunkSize", a power of two, 4KiB..1MiB); min = avg/4,
  // max = 4 x avg. Smaller chunks send less after scattered small edits and
  // cost more ids per GiB. Changing it re-reads every file once.
  uint32_t chunk_avg_bytes = 64 << 10;
  // "delta": store a changed file's new chunks as deltas of its previous
  // ones where that halves them (docs/format/delta.md). Default on.
  bool delta = true;
  std::optional<Hook> pre_hook;
  std::optional<Hook> post_hook;
};

// An append-only stream (docs/api.md "Streams"): records get dense offsets
// and are durable per `fsync` before an append is answered.
struct StreamConfig {
  std::string name;  // ValidateName rules; distinct from every dataset's name
  // "fsync": "batch" (every append is fsync'd before it is answered; the
  // default) or an interval ("10ms" to "10s"): appends are answered once the
  // next sync, at most that long after them, made them durable (group commit).
  bool fsync_every_batch = true;
  uint32_t fsync_interval_ms = 0;
  uint32_t max_record_bytes = 1u << 20;         // "maxRecordSize", 1 B .. 4 MiB
  uint64_t segment_bytes = uint64_t{16} << 20;  // "segmentSize", 64KiB .. 1GiB
  // Local retention once replicated: segments older than `age` or beyond
  // `size` may go (0 = no limit of that kind). Never before replication.
  std::chrono::seconds retention_age{0};  // "retention.age"
  uint64_t retention_bytes = 0;           // "retention.size"
};

struct KeysetConfig {
  std::string file;  // absolute: an agent key file or a tenant keyset
  // Where a tenant keyset's passphrase comes from (not needed for capture:
  // the agent only seals and signs). At most one of the two.
  std::string passphrase_file;
  std::string passphrase_env;
};

struct Limits {
  uint64_t memory_bytes = uint64_t{256} << 20;       // "256MiB"
  size_t workers = 2;                                // capture CPU workers, >= 1
  uint64_t outbox_quota_bytes = uint64_t{10} << 30;  // "10GiB"; capture pauses above it
  // Per hub: caps every policy's limit and is the limit of policies without one.
  uint64_t bandwidth_bytes_per_second = 0;  // "2MiB/s"; 0 = unlimited
};

struct ApiConfig {
  std::string address = "127.0.0.1";  // loopback only: 127.0.0.0/8 or ::1
  uint16_t port = 7071;               // 0 = any free port (written to stateDir/api.port)
  std::string unix_socket;            // absolute path; when set, used instead of TCP
};

struct ReplicationConfig {
  // A target hub unreachable for this long: the next configured hub (in the
  // hubs list's order) takes its snapshots until it is back.
  std::chrono::seconds failover_after{600};
  std::chrono::milliseconds backoff_initial{1000};
  std::chrono::milliseconds backoff_max{300'000};
};

struct AgentConfig {
  std::string origin;  // the file it was read from (for messages)
  std::string name;    // agent.name, ValidateName rules
  std::map<std::string, std::string> labels;
  std::string state_dir;  // absolute
  std::vector<HubEndpoint> hubs;
  std::vector<DatasetConfig> datasets;
  std::vector<StreamConfig> streams;
  KeysetConfig keyset;
  Limits limits;
  ApiConfig api;
  ReplicationConfig replication;
  std::vector<mirror::MirrorPolicy> policies;  // local policies

  const HubEndpoint* FindHub(std::string_view hub_name) const;
  const DatasetConfig* FindDataset(std::string_view dataset_name) const;
  const StreamConfig* FindStream(std::string_view stream_name) const;
};

// Parses a config document. `origin` names it in messages.
Result<AgentConfig> ParseAgentConfig(std::string_view yaml, std::string_view origin);
// Reads (at most 1 MiB) and parses a config file.
Result<AgentConfig> LoadAgentConfig(const std::string& path);

// "256MiB", "10GiB", "512KB", "1000" (bytes) -> bytes. Units B, KB, MB, GB,
// TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024).
Result<uint64_t> ParseSize(std::string_view text);

}  // namespace ferry::agent
