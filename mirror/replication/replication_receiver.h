// ReplicationReceiver: the far side of a push — answers which chunks it
// lacks, stores uploaded sealed chunks, and commits snapshots into a
// LocalStore. Transport-free: it handles one Envelope at a time and says what
// to send back; ServeSession() runs it over a FrameChannel.
//
// It never sees plaintext or keys. It checks what it can without keys: sizes,
// sealed-chunk headers, that every data key a chunk names is known, the
// manifest's signature (and, through ReceiverPolicy, its signer), the refs'
// digest, and — before acknowledging a commit — that every referenced chunk
// is durable in the store.
//
// Protocol and state machine: docs/format/link.md.
// Thread-safety: thread-compatible (one per session); the store is shared.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mirror/replication/frame_channel.h"
#include "snapshot/chunk_store.h"
#include "snapshot/local_store.h"
#include "snapshot/stream_batch.h"

namespace ferry::mirror {

inline constexpr uint32_t kLinkProtocolVersion = 1;
// HelloAck.capabilities entry of a receiver that accepts AgentReport.
inline constexpr std::string_view kAgentReportCapability = "agent_report";
// AgentReport.last_error: senders cut it to this many bytes (BoundedUtf8);
// the receiver refuses a longer one.
inline constexpr size_t kMaxAgentReportErrorBytes = 1024;

// HelloAck.capabilities entry of a receiver that takes stream batches.
inline constexpr std::string_view kStreamsCapability = "streams";

// Where a receiver's copy of a stream ends: records [start, next) are held
// and durable (0, 0 for a stream never seen).
struct StreamPosition {
  uint64_t start = 0;
  uint64_t next = 0;
};

// Where a receiver keeps the stream batches of one session's peer (the hub:
// per tenant and agent). Called on the session's thread.
class StreamSink {
 public:
  virtual ~StreamSink() = default;
  virtual Result<StreamPosition> Position(const std::string& stream) = 0;
  // Stores one batch whose signature verified (`header`), durably, before
  // returning the new position. Idempotent: a batch wholly below `next` is
  // not stored again. kFailedPrecondition for a batch that would leave a
  // gap or overlaps the end; kPermissionDenied for a signer it does not
  // accept. Errors go to the peer and end the session.
  virtual Result<StreamPosition> Append(const snapshot::StreamBatchHeader& header,
                                        ByteView sealed) = 0;
};

// The checks a received AgentReport passes before anything stores it:
// last_error at most kMaxAgentReportErrorBytes, times not negative,
// pending_bytes at most INT64_MAX. kInvalidArgument naming the field.
Status ValidateAgentReport(const linkpb::AgentReport& report);

// What the receiving side allows a peer. The hub implements it with its
// catalog (tenants, agents, tokens); tests and tools with something simpler.
class ReceiverPolicy {
 public:
  virtual ~ReceiverPolicy() = default;
  // May this manifest be committed on this session? (e.g. the signer is the
  // enrolled agent's key.) An error is sent to the peer as is.
  virtual Status AuthorizeCommit(const snapshot::ParsedManifest& manifest) = 0;
  // Enrollment of an unknown key with a one-time join token.
  virtual Result<linkpb::EnrollResponse> Enroll(const linkpb::EnrollRequest& request,
                                                const sodium::PublicKey& peer) = 0;
  // After a snapshot is committed to the store (or found already there),
  // before the CommitAck goes out: e.g. the hub lists it in its catalog.
  // Must be idempotent. An error is sent to the peer instead of the ack
  // (the sender retries; the snapshot is then already present).
  virtual Status OnCommitted(const snapshot::ParsedManifest& /*manifest*/) { return OkStatus(); }
  // A valid AgentReport from the enrolled peer (ValidateAgentReport passed):
  // e.g. the hub stores it as the agent's latest. Called on the session's
  // thread. An error is sent to the peer and ends the session, so a policy
  // that cannot store a report should log it and return OK (reports are
  // best-effort; replication must not stop for them).
  virtual Status OnAgentReport(const linkpb::AgentReport& /*report*/) { return OkStatus(); }
  // Where this peer's stream batches go; null: the receiver does not take
  // streams (it does not list the capability and refuses stream frames).
  // Owned by the policy.
  virtual StreamSink* streams() { return nullptr; }
};

struct ReceiverOptions {
  uint64_t max_frame_bytes = 8u << 20;
  // Credit: ChunkUpload bytes the sender may have unacknowledged at once.
  uint64_t upload_window_bytes = 64u << 20;
  uint32_t max_query_ids = 8192;
  // Largest reference set accepted with a commit (36 bytes per chunk).
  uint64_t max_refs_bytes = 1ull << 30;
  std::string software = "ferry";
};

class ReplicationReceiver {
 public:
  // `store` and `policy` must outlive the receiver. `peer_enrolled`: whether
  // the authenticated peer key is known; if not, only Hello and
  // EnrollRequest are allowed.
  ReplicationReceiver(snapshot::ChunkStore& store, ReceiverPolicy& policy,
                      const sodium::PublicKey& peer, bool peer_enrolled,
                      ReceiverOptions options = {});
  // For a peer whose key is unknown: only Hello and EnrollRequest are
  // allowed, so no store is needed.
  ReplicationReceiver(ReceiverPolicy& policy, const sodium::PublicKey& peer,
                      ReceiverOptions options = {});
  ~ReplicationReceiver();

