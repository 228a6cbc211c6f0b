#include "edge-agent/streams.h"

#include "core/log.h"

namespace ferry::agent {

Result<std::unique_ptr<Streams>> Streams::Open(const AgentConfig& config, Env* env) {
  auto streams = std::unique_ptr<Streams>(new Streams());
  streams->configs_ = config.streams;
  for (const StreamConfig& c : config.streams) {
    snapshot::StreamLogOptions o;
    o.env = env;
    o.fsync =
        c.fsync_every_batch ? snapshot::FsyncPolicy::kEveryBatch : snapshot::FsyncPolicy::kInterval;
    if (!c.fsync_every_batch) o.fsync_interval_ms = c.fsync_interval_ms;
    o.segment_bytes = c.segment_bytes;
    o.max_record_bytes = c.max_record_bytes;
    o.max_batch_bytes = std::max<uint64_t>(o.max_batch_bytes, uint64_t{c.max_record_bytes} + 8);
    const std::string dir = config.state_dir + "/streams/" + c.name;
    Result<std::unique_ptr<snapshot::StreamLog>> log = snapshot::StreamLog::Open(dir, o);
    if (!log.ok()) return log.status().WithContext("stream " + c.name + " (" + dir + ")");
    const snapshot::StreamLogRecovery& r = (*log)->recovery();
    if (r.tail_truncated) {
      log::Warn("stream {}: a torn tail was cut at offset {} ({}: {} bytes dropped from {})",
                c.name, r.offset, r.reason, r.bytes_dropped, r.segment);
    }
    log::Info("stream {}: offsets {} to {}", c.name, (*log)->start_offset(), (*log)->end_offset());
    streams->logs_.emplace(c.name, std::move(*log));
  }
  return streams;
}

Streams::~Streams() {
  if (Status s = Close(); !s.ok()) log::Error("closing streams: {}", s.ToString());
}

Result<snapshot::StreamLog*> Streams::Find(std::string_view stream) const {
  auto it = logs_.find(stream);
  if (it != logs_.end()) return it->second.get();
  std::string known;
  for (const auto& [name, log] : logs_) known += (known.empty() ? "" : ", ") + name;
  return NotFoundError("no stream named '" + std::string(stream) + "' in this agent's config" +
                       (known.empty() ? " (it declares none: add streams: to agent.yaml)"
                                      : " (known: " + known + ")"));
}

const StreamConfig* Streams::Config(std::string_view stream) const {
  for (const StreamConfig& c : configs_) {
    if (c.name == stream) return &c;
  }
  return nullptr;
}

Result<snapshot::AppendResult> Streams::Append(std::string_view stream,
                                               std::span<const ByteView> records) {
  ASSIGN_OR_RETURN(snapshot::StreamLog * log, Find(stream));
  ASSIGN_OR_RETURN(snapshot::AppendResult r, log->Append(records));
  // Under an fsync interval, the answer waits for the group sync; it is an
  // error if a failed fsync discarded the batch meanwhile (even when later
  // records took its offsets since).
  RETURN_IF_ERROR(log->WaitDurable(r));
  {
    std::lock_guard lock(mu_);
    ++generation_;
  }
  appended_.notify_all();
  return r;
}

uint64_t Streams::generation() const {
  std::lock_guard lock(mu_);
  return generation_;
}

uint64_t Streams::WaitForAppend(uint64_t seen, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  appended_.wait_for(lock, timeout, [&] { return generation_ != seen; });
  return generation_;
}

snapshot::StreamLog* Streams::Log(std::string_view stream) const {
  auto it = logs_.find(stream);
  return it == logs_.end() ? nullptr : it->second.get();
}

void Streams::SetTargets(std::vector<std::string> hubs) {
  std::lock_guard lock(mu_);
  targets_ = std::move(hubs);
}

void Streams::Acknowledged(std::string_view stream, const std::string& hub, uint64_t next) {
  snapshot::StreamLog* log = Log(stream);
  const StreamConfig* config = Config(stream);
  if (log == nullptr || config == nullptr) return;
  uint64_t everywhere = UINT64_MAX;
  {
    std::lock_guard lock(mu_);
    auto& acked = acked_[std::string(stream)];
    acked[hub] = next;
    if (targets_.empty()) return;  // replicated nowhere: keep everything
    for (const std::string& t : targets_) {
      auto it = acked.find(t);
      if (it == acked.end()) return;  // not heard from since the start: keep
      everywhere = std::min(everywhere, it->second);
    }
  }
  ApplyRetention(*config, *log, everywhere);
}

void Streams::ApplyRetention(const StreamConfig& config, snapshot::StreamLog& log, uint64_t acked) {
  if (config.retention_age.count() == 0 && config.retention_bytes == 0) return;  // keep all
  const std::vector<snapshot::StreamSegmentInfo> segments = log.Segments();
  uint64_t total = 0;
  for (const auto& seg : segments) total += seg.bytes;
  const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  const int64_t age_ns = std::chrono::nanoseconds(config.retention_age).count();
  uint64_t cut = log.start_offset();
  for (size_t i = 0; i < segments.size(); ++i) {
    const auto& seg = segments[i];
    if (seg.end_offset > acked || seg.end_offset == seg.first_offset) break;
    // A segment's newest record is no younger than the next segment.
    const bool old =
        age_ns > 0 && i + 1 < segments.size() && segments[i + 1].created_unix_ns < now_ns - age_ns;
    const bool over = config.retention_bytes > 0 && total > config.retention_bytes;
    if (!old && !over) break;
    cut = seg.end_offset;
    total -= seg.bytes;
  }
  if (cut <= log.start_offset()) return;
  if (Status s = log.TruncateBefore(cut); !s.ok()) {
    log::Warn("stream {}: retention could not drop records below {}: {}", config.name, cut,
              s.ToString());
    return;
  }
  log::Info("stream {}: retention dropped records below offset {} (held by every hub)", config.name,
            cut);
}

Result<std::vector<snapshot::StreamRecord>> Streams::Read(std::string_view stream, uint64_t from,
                                                          size_t max_records, size_t max_bytes) {
  ASSIGN_OR_RETURN(snapshot::StreamLog * log, Find(stream));
  return log->Read(from, max_records, max_bytes);
}

std::vector<Streams::Info> Streams::List() const {
  std::vector<Info> out;
  for (const auto& [name, log] : logs_) {
    Info info{name, log->start_offset(), log->end_offset(), log->durable_end_offset(),
              {},   log->epoch(),        log->failure()};
    std::lock_guard lock(mu_);
    if (auto it = acked_.find(name); it != acked_.end()) info.acked = it->second;
    out.push_back(std::move(info));
  }
  return out;
}

Status Streams::Close() {
  Status first;
  for (auto& [name, log] : logs_) {
    if (Status s = log->Close(); !s.ok() && first.ok()) first = s.WithContext("stream " + name);
  }
  return first;
}

}  // namespace ferry::agent
