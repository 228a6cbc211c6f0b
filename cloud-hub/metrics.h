// Metrics: the hub's counters, gauges and the commit latency histogram,
// rendered in the Prometheus text exposition format (version 0.0.4) at
// /metrics. Names are prefixed "ferry_hub_".
// Thread-safety: thread-safe (atomics; the error map behind a mutex).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ferry::hub {

class Metrics {
 public:
  // Upper bounds (seconds) of the commit latency histogram's buckets.
  static constexpr std::array<double, 10> kCommitBuckets = {0.005, 0.01, 0.025, 0.05, 0.1,
                                                            0.25,  0.5,  1,     2.5,  10};

  std::atomic<int64_t> sessions_open{0};
  std::atomic<uint64_t> sessions_total{0};
  std::atomic<uint64_t> link_bytes_in{0};
  std::atomic<uint64_t> link_bytes_out{0};
  std::atomic<uint64_t> chunks_received{0};
  std::atomic<uint64_t> chunks_stored{0};       // new chunks written
  std::atomic<uint64_t> chunk_bytes_stored{0};  // their sealed bytes
  std::atomic<uint64_t> commits{0};
  std::atomic<uint64_t> http_requests{0};
  std::atomic<uint64_t> chunk_downloads{0};
  std::atomic<uint64_t> agent_reports{0};   // AgentReports stored
  std::atomic<uint64_t> stream_batches{0};  // stream batches stored
  std::atomic<uint64_t> stream_records{0};  // records in them
  std::atomic<uint64_t> stream_bytes{0};    // their sealed bytes
  // Failed authentication (AuthThrottle): API tokens refused (401) and join
  // tokens refused on the link; attempts refused unchecked while their
  // address was throttled (429 over HTTP, RESOURCE_EXHAUSTED on the link).
  std::atomic<uint64_t> auth_failures_http{0};
  std::atomic<uint64_t> auth_failures_link{0};
  std::atomic<uint64_t> auth_throttled_http{0};
  std::atomic<uint64_t> auth_throttled_link{0};

  void ObserveCommitSeconds(double seconds);
  // Counts an error by type (a Status code name, e.g. "PERMISSION_DENIED")
  // and where it happened ("link", "http").
  void CountError(const std::string& where, const std::string& code);

  // Extra lines computed at render time (e.g. per-agent last snapshot time
  // from the catalog), already in the text format.
  std::string Render(const std::string& extra = "") const;

 private:
  std::array<std::atomic<uint64_t>, kCommitBuckets.size()> commit_buckets_{};
  std::atomic<uint64_t> commit_count_{0};
  std::atomic<uint64_t> commit_sum_micros_{0};
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> errors_;
};

}  // namespace ferry::hub
