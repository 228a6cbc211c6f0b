// ReplicationSender: pushes a snapshot from a local store to the far side of
// a FrameChannel, sending only the chunks the far side lacks.
//
//   hello -> for each batch of the snapshot's reference set: missing query ->
//   uploads of the missing sealed chunks, pipelined inside the upload window
//   -> commit (manifest + refs in parts) -> the remaining upload acks (the
//   far side sends them once the chunks are durable) and the commit ack.
//
// Idempotent end to end: after a cut at any point, a new session runs the
// same push and the far side's answers to the missing queries skip whatever
// already arrived. A token bucket caps the upload rate.
//
// Between pushes the session can stay open: Listen() waits for what the far
// side sends unasked (the hub's PolicySync: the mirror policies that select
// this agent) and keeps the session alive with Pings. A PolicySync may
// arrive between any two frames, also during Hello and Push; each one goes
// to SenderOptions::on_policy_sync.
//
// Frames this side sends unasked (the agent's AgentReport) come from
// SenderOptions::unsolicited, which the sender asks between its own frames.
//
// Errors: kUnavailable / kDeadlineExceeded when the link fails (retry with a
// new session); the peer's typed errors as sent; local store errors.
// Thread-safety: thread-compatible (one push at a time per sender).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "mirror/replication/frame_channel.h"
#include "mirror/replication/replication_receiver.h"
#include "mirror/replication/token_bucket.h"
#include "snapshot/local_store.h"
#include "snapshot/ref_set.h"

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
  // Called on the calling thread (inside Hello, Enroll, Push or Listen)
  // for every PolicySync the far side sends: the complete set of policies
  // that select this agent (an empty list means none), which replaces the
  // previous set. Null: syncs are read and dropped. Must not throw or call
  // back into the sender.
  std::function<void(const linkpb::PolicySync&)> on_policy_sync;
  // Listen() sends a Ping when nothing was sent for this long, so that an
  // idle session outlives the far side's idle timeout (the hub's is 120 s:
  // keep this at most a third of it). 0 = never. Default 30 s.
  std::chrono::milliseconds keepalive_interval = std::chrono::seconds(30);
  // Frames to send unasked (request_id 0, nothing answers them), such as the
  // agent's AgentReport. Asked on the calling thread once the far side has
  // answered Hello and knows this key: right after the HelloAck, before each
  // missing query and each upload of a Push, and in Listen before each wait.
  // What it returns is sent at once, between two of the sender's own
  // frames. It must be quick (it is asked often) and must not throw or call
  // back into the sender. Check PeerHas() before sending optional messages.
  // Null: nothing is sent unasked.
  std::function<std::vector<linkpb::Envelope>()> unsolicited;
};

struct PushReport {
  snapshot::SnapshotId snapshot_id{};
  uint64_t chunks_referenced = 0;
  uint64_t chunks_held = 0;     // not asked about: in the refs of a snapshot it holds
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
  // A sender for Hello, Enroll and Listen only (Push is kFailedPrecondition).
  explicit ReplicationSender(FrameChannel& channel, SenderOptions options = {});

  // Exchanges Hello/HelloAck (once per session). kFailedPrecondition on a
  // version mismatch; kPermissionDenied if the far side does not know this
  // key (enroll first).
  Status Hello();
  // Pushes one snapshot (calls Hello() first if needed). `held`: a snapshot
  // the far side committed earlier (typically the last one of the same
  // dataset); ids in its refs are taken as present and not asked about, which
  // makes an unchanged snapshot cost O(changed chunks) on the link instead of
  // O(chunks). Should the far side no longer have them, its commit check
  // refuses the snapshot (kFailedPrecondition) and the push asks about every
  // id once more. Ignored when its refs are not in the store.
  Result<PushReport> Push(const snapshot::SnapshotId& id,
                          const std::optional<snapshot::SnapshotId>& held = std::nullopt);

  // Waits up to `timeout` for one frame from the far side while no push
  // runs (calls Hello() first if needed) and applies it: a PolicySync goes
  // to on_policy_sync, a Ping is answered with a Pong, a Pong is dropped,
  // an Error is returned as its status (the session is over). Sends a Ping
  // whenever nothing was sent for keepalive_interval. Returns OkStatus after
  // one frame or when `timeout` passed with none; kPermissionDenied when
  // the far side does not know this key, kUnavailable when the link closed,
  // kDataLoss for a frame that answers nothing.
  Status Listen(std::chrono::milliseconds timeout);

  // Streams (the far side lists kStreamsCapability; kUnimplemented if not).
  // Where the far side's copy of `stream` ends.
  Result<StreamPosition> QueryStream(const std::string& stream);
  // Sends one sealed batch (snapshot/stream_batch.h) without waiting for
  // its StreamAck; returns the request id to wait for with WaitStreamAck.
  // Acks come back in the order the batches were sent, so a sender may keep
  // several in flight and wait for them in order.
  Result<uint64_t> SendStreamAppend(const std::string& stream, uint64_t first_offset,
                                    uint32_t record_count, std::string sealed_batch);
  // Waits (up to options.timeout per frame) for the StreamAck of a batch.
  Result<StreamPosition> WaitStreamAck(uint64_t request_id);

  // Enrollment of this key with a join token, on a fresh session. The far
  // side ends the session afterwards.
  Result<linkpb::EnrollResponse> Enroll(const linkpb::EnrollRequest& request);

  const linkpb::HelloAck& peer() const { return peer_; }
  // Whether the far side's HelloAck lists `capability` (false before Hello).
  bool PeerHas(std::string_view capability) const;
  // What the current or last push has done so far, also after it failed.
  const PushReport& progress() const { return progress_; }

 private:
  // channel_.Send, but when the link was closed, the far side's Error frame
  // received before the close (if any) is returned instead.
  Result<PushReport> PushOnce(const snapshot::SnapshotId& id, snapshot::RefSetReader* held);
  Status Send(const linkpb::Envelope& envelope);
  Status SendUpload(linkpb::Envelope upload);
  // Receives one frame (waiting up to options_.timeout) and applies it.
  Result<std::optional<linkpb::Envelope>> ReceiveOne(uint64_t want_request);
  // Applies one received frame: UploadAcks return credit, PolicySyncs go to
  // the callback, Pings are answered; the answer to `want_request` (if
  // non-zero) is returned to the caller.
  Result<std::optional<linkpb::Envelope>> Apply(linkpb::Envelope e, uint64_t want_request);
  Result<linkpb::Envelope> WaitFor(uint64_t request_id);
  Status DrainUploads();
  // Hello, the far side lists "streams", and what is due unasked is sent:
  // before each stream request.
  Status ReadyForStreams();
  // Sends what options_.unsolicited returns (after an answered Hello from a
  // known key only).
  Status SendUnsolicited();
  uint64_t NextId() { return ++next_request_id_; }

  FrameChannel& channel_;
  snapshot::LocalStore* store_;  // null: enrollment only
  const SenderOptions options_;
  bool hello_done_ = false;
  linkpb::HelloAck peer_;
  uint64_t next_request_id_ = 0;
  uint64_t window_used_ = 0;  // bytes of unacknowledged uploads
  uint64_t uploads_pending_ = 0;
  int64_t last_send_nanos_ = 0;  // monotonic time of the last frame sent
  PushReport progress_;
  // StreamAppends sent and not yet acknowledged: request id, stream.
  std::vector<std::pair<uint64_t, std::string>> streams_in_flight_;
};

}  // namespace ferry::mirror
