// Streams: the agent's append-only streams (agent.yaml `streams:`), one
// snapshot::StreamLog each under <stateDir>/streams/<name>
// (docs/format/stream-segment.md), behind the local API's
// /v1/streams/{name}/records (docs/api.md "Streams").
//
// An append is answered only once its records are durable per the stream's
// fsync policy: "batch" fsyncs before Append returns; an interval waits for
// the next group sync. Replication of stream records to hubs comes with the
// rest of the streams work (issue 7); until then records stay local (no
// retention deletes anything that was not replicated, so nothing is deleted).
//
// Errors: kNotFound for an unknown stream (the message lists the known ones),
// the StreamLog's otherwise (kInvalidArgument for an oversized record or
// batch, kOutOfRange for a read below the first retained offset).
// Thread-safety: thread-safe.
#pragma once

#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/status.h"
#include "edge-agent/agent_config.h"
#include "snapshot/stream_log.h"

namespace ferry::agent {

class Streams {
 public:
  // Opens (and recovers) every configured stream. A torn tail found by the
  // recovery is logged with the offset it was cut at.
  static Result<std::unique_ptr<Streams>> Open(const AgentConfig& config);
  ~Streams();

  // Appends a batch and returns its offsets once they are durable.
  Result<snapshot::AppendResult> Append(std::string_view stream, std::span<const ByteView> records);
  Result<std::vector<snapshot::StreamRecord>> Read(std::string_view stream, uint64_t from,
                                                   size_t max_records, size_t max_bytes);
  // The stream's configuration, or null.
  const StreamConfig* Config(std::string_view stream) const;

  struct Info {
    std::string name;
    uint64_t start_offset = 0;
    uint64_t end_offset = 0;
    uint64_t durable_end_offset = 0;
  };
  std::vector<Info> List() const;

  // Syncs and closes every stream.
  Status Close();

 private:
  Streams() = default;
  Result<snapshot::StreamLog*> Find(std::string_view stream) const;

  std::vector<StreamConfig> configs_;
  std::map<std::string, std::unique_ptr<snapshot::StreamLog>, std::less<>> logs_;
};

}  // namespace ferry::agent
