// ReplicationSender: pushes a snapshot from a local store to the far side of
// a FrameChannel, sending only the chunks the far side lacks.
//
//   hello -> for each batch of the snapshot's reference set: missing query ->
//   uploads of the missing sealed chunks, pipelined inside the upload window
//   -> wait for every upload ack -> commit (manifest + refs in parts) -> ack.
//
// Idempotent end to end: after a cut at any point, a new session runs the
// same push and the far side's answers to the missing queries skip whatever
// already arrived. A token bucket caps the upload rate.
//
// Errors: kUnavailable / kDeadlineExceeded when the link fails (retry with a
// new session); the peer's typed errors as sent; local store errors.
// Thread-safety: thread-compatible (one push at a time per sender).
#pragma once

#include <chrono>
#include <functional>

#include "mirror/replication/frame_channel.h"
#include "mirror/replication/token_bucket.h"
#include "snapshot/local_store.h"

namespace ferry::mirror {

struct SenderOptions {
  // Ids per missing query (also capped by the peer's max_query_ids).
  uint32_t query_batch = 4096;
  // Target size of one ChunkUpload frame.
  uint64_t upload_batch_bytes = 1u << 20;
  // Refs bytes per commit part.
  uint64_t refs_part_bytes = 1u << 20;
  // How long to wait for any answer before giving up on the session.
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
  // Upload rate limit; null = unlimited. Shared across sessions if wanted.
  TokenBucket* bandwidth = nullptr;
  std::string software = "ferry";
};

struct PushReport {
  snapshot::SnapshotId snapshot_id{};
  uint64_t chunks_referenced = 0;
  uint64_t chunks_missing = 0;  // what the far side lacked when asked
  uint64_t chunks_sent = 0;
  uint64_t bytes_sent = 0;  // sealed bytes uploaded
  uint64_t uploads = 0;
  uint64_t queries = 0;
  bool already_present = false;
  double seconds = 0;
};

class ReplicationSender {
 public:
  // `channel` and `store` must outlive the sender.
  ReplicationSender(FrameChannel& channel, snapshot::LocalStore& store, SenderOptions options = {});
  // A sender for Hello and Enroll only (Push is kFailedPrecondition).
  explicit ReplicationSender(FrameChannel& channel, SenderOptions options = {});

  // Exchanges Hello/HelloAck (once per session). kFailedPrecondition on a
  // version mismatch; kPermissionDenied if the far side does not know this
  // key (enroll first).
  Status Hello();
  // Pushes one snapshot (calls Hello() first if needed).
  Result<PushReport> Push(const snapshot::SnapshotId& id);

  // Enrollment of this key with a join token, on a fresh session. The far
  // side ends the session afterwards.
  Result<linkpb::EnrollResponse> Enroll(const linkpb::EnrollRequest& request);

  const linkpb::HelloAck& peer() const { return peer_; }
  // What the current or last push has done so far, also after it failed.
  const PushReport& progress() const { return progress_; }

 private:
  // channel_.Send, but when the link was closed, the far side's Error frame
  // received before the close (if any) is returned instead.
  Status Send(const linkpb::Envelope& envelope);
  Status SendUpload(linkpb::Envelope upload);
  // Receives one frame and applies it: UploadAcks return credit; the answer
  // to `want_request` (if non-zero) is returned to the caller.
  Result<std::optional<linkpb::Envelope>> ReceiveOne(uint64_t want_request);
  Result<linkpb::Envelope> WaitFor(uint64_t request_id);
  Status DrainUploads();
  uint64_t NextId() { return ++next_request_id_; }

  FrameChannel& channel_;
  snapshot::LocalStore* store_;  // null: enrollment only
  const SenderOptions options_;
  bool hello_done_ = false;
  linkpb::HelloAck peer_;
  uint64_t next_request_id_ = 0;
  uint64_t window_used_ = 0;  // bytes of unacknowledged uploads
  uint64_t uploads_pending_ = 0;
  PushReport progress_;
};

}  // namespace ferry::mirror
