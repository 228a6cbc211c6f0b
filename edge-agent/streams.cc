#include "edge-agent/streams.h"

#include "core/log.h"

namespace ferry::agent {

Result<std::unique_ptr<Streams>> Streams::Open(const AgentConfig& config) {
  auto streams = std::unique_ptr<Streams>(new Streams());
  streams->configs_ = config.streams;
  for (const StreamConfig& c : config.streams) {
    snapshot::StreamLogOptions o;
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
  // Under an fsync interval, the answer waits for the group sync.
  RETURN_IF_ERROR(log->WaitDurable(r.last));
  return r;
}

Result<std::vector<snapshot::StreamRecord>> Streams::Read(std::string_view stream, uint64_t from,
                                                          size_t max_records, size_t max_bytes) {
  ASSIGN_OR_RETURN(snapshot::StreamLog * log, Find(stream));
  return log->Read(from, max_records, max_bytes);
}

std::vector<Streams::Info> Streams::List() const {
  std::vector<Info> out;
  for (const auto& [name, log] : logs_) {
    out.push_back({name, log->start_offset(), log->end_offset(), log->durable_end_offset()});
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
