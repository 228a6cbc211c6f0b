#include "mirror/replication/replication_receiver.h"

#include <algorithm>
#include <cstdint>

#include "core/crash_site.h"
#include "core/log.h"
#include "core/version.h"
#include "mirror/replication/envelope_codec.h"
#include "snapshot/keyset.h"
#include "snapshot/ref_set.h"
#include "snapshot/sealed_chunk.h"

namespace ferry::mirror {

using snapshot::ChunkId;
using snapshot::KeyId;

struct ReplicationReceiver::PendingCommit {
  uint64_t request_id = 0;
  Bytes manifest;
  uint64_t refs_size = 0;
  uint64_t refs_received = 0;
  std::string refs_path;
  std::unique_ptr<WritableFile> refs_file;
};

namespace {

Status Violation(const std::string& what) {
  return InvalidArgumentError("protocol violation: " + what);
}

}  // namespace

Status ValidateAgentReport(const linkpb::AgentReport& r) {
  if (r.last_error().size() > kMaxAgentReportErrorBytes) {
    return InvalidArgumentError(
        "agent_report.last_error of " + std::to_string(r.last_error().size()) +
        " bytes exceeds the limit of " + std::to_string(kMaxAgentReportErrorBytes));
  }
  if (r.last_error_unix() < 0 || r.reported_unix() < 0) {
    return InvalidArgumentError("agent_report: negative time");
  }
  if (r.pending_bytes() > static_cast<uint64_t>(INT64_MAX)) {
    return InvalidArgumentError("agent_report.pending_bytes out of range");
  }
  return OkStatus();
}

ReplicationReceiver::ReplicationReceiver(snapshot::ChunkStore& store, ReceiverPolicy& policy,
                                         const sodium::PublicKey& peer, bool peer_enrolled,
                                         ReceiverOptions options)
    : store_(&store),
      policy_(policy),
      peer_(peer),
      peer_enrolled_(peer_enrolled),
      options_(std::move(options)) {}

ReplicationReceiver::ReplicationReceiver(ReceiverPolicy& policy, const sodium::PublicKey& peer,
                                         ReceiverOptions options)
    : store_(nullptr),
      policy_(policy),
      peer_(peer),
      peer_enrolled_(false),
      options_(std::move(options)) {}

ReplicationReceiver::~ReplicationReceiver() { ResetCommit(); }

void ReplicationReceiver::ResetCommit() {
  if (!commit_) return;
  if (commit_->refs_file) commit_->refs_file->Close().IgnoreError();
  if (!commit_->refs_path.empty()) Env::Default()->RemoveFile(commit_->refs_path).IgnoreError();
  commit_.reset();
}

Status ReplicationReceiver::Handle(const linkpb::Envelope& in, std::vector<linkpb::Envelope>& out) {
  Status s;
  if (!hello_done_ && in.body_case() != linkpb::Envelope::kHello) {
    s = Violation(std::string("expected hello first, got ") + BodyName(in));
  } else if (!peer_enrolled_ && in.body_case() != linkpb::Envelope::kHello &&
             in.body_case() != linkpb::Envelope::kEnrollRequest) {
    s = PermissionDeniedError(
        "this key is not enrolled: the only thing it may do is present a "
        "join token (got " +
        std::string(BodyName(in)) + ")");
  } else {
    switch (in.body_case()) {
      case linkpb::Envelope::kHello:
        s = HandleHello(in, out);
        break;
      case linkpb::Envelope::kEnrollRequest:
        s = HandleEnroll(in, out);
        break;
      case linkpb::Envelope::kMissingQuery:
        s = HandleQuery(in, out);
        break;
      case linkpb::Envelope::kChunkUpload:
        s = HandleUpload(in, out);
        break;
      case linkpb::Envelope::kCommitRequest:
        s = HandleCommit(in, out);
        break;
      case linkpb::Envelope::kPing: {
        linkpb::Envelope pong;
        pong.set_request_id(in.request_id());
        pong.mutable_pong()->set_nonce(in.ping().nonce());
        out.push_back(std::move(pong));
        break;
      }
      case linkpb::Envelope::kPong:
        break;
      case linkpb::Envelope::kAgentReport:
        s = HandleAgentReport(in);
        break;
      case linkpb::Envelope::kStreamQuery:
        s = HandleStreamQuery(in, out);
        break;
      case linkpb::Envelope::kStreamAppend:
        s = HandleStreamAppend(in, out);
        break;
      case linkpb::Envelope::kError:
        s = StatusFromError(in.error());
        if (s.ok()) s = AbortedError("peer sent an error without a code");
        return s;  // the peer is ending the session: no answer
      default:
        s = Violation(std::string("unexpected ") + BodyName(in));
        break;
    }
  }
  if (!s.ok()) out.push_back(ErrorEnvelope(in.request_id(), s));
  return s;
}

Status ReplicationReceiver::HandleHello(const linkpb::Envelope& in,
                                        std::vector<linkpb::Envelope>& out) {
  if (hello_done_) return Violation("second hello");
  const linkpb::Hello& h = in.hello();
  if (h.min_version() > kLinkProtocolVersion || h.max_version() < kLinkProtocolVersion) {
    return FailedPreconditionError("link protocol version mismatch: peer speaks " +
                                   std::to_string(h.min_version()) + ".." +
                                   std::to_string(h.max_version()) + ", this side speaks " +
                                   std::to_string(kLinkProtocolVersion));
  }
  hello_done_ = true;
  linkpb::Envelope e;
  e.set_request_id(in.request_id());
  linkpb::HelloAck* ack = e.mutable_hello_ack();
  ack->set_version(kLinkProtocolVersion);
  ack->set_software(options_.software + " " + kFerryVersion);
  ack->set_max_frame_bytes(options_.max_frame_bytes);
  ack->set_upload_window_bytes(options_.upload_window_bytes);
  ack->set_max_query_ids(options_.max_query_ids);
  ack->set_enrolled(peer_enrolled_);
  ack->add_capabilities(std::string(kAgentReportCapability));
  if (peer_enrolled_ && policy_.streams() != nullptr) {
    ack->add_capabilities(std::string(kStreamsCapability));
  }
  out.push_back(std::move(e));
  return OkStatus();
}

Status ReplicationReceiver::HandleEnroll(const linkpb::Envelope& in,
                                         std::vector<linkpb::Envelope>& out) {
  if (peer_enrolled_) return Violation("enrollment from a key that is already enrolled");
  ASSIGN_OR_RETURN(linkpb::EnrollResponse response, policy_.Enroll(in.enroll_request(), peer_));
  linkpb::Envelope e;
  e.set_request_id(in.request_id());
  *e.mutable_enroll_response() = std::move(response);
  out.push_back(std::move(e));
  // The session ends here: the now-enrolled key reconnects for real work.
  return CancelledError("enrolled; reconnect to replicate");
}

Status ReplicationReceiver::HandleAgentReport(const linkpb::Envelope& in) {
  // Not answered: the sender does not wait for anything.
  RETURN_IF_ERROR(ValidateAgentReport(in.agent_report()));
  RETURN_IF_ERROR(policy_.OnAgentReport(in.agent_report()));
  ++stats_.reports;
  return OkStatus();
}

namespace {

linkpb::Envelope StreamAckEnvelope(uint64_t request_id, const std::string& stream,
                                   const StreamPosition& p) {
  linkpb::Envelope e;
  e.set_request_id(request_id);
  linkpb::StreamAck* ack = e.mutable_stream_ack();
  ack->set_stream(stream);
  ack->set_next_offset(p.next);
  ack->set_start_offset(p.start);
  return e;
}

}  // namespace

Status ReplicationReceiver::HandleStreamQuery(const linkpb::Envelope& in,
                                              std::vector<linkpb::Envelope>& out) {
  StreamSink* sink = policy_.streams();
  if (sink == nullptr) return UnimplementedError("this side does not take streams");
  const std::string& stream = in.stream_query().stream();
  ASSIGN_OR_RETURN(StreamPosition p, sink->Position(stream));
  out.push_back(StreamAckEnvelope(in.request_id(), stream, p));
  return OkStatus();
}

Status ReplicationReceiver::HandleStreamAppend(const linkpb::Envelope& in,
                                               std::vector<linkpb::Envelope>& out) {
  StreamSink* sink = policy_.streams();
  if (sink == nullptr) return UnimplementedError("this side does not take streams");
  const linkpb::StreamAppend& a = in.stream_append();
  const ByteView sealed(reinterpret_cast<const uint8_t*>(a.sealed_batch().data()),
                        a.sealed_batch().size());
  ASSIGN_OR_RETURN(snapshot::StreamBatchHeader h, snapshot::VerifyStreamBatch(sealed));
  if (h.stream != a.stream() || h.first_offset != a.first_offset() ||
      h.record_count != a.record_count()) {
    return Violation("stream_append for " + a.stream() + " at " + std::to_string(a.first_offset()) +
                     " (" + std::to_string(a.record_count()) + " records) carries a batch of " +
                     h.stream + " at " + std::to_string(h.first_offset) + " (" +
                     std::to_string(h.record_count) + " records)");
  }
  ASSIGN_OR_RETURN(StreamPosition before, sink->Position(h.stream));
  ASSIGN_OR_RETURN(StreamPosition p, sink->Append(h, sealed));
  if (p.next > before.next) {
    ++stats_.stream_batches;
    stats_.stream_records += h.record_count;
    stats_.stream_bytes += sealed.size();
  }
  FERRY_CRASH_SITE("receiver.before_stream_ack");
  out.push_back(StreamAckEnvelope(in.request_id(), h.stream, p));
  return OkStatus();
}

Status ReplicationReceiver::HandleQuery(const linkpb::Envelope& in,
                                        std::vector<linkpb::Envelope>& out) {
  const linkpb::MissingQuery& q = in.missing_query();
  if (static_cast<uint32_t>(q.ids_size()) > options_.max_query_ids) {
    return Violation("query of " + std::to_string(q.ids_size()) + " ids exceeds the limit of " +
                     std::to_string(options_.max_query_ids));
  }
  ++stats_.queries;
  linkpb::Envelope e;
  e.set_request_id(in.request_id());
  linkpb::MissingReply* reply = e.mutable_missing_reply();
  for (const std::string& raw : q.ids()) {
    Result<ChunkId> id = snapshot::ArrayFromBytes<32>(AsBytes(raw), "chunk id");
    if (!id.ok()) return Violation(id.status().message());
    ASSIGN_OR_RETURN(std::optional<uint32_t> size, store_->ChunkSealedSize(*id));
    if (!size) reply->add_missing(raw);
  }
  out.push_back(std::move(e));
  return OkStatus();
}

Status ReplicationReceiver::HandleUpload(const linkpb::Envelope& in,
                                         std::vector<linkpb::Envelope>& out) {
  const linkpb::ChunkUpload& up = in.chunk_upload();
  ++stats_.uploads;
  // Keys first: every chunk must name a key in this upload or in the store.
  std::vector<std::pair<KeyId, const std::string*>> keys;
  for (const linkpb::DataKey& k : up.keys()) {
    Result<KeyId> id = snapshot::ArrayFromBytes<16>(AsBytes(k.key_id()), "data key id");
    if (!id.ok()) return Violation(id.status().message());
    if (k.wrapped().size() != snapshot::kWrappedDataKeySize) {
      return Violation("wrapped data key of " + std::to_string(k.wrapped().size()) + " bytes");
    }
    keys.emplace_back(*id, &k.wrapped());
  }
  uint32_t new_chunks = 0;
  for (const linkpb::SealedChunk& c : up.chunks()) {
    Result<ChunkId> id = snapshot::ArrayFromBytes<32>(AsBytes(c.id()), "chunk id");
    if (!id.ok()) return Violation(id.status().message());
    Result<snapshot::SealedChunkHeader> header =
        snapshot::ParseSealedChunkHeader(AsBytes(c.sealed()));
    if (!header.ok()) {
      return DataLossError("uploaded chunk " + HexEncode(ByteView(id->data(), 8)) + ": " +
                           header.status().message());
    }
    Bytes wrapped;
    auto it = std::find_if(keys.begin(), keys.end(),
                           [&](const auto& k) { return k.first == header->key_id; });
    if (it != keys.end()) {
      wrapped.assign(it->second->begin(), it->second->end());
    } else {
      Result<Bytes> stored = store_->WrappedKey(header->key_id);
      if (!stored.ok()) {
        return Violation("chunk " + HexEncode(ByteView(id->data(), 8)) +
                         " is sealed under data key " + HexEncode(header->key_id) +
                         ", which was neither uploaded nor stored");
      }
      wrapped = std::move(*stored);
    }
    ASSIGN_OR_RETURN(snapshot::PutResult put,
                     store_->PutChunk(*id, AsBytes(c.sealed()), header->key_id, wrapped));
    ++stats_.chunks_received;
    stats_.bytes_received += c.sealed().size();
    if (put.added) {
      ++new_chunks;
      ++stats_.chunks_new;
      stats_.bytes_new += c.sealed().size();
    }
  }
  linkpb::Envelope e;
  e.set_request_id(in.request_id());
  linkpb::UploadAck* ack = e.mutable_upload_ack();
  ack->set_chunks(static_cast<uint32_t>(up.chunks_size()));
  ack->set_new_chunks(new_chunks);
  ack->set_credit_bytes(in.ByteSizeLong());
  // An upload is acknowledged only once its chunks are durable. Acks are
  // held and released together after one store flush (group commit): when
  // half the window is held, or when no frame is waiting (ReleaseAcks from
  // ServeSession), so a sender that waits for credit is never kept waiting.
  held_bytes_ += ack->credit_bytes();
  held_acks_.push_back({std::move(e), store_->WriteMark(), store_->FailureCount()});
  if (held_bytes_ >= options_.upload_window_bytes / 2) return ReleaseAcks(out);
  ReleaseDurableAcks(out);
  return CheckHeldAcks();
}

Status ReplicationReceiver::CheckHeldAcks() {
  if (held_acks_.empty() || held_acks_.front().failures == store_->FailureCount()) {
    return OkStatus();
  }
  Status why = store_->LastFailure();
  if (why.ok()) why = InternalError("a pack could not be written");
  return why.WithContext("received chunks were lost before they were durable; ask again");
}

void ReplicationReceiver::ReleaseDurableAcks(std::vector<linkpb::Envelope>& out) {
  if (held_acks_.empty()) return;
  const uint64_t durable = store_->DurableMark();
  const uint64_t failures = store_->FailureCount();
  size_t n = 0;
  // Never an ack whose chunks a failed pack may have held.
  while (n < held_acks_.size() && held_acks_[n].mark <= durable &&
         held_acks_[n].failures == failures) {
    held_bytes_ -= held_acks_[n].ack.upload_ack().credit_bytes();
    FERRY_CRASH_SITE("receiver.before_upload_ack");
    out.push_back(std::move(held_acks_[n].ack));
    ++n;
  }
  held_acks_.erase(held_acks_.begin(), held_acks_.begin() + static_cast<ptrdiff_t>(n));
}

Status ReplicationReceiver::ReleaseAcks(std::vector<linkpb::Envelope>& out) {
  if (held_acks_.empty()) return OkStatus();
  RETURN_IF_ERROR(store_->Flush());
  RETURN_IF_ERROR(CheckHeldAcks());
  for (HeldAck& h : held_acks_) {
    FERRY_CRASH_SITE("receiver.before_upload_ack");
    out.push_back(std::move(h.ack));
  }
  held_acks_.clear();
  held_bytes_ = 0;
  return OkStatus();
}

Status ReplicationReceiver::HandleCommit(const linkpb::Envelope& in,
                                         std::vector<linkpb::Envelope>& out) {
  const linkpb::CommitRequest& c = in.commit_request();
  if (!commit_) {
    if (c.manifest().empty()) return Violation("commit part without a manifest starts no commit");
    if (c.manifest().size() > snapshot::kMaxManifestBodySize + 4096) {
      return Violation("manifest too large");
    }
    if (c.refs_size() > options_.max_refs_bytes) {
      return ResourceExhaustedError("reference set of " + std::to_string(c.refs_size()) +
                                    " bytes exceeds the limit of " +
                                    std::to_string(options_.max_refs_bytes));
    }
    commit_ = std::make_unique<PendingCommit>();
    commit_->request_id = in.request_id();
    commit_->manifest.assign(c.manifest().begin(), c.manifest().end());
    commit_->refs_size = c.refs_size();
    commit_->refs_path =
        store_->staging_dir() + "/recv-refs-" + HexEncode(sodium::RandomArray<8>()) + ".tmp";
    ASSIGN_OR_RETURN(commit_->refs_file, Env::Default()->NewWritableFile(commit_->refs_path, 0644));
  } else if (!c.manifest().empty()) {
    return Violation("a second manifest inside one commit");
  }
  if (commit_->refs_received + c.refs_part().size() > commit_->refs_size) {
    return Violation("reference set longer than announced");
  }
  RETURN_IF_ERROR(commit_->refs_file->Append(AsBytes(c.refs_part())));
  commit_->refs_received += c.refs_part().size();
  if (!c.last()) return OkStatus();
  if (commit_->refs_received != commit_->refs_size) {
    return Violation("reference set shorter than announced");
  }
  // Uploads not yet acknowledged are acknowledged first (one flush makes
  // them durable), so the sender need not wait for them before committing.
  RETURN_IF_ERROR(ReleaseAcks(out));
  return FinishCommit(commit_->request_id, out);
}

Status ReplicationReceiver::FinishCommit(uint64_t request_id, std::vector<linkpb::Envelope>& out) {
  std::unique_ptr<PendingCommit> c = std::move(commit_);
  auto cleanup = [&] { Env::Default()->RemoveFile(c->refs_path).IgnoreError(); };
  Status s = c->refs_file->Sync();
  Status closed = c->refs_file->Close();
  if (s.ok()) s = closed;
  if (!s.ok()) {
    cleanup();
    return s;
  }
  // The manifest: signature, then who signed it.
  Result<snapshot::ParsedManifest> m = snapshot::ParseManifest(std::move(c->manifest), "uploaded");
  if (!m.ok()) {
    cleanup();
    return m.status();
  }
  if (Status auth = policy_.AuthorizeCommit(*m); !auth.ok()) {
    cleanup();
    return auth;
  }
  linkpb::Envelope e;
  e.set_request_id(request_id);
  linkpb::CommitAck* ack = e.mutable_commit_ack();
  ack->set_snapshot_id(m->id.data(), m->id.size());
  // Listed, not merely a manifest file: a commit whose snapshot row failed
  // leaves the file behind and must be committed again.
  Result<bool> committed_before = store_->IsCommitted(m->id);
  if (!committed_before.ok()) {
    cleanup();
    return committed_before.status();
  }
  if (*committed_before) {
    cleanup();
    // Recorded again: a crash may have come between the store's commit and
    // the policy's record of it (OnCommitted must be idempotent).
    RETURN_IF_ERROR(policy_.OnCommitted(*m));
    ack->set_already_present(true);
    out.push_back(std::move(e));
    return OkStatus();
  }
  // Completeness and the refs digest are checked by the store, which also
  // makes everything durable before the snapshot is listed.
  Status committed = store_->CommitSnapshot(*m, c->refs_path);
  if (!committed.ok()) {
    cleanup();
    if (committed.code() == StatusCode::kFailedPrecondition) {
      // Chunks missing (e.g. lost with a crash before they were durable): the
      // sender asks again and re-sends them; the session goes on.
      out.push_back(ErrorEnvelope(request_id, committed));
      return OkStatus();
    }
    return committed;
  }
  ++stats_.commits;
  log::Info("link: committed snapshot {} from {}", HexEncode(m->id).substr(0, 12),
            HexEncode(ByteView(peer_.data(), 8)));
  // The ack goes out only once the policy has recorded the snapshot too.
  RETURN_IF_ERROR(policy_.OnCommitted(*m));
  FERRY_CRASH_SITE("receiver.before_commit_ack");
  out.push_back(std::move(e));
  return OkStatus();
}

Status ReplicationReceiver::Finish() { return store_ ? store_->Flush() : OkStatus(); }

Status ServeSession(FrameChannel& channel, ReplicationReceiver& receiver,
                    std::chrono::milliseconds idle_timeout, const std::atomic<bool>* draining) {
  ServeOptions options;
  options.idle_timeout = idle_timeout;
  options.draining = draining;
  return ServeSession(channel, receiver, options);
}

// How long held upload acks wait for more frames before a flush releases them.
constexpr std::chrono::milliseconds kAckLinger{20};

Status ServeSession(FrameChannel& channel, ReplicationReceiver& receiver,
                    const ServeOptions& options) {
  const std::chrono::milliseconds idle_timeout = options.idle_timeout;
  const std::atomic<bool>* draining = options.draining;
  Status ended;
  std::vector<linkpb::Envelope> out;
  // While draining or unsolicited frames are possible, wait in short slices
  // so that an idle session notices them promptly.
  const bool poll = draining != nullptr || options.unsolicited != nullptr;
  const auto slice = poll ? std::min(idle_timeout, options.poll_interval) : idle_timeout;
  auto last_frame = std::chrono::steady_clock::now();
  while (true) {
    if (draining && draining->load() && !receiver.in_commit()) {
      ended = UnavailableError("hub is shutting down; reconnect later");
      channel.Send(ErrorEnvelope(0, ended)).IgnoreError();
      channel.Close(ended);
      break;
    }
    if (options.unsolicited && receiver.hello_done()) {
      Status sent;
      for (const linkpb::Envelope& e : options.unsolicited()) {
        sent = channel.Send(e);
        if (!sent.ok()) break;
      }
      if (!sent.ok()) {
        ended = sent;
        if (sent.code() != StatusCode::kUnavailable) channel.Close(sent);
        break;
      }
    }
    // While uploads wait for their ack and frames keep coming, go on (the
    // receiver releases them as their packs become durable, and flushes at
    // half a window or at a commit). Once the sender pauses for kAckLinger
    // — its window is used up, or it waits for the acks — flush and ack.
    const bool holding = receiver.holds_acks();
    Result<linkpb::Envelope> in = channel.Receive(holding ? kAckLinger : slice);
    if (holding && !in.ok() && in.status().code() == StatusCode::kDeadlineExceeded) {
      out.clear();
      Status released = receiver.ReleaseAcks(out);
      Status sent;
      for (const linkpb::Envelope& e : out) {
        sent = channel.Send(e);
        if (!sent.ok()) break;
      }
      if (!released.ok()) {
        ended = released;
        channel.Send(ErrorEnvelope(0, released)).IgnoreError();
        channel.Close(released);
        break;
      }
      if (!sent.ok()) {
        ended = sent;
        break;
      }
      continue;
    }
    if (!in.ok() && in.status().code() == StatusCode::kDeadlineExceeded && poll &&
        std::chrono::steady_clock::now() - last_frame < idle_timeout) {
      continue;
    }
    if (!in.ok()) {
      ended = in.status();
      if (ended.code() != StatusCode::kUnavailable) {
        channel.Send(ErrorEnvelope(0, ended)).IgnoreError();
        channel.Close(ended);
      }
      break;
    }
    last_frame = std::chrono::steady_clock::now();
    out.clear();
    Status s = receiver.Handle(*in, out);
    if (s.ok()) receiver.ReleaseDurableAcks(out);
    Status sent;
    for (const linkpb::Envelope& e : out) {
      sent = channel.Send(e);
      if (!sent.ok()) break;
    }
    if (!s.ok()) {
      ended = s;
      channel.Close(s);
      break;
    }
    if (!sent.ok()) {
      ended = sent;
      break;
    }
  }
  Status flushed = receiver.Finish();
  if (!flushed.ok()) log::Error("link: flushing received chunks failed: {}", flushed.ToString());
  return ended;
}

}  // namespace ferry::mirror
