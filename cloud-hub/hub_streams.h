// HubStreams: the hub's copy of its agents' streams. One StreamLog per
// (tenant, agent, stream) under DATA/tenants/<tenant>/streams/<agent>/<stream>/
// (docs/data-dir.md), each record of which is one sealed batch as the agent
// sent it (docs/format/stream-batch.md): the hub stores ciphertext only and
// serves it back by record offset.
//
// Appends are checked and made durable (fdatasync) before they return, so a
// StreamAck sent after Append is a promise. They are idempotent: a batch
// wholly below the stream's next offset is acknowledged again without being
// stored; a batch must otherwise start exactly at the next offset (no gap,
// no overlap), and never below the first offset held — except the first batch of a stream, which
// may start anywhere (an agent's log may have dropped older records before this hub was added). An
// in-memory index (16 bytes per batch), rebuilt when a stream is first used after a restart by
// reading its batch headers, finds the batch that holds an offset.
//
// A stream whose append failed (a full disk, an I/O error) is closed and
// opened again (recovered) at its next use: work resumes when space
// returns, without a restart.
//
// Errors: kInvalidArgument (bad tenant, agent or stream name),
// kFailedPrecondition (a gap or an overlap), kNotFound (Read of a stream
// never received), kOutOfRange (Read below the first or past the next
// offset), kDataLoss (a stored batch that no longer parses), I/O errors.
// Thread-safety: thread-safe; appends to one stream are serialized, reads
// run beside them.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "core/bytes.h"
#include "core/status.h"
#include "mirror/replication/replication_receiver.h"
#include "snapshot/stream_batch.h"

namespace ferry::hub {

class HubStreams {
 public:
  // `data_dir` is the hub's data dir.
  explicit HubStreams(std::string data_dir);
  ~HubStreams();

  // The stream's position; {0, 0} for a stream never received.
  Result<mirror::StreamPosition> Position(const std::string& tenant, const std::string& agent,
                                          const std::string& stream);
  // Stores a batch whose signature was verified (durably), see above.
  Result<mirror::StreamPosition> Append(const std::string& tenant, const std::string& agent,
                                        const snapshot::StreamBatchHeader& header, ByteView sealed);

  struct ReadResult {
    std::vector<Bytes> batches;  // in order; the first one holds `from`
    mirror::StreamPosition position;
  };
  // The batches from the one holding `from` on, totalling at most
  // `max_bytes` (at least one batch when from < next). Empty when from ==
  // next.
  Result<ReadResult> Read(const std::string& tenant, const std::string& agent,
                          const std::string& stream, uint64_t from, size_t max_bytes);

  struct Info {
    std::string agent;
    std::string stream;
    mirror::StreamPosition position;
    uint64_t batches = 0;
    uint64_t bytes = 0;  // on disk
  };
  // Every stream of the tenant (of one agent if `agent` is not empty), by
  // agent and name.
  Result<std::vector<Info>> List(const std::string& tenant, const std::string& agent = "");

  // Syncs and closes every open stream.
  Status CloseAll();

 private:
  struct Stream;
  // The stream, opened (and indexed) on first use. With create = false, a
  // stream with no directory is kNotFound.
  Result<std::shared_ptr<Stream>> Get(const std::string& tenant, const std::string& agent,
                                      const std::string& stream, bool create);
  std::string Dir(const std::string& tenant, const std::string& agent,
                  const std::string& stream) const;

  const std::string data_dir_;
  std::mutex mu_;
  std::map<std::tuple<std::string, std::string, std::string>, std::shared_ptr<Stream>> open_;
};

}  // namespace ferry::hub