  // Handles one frame, appending the frames to send back to `out`. A non-OK
  // return means the session must end: `out` then holds an Error frame for
  // the peer.
  Status Handle(const linkpb::Envelope& in, std::vector<linkpb::Envelope>& out);
  // Makes what was received durable (called when the session ends).
  Status Finish();

  // An UploadAck goes out only once the upload's chunks are durable. Handle
  // holds acks and releases those whose chunks the store's background
  // flusher has made durable (ChunkStore::DurableMark); with half the upload
  // window held it flushes. The caller releases the rest when the sender
  // pauses (ServeSession: no frame for kAckLinger), since the sender then
  // waits for them.
  bool holds_acks() const { return !held_acks_.empty(); }
  // Appends the held acks whose chunks are durable by now (no waiting).
  void ReleaseDurableAcks(std::vector<linkpb::Envelope>& out);
  // Flushes the store and appends every held UploadAck to `out`.
  Status ReleaseAcks(std::vector<linkpb::Envelope>& out);

  struct Stats {
    uint64_t queries = 0;
    uint64_t uploads = 0;
    uint64_t chunks_received = 0;
    uint64_t chunks_new = 0;
    uint64_t bytes_received = 0;  // sealed bytes in uploads
    uint64_t bytes_new = 0;       // sealed bytes of the chunks new to the store
    uint64_t commits = 0;
    uint64_t reports = 0;         // AgentReports accepted
    uint64_t stream_batches = 0;  // StreamAppends stored (not those already held)
    uint64_t stream_records = 0;
    uint64_t stream_bytes = 0;  // sealed bytes of those batches
  };
  const Stats& stats() const { return stats_; }
  // Whether a commit is in progress (its refs arrive in parts).
  bool in_commit() const { return commit_ != nullptr; }
  // Whether the peer's Hello was answered (unsolicited frames may follow).
  bool hello_done() const { return hello_done_; }

 private:
  Status HandleHello(const linkpb::Envelope& in, std::vector<linkpb::Envelope>& out);
  Status HandleEnroll(const linkpb::Envelope& in, std::vector<linkpb::Envelope>& out);
  Status HandleQuery(const linkpb::Envelope& in, std::vector<linkpb::Envelope>& out);
  Status HandleUpload(const linkpb::Envelope& in, std::vector<linkpb::Envelope>& out);
  Status HandleCommit(const linkpb::Envelope& in, std::vector<linkpb::Envelope>& out);
  Status HandleAgentReport(const linkpb::Envelope& in);
  Status HandleStreamQuery(const linkpb::Envelope& in, std::vector<linkpb::Envelope>& out);
  Status HandleStreamAppend(const linkpb::Envelope& in, std::vector<linkpb::Envelope>& out);
  Status FinishCommit(uint64_t request_id, std::vector<linkpb::Envelope>& out);
  void ResetCommit();

  snapshot::ChunkStore* store_;  // null only for an unenrolled peer
  ReceiverPolicy& policy_;
  const sodium::PublicKey peer_;
  bool peer_enrolled_;
  const ReceiverOptions options_;
  bool hello_done_ = false;
  // A commit in progress (its refs arrive in parts).
  struct PendingCommit;
  std::unique_ptr<PendingCommit> commit_;
  struct HeldAck {
    linkpb::Envelope ack;
    uint64_t mark;      // the store's WriteMark after the upload
    uint64_t failures;  // the store's FailureCount after the upload
  };
  // kResourceExhausted/the store's failure when a pack failed after an ack
  // was held: its chunks may be lost, so it is never sent and the session
  // ends (the sender asks again what is missing).
  Status CheckHeldAcks();
  std::vector<HeldAck> held_acks_;  // UploadAcks waiting for durability, in order
  uint64_t held_bytes_ = 0;         // their credit
  Stats stats_;
};

struct ServeOptions {
  // The session ends (kDeadlineExceeded, told to the peer) when nothing was
  // received for this long. Default 120 s.
  std::chrono::milliseconds idle_timeout = std::chrono::seconds(120);
  // Optional; once true, the session ends at the next frame boundary
  // outside a commit in progress, telling the peer UNAVAILABLE "hub is
  // shutting down" (graceful shutdown: the current request finishes).
  const std::atomic<bool>* draining = nullptr;
  // Optional: frames this side sends unasked (the hub's PolicySync). Called
  // on the session's thread once the peer's Hello was answered — right
  // after the HelloAck, then after every frame handled and at least every
  // `poll_interval` — and what it returns is sent at once, so such frames
  // never interleave with an answer. Must not block for long; must not
  // throw.
  std::function<std::vector<linkpb::Envelope>()> unsolicited;
  // How often an idle session wakes up to look at `draining` and
  // `unsolicited` (the latency of a shutdown or a policy push). Default
  // 200 ms.
  std::chrono::milliseconds poll_interval = std::chrono::milliseconds(200);
};

// Runs `receiver` over `channel` until the peer closes or an error ends the
// session; flushes the store at the end. Returns how the session ended
// (kUnavailable: the peer went away). A Ping from the peer is answered and,
// like every frame, resets the idle timer.
Status ServeSession(FrameChannel& channel, ReplicationReceiver& receiver,
                    const ServeOptions& options);
// The same with only an idle timeout and a drain flag.
Status ServeSession(FrameChannel& channel, ReplicationReceiver& receiver,
                    std::chrono::milliseconds idle_timeout = std::chrono::seconds(120),
                    const std::atomic<bool>* draining = nullptr);

}  // namespace ferry::mirror
