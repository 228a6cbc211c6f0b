#include "cloud-hub/metrics.h"

#include <cstdio>

namespace ferry::hub {

void Metrics::ObserveCommitSeconds(double seconds) {
  for (size_t i = 0; i < kCommitBuckets.size(); ++i) {
    if (seconds <= kCommitBuckets[i]) commit_buckets_[i].fetch_add(1);
  }
  commit_count_.fetch_add(1);
  commit_sum_micros_.fetch_add(static_cast<uint64_t>(seconds * 1e6));
}

void Metrics::CountError(const std::string& where, const std::string& code) {
  std::lock_guard lock(mu_);
  ++errors_[{where, code}];
}

namespace {
void Line(std::string& out, const char* name, const char* type, const char* help,
          const std::string& value) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
         name + " " + value + "\n";
}
}  // namespace

std::string Metrics::Render(const std::string& extra) const {
  std::string out;
  auto n = [](auto v) { return std::to_string(v); };
  Line(out, "ferry_hub_sessions_open", "gauge", "Link sessions open now.", n(sessions_open.load()));
  Line(out, "ferry_hub_sessions_total", "counter", "Link sessions accepted.",
       n(sessions_total.load()));
  Line(out, "ferry_hub_link_bytes_received_total", "counter",
       "Bytes received on link sessions (WebSocket payloads).", n(link_bytes_in.load()));
  Line(out, "ferry_hub_link_bytes_sent_total", "counter",
       "Bytes sent on link sessions (WebSocket payloads).", n(link_bytes_out.load()));
  Line(out, "ferry_hub_chunks_received_total", "counter", "Sealed chunks received in uploads.",
       n(chunks_received.load()));
  Line(out, "ferry_hub_chunks_stored_total", "counter", "Chunks new to the hub, stored.",
       n(chunks_stored.load()));
  Line(out, "ferry_hub_chunk_bytes_stored_total", "counter", "Sealed bytes of the chunks stored.",
       n(chunk_bytes_stored.load()));
  Line(out, "ferry_hub_commits_total", "counter", "Snapshots committed.", n(commits.load()));
  Line(out, "ferry_hub_http_requests_total", "counter", "HTTP requests answered.",
       n(http_requests.load()));
  Line(out, "ferry_hub_chunk_downloads_total", "counter", "Sealed chunks served over HTTP.",
       n(chunk_downloads.load()));
  Line(out, "ferry_hub_agent_reports_total", "counter",
       "Agent reports (pending bytes, last error) received and stored.", n(agent_reports.load()));
  Line(out, "ferry_hub_stream_batches_total", "counter",
       "Stream batches received from agents and stored (durable).", n(stream_batches.load()));
  Line(out, "ferry_hub_stream_records_total", "counter", "Stream records in those batches.",
       n(stream_records.load()));
  Line(out, "ferry_hub_stream_bytes_total", "counter", "Sealed bytes of those batches.",
       n(stream_bytes.load()));

  out +=
      "# HELP ferry_hub_auth_failures_total Failed authentication attempts: API tokens refused "
      "(where=\"http\") and join tokens refused (where=\"link\").\n"
      "# TYPE ferry_hub_auth_failures_total counter\n"
      "ferry_hub_auth_failures_total{where=\"http\"} " +
      n(auth_failures_http.load()) +
      "\n"
      "ferry_hub_auth_failures_total{where=\"link\"} " +
      n(auth_failures_link.load()) + "\n";
  out +=
      "# HELP ferry_hub_auth_throttled_total Authentication attempts refused unchecked because "
      "their address made too many failed ones (HTTP 429; refused enrollments on the link).\n"
      "# TYPE ferry_hub_auth_throttled_total counter\n"
      "ferry_hub_auth_throttled_total{where=\"http\"} " +
      n(auth_throttled_http.load()) +
      "\n"
      "ferry_hub_auth_throttled_total{where=\"link\"} " +
      n(auth_throttled_link.load()) + "\n";

  out +=
      "# HELP ferry_hub_commit_seconds Time from a commit request to its acknowledgement.\n"
      "# TYPE ferry_hub_commit_seconds histogram\n";
  for (size_t i = 0; i < kCommitBuckets.size(); ++i) {
    char le[32];
    std::snprintf(le, sizeof(le), "%g", kCommitBuckets[i]);
    out += std::string("ferry_hub_commit_seconds_bucket{le=\"") + le + "\"} " +
           n(commit_buckets_[i].load()) + "\n";
  }
  out += "ferry_hub_commit_seconds_bucket{le=\"+Inf\"} " + n(commit_count_.load()) + "\n";
  char sum[64];
  std::snprintf(sum, sizeof(sum), "%.6f", static_cast<double>(commit_sum_micros_.load()) / 1e6);
  out += std::string("ferry_hub_commit_seconds_sum ") + sum + "\n";
  out += "ferry_hub_commit_seconds_count " + n(commit_count_.load()) + "\n";

  out +=
      "# HELP ferry_hub_errors_total Errors by where they happened and their type.\n"
      "# TYPE ferry_hub_errors_total counter\n";
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, count] : errors_) {
      out += "ferry_hub_errors_total{where=\"" + key.first + "\",code=\"" + key.second + "\"} " +
             n(count) + "\n";
    }
  }
  out += extra;
  return out;
}

}  // namespace ferry::hub
