#include "cloud-hub/hub_streams.h"

#include <algorithm>

#include "cloud-hub/catalog.h"
#include "core/crash_site.h"
#include "core/env.h"
#include "core/log.h"
#include "snapshot/stream_log.h"

namespace ferry::hub {

struct HubStreams::Stream {
  std::mutex mu;  // serializes appends; guards log (the pointer), index and position
  // Null once an append failed: the stream is then opened again by Get.
  std::shared_ptr<snapshot::StreamLog> log;
  struct Entry {
    uint64_t first;       // record offset of the batch's first record
    uint64_t log_offset;  // its offset in `log`
  };
  std::vector<Entry> index;
  mirror::StreamPosition position;
};

namespace {

snapshot::StreamLogOptions LogOptions() {
  snapshot::StreamLogOptions o;
  o.fsync = snapshot::FsyncPolicy::kEveryBatch;
  o.segment_bytes = uint64_t{64} << 20;
  o.max_record_bytes = 16u << 20;  // a batch fits a link frame (8 MiB by default)
  o.max_batch_bytes = uint64_t{17} << 20;
  return o;
}

Status ValidateNames(const std::string& tenant, const std::string& agent,
                     const std::string& stream) {
  RETURN_IF_ERROR(ValidateName("tenant", tenant));
  RETURN_IF_ERROR(ValidateName("agent", agent));
  return ValidateName("stream", stream);
}

}  // namespace

HubStreams::HubStreams(std::string data_dir) : data_dir_(std::move(data_dir)) {}

HubStreams::~HubStreams() {
  if (Status s = CloseAll(); !s.ok()) log::Error("closing streams: {}", s.ToString());
}

std::string HubStreams::Dir(const std::string& tenant, const std::string& agent,
                            const std::string& stream) const {
  return data_dir_ + "/tenants/" + tenant + "/streams/" + agent + "/" + stream;
}

Result<std::shared_ptr<HubStreams::Stream>> HubStreams::Get(const std::string& tenant,
                                                            const std::string& agent,
                                                            const std::string& stream,
                                                            bool create) {
  RETURN_IF_ERROR(ValidateNames(tenant, agent, stream));
  std::lock_guard lock(mu_);
  auto key = std::make_tuple(tenant, agent, stream);
  if (auto it = open_.find(key); it != open_.end()) return it->second;
  const std::string dir = Dir(tenant, agent, stream);
  if (!create) {
    ASSIGN_OR_RETURN(bool exists, Env::Default()->FileExists(dir));
    if (!exists) {
      return NotFoundError("agent " + agent + " has sent no stream " + stream + " to this hub");
    }
  }
  auto s = std::make_shared<Stream>();
  ASSIGN_OR_RETURN(std::unique_ptr<snapshot::StreamLog> opened,
                   snapshot::StreamLog::Open(dir, LogOptions()));
  s->log = std::move(opened);
  // Rebuild the index from the batches' headers.
  const std::string where = tenant + "/" + agent + "/" + stream;
  for (uint64_t at = s->log->start_offset(); at < s->log->end_offset();) {
    ASSIGN_OR_RETURN(std::vector<snapshot::StreamRecord> batch, s->log->Read(at, 64, 64u << 20));
    for (const snapshot::StreamRecord& r : batch) {
      Result<snapshot::StreamBatchHeader> h = snapshot::VerifyStreamBatch(r.data);
      if (!h.ok())
        return h.status().WithContext("stream " + where + " batch " + std::to_string(r.offset));
      if (!s->index.empty() && h->first_offset != s->position.next) {
        return DataLossError("stream " + where + ": batch " + std::to_string(r.offset) +
                             " starts at offset " + std::to_string(h->first_offset) +
                             ", expected " + std::to_string(s->position.next));
      }
      if (s->index.empty()) s->position.start = h->first_offset;
      s->index.push_back({h->first_offset, r.offset});
      s->position.next = h->end_offset();
    }
    at = batch.back().offset + 1;
  }
  if (s->log->recovery().tail_truncated) {
    log::Warn("stream {}: dropped a torn tail at batch {} ({})", where, s->log->recovery().offset,
              s->log->recovery().reason);
  }
  open_.emplace(std::move(key), s);
  return s;
}

Result<mirror::StreamPosition> HubStreams::Position(const std::string& tenant,
                                                    const std::string& agent,
                                                    const std::string& stream) {
  Result<std::shared_ptr<Stream>> s = Get(tenant, agent, stream, /*create=*/false);
  if (s.status().code() == StatusCode::kNotFound) return mirror::StreamPosition{};
  if (!s.ok()) return s.status();
  std::lock_guard lock((*s)->mu);
  return (*s)->position;
}

Result<mirror::StreamPosition> HubStreams::Append(const std::string& tenant,
                                                  const std::string& agent,
                                                  const snapshot::StreamBatchHeader& header,
                                                  ByteView sealed) {
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> s, Get(tenant, agent, header.stream, true));
  std::lock_guard lock(s->mu);
  if (!s->log) return UnavailableError("stream " + header.stream + " is being reopened; retry");
  mirror::StreamPosition& p = s->position;
  const bool empty = s->index.empty();
  if (!empty && header.first_offset < p.start) {
    // Never stored here: acknowledging it would claim records this hub
    // does not hold.
    return FailedPreconditionError(
        "stream " + header.stream + ": batch [" + std::to_string(header.first_offset) + ", " +
        std::to_string(header.end_offset()) + ") starts below this hub's first offset " +
        std::to_string(p.start));
  }
  if (!empty && header.end_offset() <= p.next) {
    // Sent again after a cut that lost the ack: held already.
    return p;
  }
  if (!empty && header.first_offset != p.next) {
    return FailedPreconditionError(
        "stream " + header.stream + ": batch [" + std::to_string(header.first_offset) + ", " +
        std::to_string(header.end_offset()) + ") " +
        (header.first_offset > p.next ? "leaves a gap" : "overlaps the end") +
        ": this hub holds [" + std::to_string(p.start) + ", " + std::to_string(p.next) + ")");
  }
  const ByteView records[] = {sealed};
  FERRY_CRASH_SITE("hub.streams.before_append");
  Result<snapshot::AppendResult> r = s->log->Append(records);
  if (!r.ok()) {
    // A failed write or fsync leaves the log failed for good (and what it
    // wrote unknown): forget it, so that the next use opens it again, which
    // cuts whatever was not whole. Nothing was acknowledged.
    s->log.reset();  // closed (its directory lock released) once no reader holds it
    std::lock_guard lock_all(mu_);
    open_.erase(std::make_tuple(tenant, agent, header.stream));
    return r.status();
  }
  FERRY_CRASH_SITE("hub.streams.after_sync");
  if (empty) p.start = header.first_offset;
  s->index.push_back({header.first_offset, r->first});
  p.next = header.end_offset();
  return p;
}

