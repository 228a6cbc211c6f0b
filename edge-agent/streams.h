// Streams: the agent's append-only streams (agent.yaml `streams:`), one
// snapshot::StreamLog each under <stateDir>/streams/<name>
// (docs/format/stream-segment.md), behind the local API's
// /v1/streams/{name}/records (docs/api.md "Streams").
//
// An append is answered only once its records are durable per the stream's
// fsync policy: "batch" fsyncs before Append returns; an interval waits for
// the next group sync. StreamShippers (one per hub) send durable records on
// (WaitForAppend wakes them) and report what each hub acknowledged
// (Acknowledged); once every target set by SetTargets holds a segment's
// records, the stream's local retention (age, size) may delete it. Nothing
// that some target lacks is ever deleted.
//
// A failed write or fsync (a full disk, EIO) fails the appends whose records
// were not durable yet, with the I/O error; those records are discarded and
// never answered. The stream then goes on by itself, without a restart: the
// next append (or a policy's cut) discards the unsynced tail and appends from
// the durable end (snapshot/stream_log.h, "A failed write or fsync").
//
// Errors: kNotFound for an unknown stream (the message lists the known ones),
// the StreamLog's otherwise (kInvalidArgument for an oversized record or
// batch, kOutOfRange for a read below the first retained offset, the I/O
// error of a failed write or fsync: kDataLoss for EIO, kResourceExhausted
// for a full disk).
// Thread-safety: thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/env.h"
#include "core/status.h"
#include "edge-agent/agent_config.h"
#include "snapshot/stream_log.h"

namespace ferry::agent {

class Streams {
 public:
  // Opens (and recovers) every configured stream. A torn tail found by the
  // recovery is logged with the offset it was cut at. The logs write through
  // `env` (tests inject faults), which must outlive this.
  static Result<std::unique_ptr<Streams>> Open(const AgentConfig& config,
                                               Env* env = Env::Default());
  ~Streams();

  // Appends a batch and returns its offsets once they are durable. An error
  // is not an answer: a failed write or fsync discards the batch's records
  // (see above) — all of them, except that a batch longer than what is left
  // of a segment keeps the records written before the segment was rolled,
  // which the roll made durable.
  Result<snapshot::AppendResult> Append(std::string_view stream, std::span<const ByteView> records);
  Result<std::vector<snapshot::StreamRecord>> Read(std::string_view stream, uint64_t from,
                                                   size_t max_records, size_t max_bytes);
  // Blocks until an append was answered after `seen` was read from
  // generation(), or `timeout` passed; returns the generation then.
  uint64_t WaitForAppend(uint64_t seen, std::chrono::milliseconds timeout);
  uint64_t generation() const;

  // The hubs every stream is replicated to: retention waits for all of them.
  void SetTargets(std::vector<std::string> hubs);
  // `hub` holds every record of `stream` below `next` (a StreamAck). Applies
  // retention when every target has acknowledged (a look at the segment
  // list: cheap enough for every ack). Retention by age is therefore
  // applied when records are acknowledged, not on a timer. Errors of the deletion
  // are logged, not returned (the records stay; they are retried at the
  // next ack).
  void Acknowledged(std::string_view stream, const std::string& hub, uint64_t next);
  // The stream's log (for the shippers), or null.
  snapshot::StreamLog* Log(std::string_view stream) const;

  // OK for a configured stream; kNotFound naming the known ones otherwise.
  Status Check(std::string_view stream) const { return Find(stream).status(); }

  // The stream's configuration, or null.
  const StreamConfig* Config(std::string_view stream) const;

  struct Info {
    std::string name;
    uint64_t start_offset = 0;
    uint64_t end_offset = 0;
    uint64_t durable_end_offset = 0;
    std::map<std::string, uint64_t> acked;  // per hub: next offset it holds (as last told)
    // Unsynced tails discarded after a failed write or fsync since the start.
    uint64_t discarded_tails = 0;
    // A failed write or fsync not yet recovered from (OK when healthy).
    Status failure;
  };
  std::vector<Info> List() const;

  // Syncs and closes every stream.
  Status Close();

 private:
  Streams() = default;
  Result<snapshot::StreamLog*> Find(std::string_view stream) const;
  // Deletes what retention allows of `stream` below `acked` (held by every
  // target).
  void ApplyRetention(const StreamConfig& config, snapshot::StreamLog& log, uint64_t acked);

  std::vector<StreamConfig> configs_;
  std::map<std::string, std::unique_ptr<snapshot::StreamLog>, std::less<>> logs_;

  mutable std::mutex mu_;
  std::condition_variable appended_;
  uint64_t generation_ = 0;                                       // guarded by mu_
  std::vector<std::string> targets_;                              // guarded by mu_
  std::map<std::string, std::map<std::string, uint64_t>> acked_;  // guarded by mu_
};

}  // namespace ferry::agent