Result<HubStreams::ReadResult> HubStreams::Read(const std::string& tenant, const std::string& agent,
                                                const std::string& stream, uint64_t from,
                                                size_t max_bytes) {
  ASSIGN_OR_RETURN(std::shared_ptr<Stream> s, Get(tenant, agent, stream, false));
  ReadResult out;
  uint64_t log_offset = 0;
  std::shared_ptr<snapshot::StreamLog> log;
  {
    std::lock_guard lock(s->mu);
    if (!s->log) return UnavailableError("stream " + stream + " is being reopened; retry");
    log = s->log;
    out.position = s->position;
    if (from < out.position.start) {
      return OutOfRangeError("offset " + std::to_string(from) + " of stream " + stream +
                             " is not at this hub: its first offset is " +
                             std::to_string(out.position.start));
    }
    if (from > out.position.next) {
      return OutOfRangeError("offset " + std::to_string(from) + " of stream " + stream +
                             " is past its end: the next offset is " +
                             std::to_string(out.position.next));
    }
    if (from == out.position.next) return out;
    // The last batch whose first record is <= from.
    auto it = std::upper_bound(s->index.begin(), s->index.end(), from,
                               [](uint64_t v, const Stream::Entry& e) { return v < e.first; });
    log_offset = std::prev(it)->log_offset;
  }
  ASSIGN_OR_RETURN(std::vector<snapshot::StreamRecord> batches,
                   log->Read(log_offset, SIZE_MAX, max_bytes));
  out.batches.reserve(batches.size());
  for (snapshot::StreamRecord& b : batches) out.batches.push_back(std::move(b.data));
  return out;
}

Result<std::vector<HubStreams::Info>> HubStreams::List(const std::string& tenant,
                                                       const std::string& agent) {
  RETURN_IF_ERROR(ValidateName("tenant", tenant));
  Env& env = *Env::Default();
  const std::string root = data_dir_ + "/tenants/" + tenant + "/streams";
  std::vector<Info> out;
  ASSIGN_OR_RETURN(bool exists, env.FileExists(root));
  if (!exists) return out;
  ASSIGN_OR_RETURN(std::vector<std::string> agents, env.ListDir(root));
  std::sort(agents.begin(), agents.end());
  for (const std::string& a : agents) {
    if (!agent.empty() && a != agent) continue;
    if (!ValidateName("agent", a).ok()) continue;  // not ours
    ASSIGN_OR_RETURN(std::vector<std::string> streams, env.ListDir(root + "/" + a));
    std::sort(streams.begin(), streams.end());
    for (const std::string& name : streams) {
      if (!ValidateName("stream", name).ok()) continue;
      ASSIGN_OR_RETURN(std::shared_ptr<Stream> s, Get(tenant, a, name, false));
      Info info;
      info.agent = a;
      info.stream = name;
      std::shared_ptr<snapshot::StreamLog> log;
      {
        std::lock_guard lock(s->mu);
        info.position = s->position;
        info.batches = s->index.size();
        log = s->log;
      }
      if (log) {
        for (const auto& seg : log->Segments()) info.bytes += seg.bytes;
      }
      out.push_back(std::move(info));
    }
  }
  return out;
}

Status HubStreams::CloseAll() {
  // Taken out of the map first: Append locks a stream, then the map (to
  // forget a failed stream), so the map's lock is never held around a
  // stream's.
  std::vector<std::shared_ptr<Stream>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [key, s] : open_) all.push_back(s);
    open_.clear();
  }
  Status first;
  for (const std::shared_ptr<Stream>& s : all) {
    std::lock_guard stream_lock(s->mu);
    if (!s->log) continue;
    Status c = s->log->Close();
    if (first.ok() && !c.ok()) first = c;
  }
  return first;
}

}  // namespace ferry::hub
