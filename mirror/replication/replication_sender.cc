#include "mirror/replication/replication_sender.h"

#include <algorithm>

#include "core/clock.h"
#include "core/log.h"
#include "core/version.h"
#include "mirror/replication/envelope_codec.h"
#include "mirror/replication/replication_receiver.h"
#include "snapshot/ref_set.h"
#include "snapshot/sealed_chunk.h"

namespace ferry::mirror {

using snapshot::ChunkId;

namespace {
// Bytes an Envelope adds around a ChunkUpload's content, generously.
constexpr uint64_t kFrameOverhead = 4096;
// Smallest slice of the refs sent in one commit part.
constexpr uint64_t kMinRefsPart = 4096;
}  // namespace

ReplicationSender::ReplicationSender(FrameChannel& channel, snapshot::LocalStore& store,
                                     SenderOptions options)
    : channel_(channel), store_(&store), options_(std::move(options)) {}

ReplicationSender::ReplicationSender(FrameChannel& channel, SenderOptions options)
    : channel_(channel), store_(nullptr), options_(std::move(options)) {}

Status ReplicationSender::Send(const linkpb::Envelope& envelope) {
  Status sent = channel_.Send(envelope);
  last_send_nanos_ = Clock::Real()->MonotonicNanos();
  if (sent.ok() || sent.code() != StatusCode::kUnavailable) return sent;
  // The far side may have said why before it closed the link (e.g. "hub is
  // shutting down"): frames received before the end are still readable, and
  // its words say more than "closed".
  for (int i = 0; i < 64; ++i) {
    Result<linkpb::Envelope> pending = channel_.Receive(std::chrono::milliseconds(0));
    if (!pending.ok()) break;
    if (pending->has_error()) return StatusFromError(pending->error());
  }
  return sent;
}

Status ReplicationSender::Hello() {
  if (hello_done_) return OkStatus();
  linkpb::Envelope e;
  const uint64_t id = NextId();
  e.set_request_id(id);
  linkpb::Hello* h = e.mutable_hello();
  h->set_min_version(kLinkProtocolVersion);
  h->set_max_version(kLinkProtocolVersion);
  h->set_software(options_.software + " " + kFerryVersion);
  RETURN_IF_ERROR(Send(e));
  ASSIGN_OR_RETURN(linkpb::Envelope reply, WaitFor(id));
  if (!reply.has_hello_ack()) {
    return DataLossError(std::string("expected hello_ack, got ") + BodyName(reply));
  }
  peer_ = reply.hello_ack();
  if (peer_.version() != kLinkProtocolVersion) {
    return FailedPreconditionError("peer chose link protocol version " +
                                   std::to_string(peer_.version()) + "; this side speaks " +
                                   std::to_string(kLinkProtocolVersion));
  }
  if (peer_.upload_window_bytes() == 0 || peer_.max_frame_bytes() < (64u << 10) ||
      peer_.max_query_ids() == 0) {
    return DataLossError("peer announced unusable limits (window, frame size or query size)");
  }
  hello_done_ = true;
  // The session is open: e.g. the agent's first report goes out now.
  return SendUnsolicited();
}

bool ReplicationSender::PeerHas(std::string_view capability) const {
  if (!hello_done_) return false;
  return std::any_of(peer_.capabilities().begin(), peer_.capabilities().end(),
                     [&](const std::string& c) { return c == capability; });
}

Status ReplicationSender::SendUnsolicited() {
  if (!options_.unsolicited || !hello_done_ || !peer_.enrolled()) return OkStatus();
  for (linkpb::Envelope& e : options_.unsolicited()) {
    e.set_request_id(0);
    RETURN_IF_ERROR(Send(e));
  }
  return OkStatus();
}

Result<linkpb::EnrollResponse> ReplicationSender::Enroll(const linkpb::EnrollRequest& request) {
  RETURN_IF_ERROR(Hello());
  linkpb::Envelope e;
  const uint64_t id = NextId();
  e.set_request_id(id);
  *e.mutable_enroll_request() = request;
  RETURN_IF_ERROR(Send(e));
  ASSIGN_OR_RETURN(linkpb::Envelope reply, WaitFor(id));
  if (!reply.has_enroll_response()) {
    return DataLossError(std::string("expected enroll_response, got ") + BodyName(reply));
  }
  return reply.enroll_response();
}

namespace {

Result<StreamPosition> PositionFromAck(const linkpb::Envelope& reply, const std::string& stream) {
  if (!reply.has_stream_ack()) {
    return DataLossError(std::string("expected stream_ack, got ") + BodyName(reply));
  }
  const linkpb::StreamAck& ack = reply.stream_ack();
  if (ack.stream() != stream || ack.start_offset() > ack.next_offset()) {
    return DataLossError("stream_ack for " + ack.stream() + " [" +
                         std::to_string(ack.start_offset()) + ", " +
                         std::to_string(ack.next_offset()) + ") does not answer " + stream);
  }
  return StreamPosition{ack.start_offset(), ack.next_offset()};
}

}  // namespace

Status ReplicationSender::ReadyForStreams() {
  RETURN_IF_ERROR(Hello());
  if (!PeerHas(kStreamsCapability)) {
    return UnimplementedError("the far side does not take streams (" + peer_.software() + ")");
  }
  return SendUnsolicited();
}

Result<StreamPosition> ReplicationSender::QueryStream(const std::string& stream) {
  RETURN_IF_ERROR(ReadyForStreams());
  linkpb::Envelope e;
  const uint64_t id = NextId();
  e.set_request_id(id);
  e.mutable_stream_query()->set_stream(stream);
  RETURN_IF_ERROR(Send(e));
  ASSIGN_OR_RETURN(linkpb::Envelope reply, WaitFor(id));
  return PositionFromAck(reply, stream);
}

Result<uint64_t> ReplicationSender::SendStreamAppend(const std::string& stream,
                                                     uint64_t first_offset, uint32_t record_count,
                                                     std::string sealed_batch) {
  RETURN_IF_ERROR(ReadyForStreams());
  linkpb::Envelope e;
  const uint64_t id = NextId();
  e.set_request_id(id);
  linkpb::StreamAppend* a = e.mutable_stream_append();
  a->set_stream(stream);
  a->set_first_offset(first_offset);
  a->set_record_count(record_count);
  a->set_sealed_batch(std::move(sealed_batch));
  if (e.ByteSizeLong() > peer_.max_frame_bytes()) {
    return InvalidArgumentError("stream batch of " + std::to_string(e.ByteSizeLong()) +
                                " bytes exceeds the far side's frame limit of " +
                                std::to_string(peer_.max_frame_bytes()));
  }
  RETURN_IF_ERROR(Send(e));
  streams_in_flight_.emplace_back(id, stream);
  return id;
}

Result<StreamPosition> ReplicationSender::WaitStreamAck(uint64_t request_id) {
  auto it = std::find_if(streams_in_flight_.begin(), streams_in_flight_.end(),
                         [&](const auto& f) { return f.first == request_id; });
  if (it == streams_in_flight_.end()) {
    return FailedPreconditionError("no stream batch in flight with request id " +
                                   std::to_string(request_id));
  }
  const std::string stream = it->second;
  streams_in_flight_.erase(it);
  ASSIGN_OR_RETURN(linkpb::Envelope reply, WaitFor(request_id));
  return PositionFromAck(reply, stream);
}

Result<std::optional<linkpb::Envelope>> ReplicationSender::ReceiveOne(uint64_t want_request) {
  ASSIGN_OR_RETURN(linkpb::Envelope e, channel_.Receive(options_.timeout));
  return Apply(std::move(e), want_request);
}

Result<std::optional<linkpb::Envelope>> ReplicationSender::Apply(linkpb::Envelope e,
                                                                 uint64_t want_request) {
  switch (e.body_case()) {
    case linkpb::Envelope::kUploadAck: {
      const uint64_t credit = e.upload_ack().credit_bytes();
      if (uploads_pending_ == 0 || credit > window_used_) {
        return DataLossError("peer acknowledged an upload that was not sent");
      }
      window_used_ -= credit;
      --uploads_pending_;
      return std::optional<linkpb::Envelope>();
    }
    case linkpb::Envelope::kError:
      return StatusFromError(e.error());
    case linkpb::Envelope::kPong:
      return std::optional<linkpb::Envelope>();
    case linkpb::Envelope::kPolicySync:
      // Unsolicited: the far side may send it between any two frames.
      if (options_.on_policy_sync) options_.on_policy_sync(e.policy_sync());
      return std::optional<linkpb::Envelope>();
    case linkpb::Envelope::kPing: {
      linkpb::Envelope pong;
      pong.set_request_id(e.request_id());
      pong.mutable_pong()->set_nonce(e.ping().nonce());
      RETURN_IF_ERROR(Send(pong));
      return std::optional<linkpb::Envelope>();
    }
    default:
      if (want_request != 0 && e.request_id() == want_request) {
        return std::optional<linkpb::Envelope>(std::move(e));
      }
      return DataLossError(std::string("unexpected ") + BodyName(e) + " from the peer");
  }
}

Status ReplicationSender::Listen(std::chrono::milliseconds timeout) {
  RETURN_IF_ERROR(Hello());
  if (!peer_.enrolled()) {
    return PermissionDeniedError(
        "the far side does not know this key: enroll it with a join token first");
  }
  Clock& clock = *Clock::Real();
  const int64_t keepalive = std::chrono::nanoseconds(options_.keepalive_interval).count();
  const int64_t deadline = clock.MonotonicNanos() + std::chrono::nanoseconds(timeout).count();
  // A zero timeout still looks once at what has already arrived.
  for (bool first = true;; first = false) {
    RETURN_IF_ERROR(SendUnsolicited());
    int64_t now = clock.MonotonicNanos();
    if (keepalive > 0 && now - last_send_nanos_ >= keepalive) {
      // The far side's idle timer counts frames it receives: a Ping (its
      // Pong is dropped when it arrives) keeps an idle session open.
      linkpb::Envelope ping;
      const uint64_t id = NextId();
      ping.set_request_id(id);
      ping.mutable_ping()->set_nonce(id);
      RETURN_IF_ERROR(Send(ping));
      now = clock.MonotonicNanos();
    }
    int64_t wait = deadline - now;
    if (wait <= 0 && !first) return OkStatus();
    if (keepalive > 0) wait = std::min(wait, last_send_nanos_ + keepalive - now);
    // Round up so that a wait of a few microseconds does not spin.
    const auto wait_ms =
        std::chrono::milliseconds((std::max<int64_t>(wait, 0) + 999'999) / 1'000'000);
    Result<linkpb::Envelope> e = channel_.Receive(wait_ms);
    if (!e.ok() && e.status().code() == StatusCode::kDeadlineExceeded) continue;
    if (!e.ok()) return e.status();
    ASSIGN_OR_RETURN(std::optional<linkpb::Envelope> answer, Apply(std::move(*e), 0));
    (void)answer;  // nothing was asked: Apply returns an answer only when asked
    return OkStatus();
  }
}

Result<linkpb::Envelope> ReplicationSender::WaitFor(uint64_t request_id) {
  while (true) {
    ASSIGN_OR_RETURN(std::optional<linkpb::Envelope> e, ReceiveOne(request_id));
    if (e) return std::move(*e);
  }
}

Status ReplicationSender::DrainUploads() {
  while (uploads_pending_ > 0) {
    ASSIGN_OR_RETURN(std::optional<linkpb::Envelope> e, ReceiveOne(0));
    (void)e;
  }
  return OkStatus();
}

Status ReplicationSender::SendUpload(linkpb::Envelope upload) {
  PushReport& report = progress_;
  upload.set_request_id(NextId());
  const uint64_t size = upload.ByteSizeLong();
  // Credit: wait for acks until this upload fits in the window (one upload
  // may always be in flight, however large).
  while (uploads_pending_ > 0 && window_used_ + size > peer_.upload_window_bytes()) {
    ASSIGN_OR_RETURN(std::optional<linkpb::Envelope> e, ReceiveOne(0));
    (void)e;
  }
  if (options_.bandwidth != nullptr) options_.bandwidth->Acquire(size);
  RETURN_IF_ERROR(SendUnsolicited());
  RETURN_IF_ERROR(Send(upload));
  window_used_ += size;
  ++uploads_pending_;
  ++report.uploads;
  for (const linkpb::SealedChunk& c : upload.chunk_upload().chunks()) {
    ++report.chunks_sent;
    report.bytes_sent += c.sealed().size();
  }
  return OkStatus();
}

Result<PushReport> ReplicationSender::Push(const snapshot::SnapshotId& id,
                                           const std::optional<snapshot::SnapshotId>& held) {
  if (store_ == nullptr) {
    return FailedPreconditionError("push: this sender was made without a store (enrollment only)");
  }
  RETURN_IF_ERROR(Hello());
  if (!peer_.enrolled()) {
    return PermissionDeniedError(
        "the far side does not know this key: enroll it with a join token first");
  }
  std::unique_ptr<snapshot::RefSetReader> held_refs;
  if (held && *held != id) {
    Result<std::unique_ptr<snapshot::RefSetReader>> r =
        snapshot::RefSetReader::Open(*Env::Default(), store_->RefsPath(*held));
    if (r.ok()) held_refs = std::move(*r);
  }
  Result<PushReport> report = PushOnce(id, held_refs.get());
  if (!report.ok() && held_refs && report.status().code() == StatusCode::kFailedPrecondition) {
    // The far side lacks chunks of the snapshot it was thought to hold: ask
    // about every id this time.
    log::Warn("push of {}: the far side refused the commit ({}); asking about every chunk",
              HexEncode(id).substr(0, 12), report.status().ToString());
    const PushReport first = progress_;
    report = PushOnce(id, nullptr);
    progress_.chunks_sent += first.chunks_sent;
    progress_.bytes_sent += first.bytes_sent;
    if (report.ok()) *report = progress_;
  }
  return report;
}

Result<PushReport> ReplicationSender::PushOnce(const snapshot::SnapshotId& id,
                                               snapshot::RefSetReader* held) {
  const int64_t start = Clock::Real()->MonotonicNanos();
  progress_ = PushReport();
  PushReport& report = progress_;
  report.snapshot_id = id;
  ASSIGN_OR_RETURN(snapshot::ParsedManifest manifest, store_->LoadManifest(id));
  const std::string refs_path = store_->RefsPath(id);
  ASSIGN_OR_RETURN(std::unique_ptr<snapshot::RefSetReader> refs,
                   snapshot::RefSetReader::Open(*Env::Default(), refs_path));

  const uint32_t batch = std::min(options_.query_batch, peer_.max_query_ids());
  const uint64_t upload_limit =
      std::min<uint64_t>(options_.upload_batch_bytes, peer_.max_frame_bytes() - kFrameOverhead);
  linkpb::Envelope upload;
  uint64_t upload_bytes = 0;
  Bytes sealed;
  snapshot::RefEntry held_entry;
  bool held_more = held != nullptr && held->Next(held_entry);
  bool more = true;
  while (more) {
    // One missing query per batch of the (sorted) reference set.
    linkpb::Envelope query;
    const uint64_t qid = NextId();
    query.set_request_id(qid);
    snapshot::RefEntry entry;
    while (static_cast<uint32_t>(query.missing_query().ids_size()) < batch) {
      if (!refs->Next(entry)) {
        more = false;
        break;
      }
      ++report.chunks_referenced;
      // Both ref sets are sorted: a merge finds the ids the far side holds.
      while (held_more && held_entry.id < entry.id) held_more = held->Next(held_entry);
      if (held_more && held_entry.id == entry.id) {
        ++report.chunks_held;
        continue;
      }
      query.mutable_missing_query()->add_ids(entry.id.data(), entry.id.size());
    }
    RETURN_IF_ERROR(refs->status());
    // Held ids do not fill a batch: an empty one means the refs have ended.
    if (query.missing_query().ids_size() == 0) break;
    ++report.queries;
    RETURN_IF_ERROR(SendUnsolicited());
    RETURN_IF_ERROR(Send(query));
    ASSIGN_OR_RETURN(linkpb::Envelope reply, WaitFor(qid));
    if (!reply.has_missing_reply()) {
      return DataLossError(std::string("expected missing_reply, got ") + BodyName(reply));
    }
    if (reply.missing_reply().missing_size() > query.missing_query().ids_size()) {
      return DataLossError("peer reported more missing chunks than were asked about");
    }
    report.chunks_missing += static_cast<uint64_t>(reply.missing_reply().missing_size());
    for (const std::string& raw : reply.missing_reply().missing()) {
      ASSIGN_OR_RETURN(ChunkId cid, snapshot::ArrayFromBytes<32>(AsBytes(raw), "missing chunk id"));
      RETURN_IF_ERROR(store_->ReadSealedChunk(cid, sealed));
      ASSIGN_OR_RETURN(snapshot::SealedChunkHeader header,
                       snapshot::ParseSealedChunkHeader(sealed));
      if (sealed.size() + kFrameOverhead > peer_.max_frame_bytes()) {
        return ResourceExhaustedError("chunk " + HexEncode(cid) + " (" +
                                      std::to_string(sealed.size()) +
                                      " bytes) does not fit in the peer's largest frame");
      }
      if (upload_bytes > 0 && upload_bytes + sealed.size() > upload_limit) {
        RETURN_IF_ERROR(SendUpload(std::move(upload)));
        upload.Clear();
        upload_bytes = 0;
      }
      linkpb::ChunkUpload* up = upload.mutable_chunk_upload();
      const bool key_listed = std::any_of(up->keys().begin(), up->keys().end(), [&](const auto& k) {
        return k.key_id() == AsStringView(header.key_id);
      });
      if (!key_listed) {
        ASSIGN_OR_RETURN(Bytes wrapped, store_->WrappedKey(header.key_id));
        linkpb::DataKey* k = up->add_keys();
        k->set_key_id(header.key_id.data(), header.key_id.size());
        k->set_wrapped(wrapped.data(), wrapped.size());
        upload_bytes += wrapped.size() + 32;
      }
      linkpb::SealedChunk* c = up->add_chunks();
      c->set_id(cid.data(), cid.size());
      c->set_sealed(sealed.data(), sealed.size());
      upload_bytes += sealed.size() + 48;
    }
  }
  if (upload_bytes > 0) RETURN_IF_ERROR(SendUpload(std::move(upload)));
  // No wait for the upload acks here: the commit follows the uploads on the
  // link, and the far side acknowledges them (durable) before its answer.

  // Commit: the manifest and the refs in parts, then one answer.
  ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> refs_file,
                   Env::Default()->NewRandomAccessFile(refs_path));
  const uint64_t refs_size = refs_file->Size();
  // The first part carries the manifest too; every part must leave room
  // for some refs (the peer's frames are at least 64 KiB, see Hello).
  if (manifest.envelope.size() + kFrameOverhead + kMinRefsPart > peer_.max_frame_bytes()) {
    return ResourceExhaustedError("manifest of " + std::to_string(manifest.envelope.size()) +
                                  " bytes does not fit in the peer's largest frame (" +
                                  std::to_string(peer_.max_frame_bytes()) + " bytes)");
  }
  const uint64_t part_size = std::max<uint64_t>(
      kMinRefsPart,
      std::min<uint64_t>(options_.refs_part_bytes,
                         peer_.max_frame_bytes() - kFrameOverhead - manifest.envelope.size()));
  const uint64_t cid = NextId();
  Bytes part;
  uint64_t offset = 0;
  bool first = true;
  do {
    const uint64_t n = std::min<uint64_t>(part_size, refs_size - offset);
    RETURN_IF_ERROR(refs_file->Read(offset, static_cast<size_t>(n), part));
    linkpb::Envelope e;
    e.set_request_id(cid);
    linkpb::CommitRequest* c = e.mutable_commit_request();
    if (first) {
      c->set_manifest(manifest.envelope.data(), manifest.envelope.size());
      c->set_refs_size(refs_size);
      first = false;
    }
    c->set_refs_part(part.data(), part.size());
    offset += n;
    c->set_last(offset == refs_size);
    RETURN_IF_ERROR(Send(e));
  } while (offset < refs_size);
  ASSIGN_OR_RETURN(linkpb::Envelope ack, WaitFor(cid));
  RETURN_IF_ERROR(DrainUploads());  // a peer that acks later than its answer
  if (!ack.has_commit_ack()) {
    return DataLossError(std::string("expected commit_ack, got ") + BodyName(ack));
  }
  if (ack.commit_ack().snapshot_id() != AsStringView(id)) {
    return DataLossError("peer acknowledged a different snapshot");
  }
  report.already_present = ack.commit_ack().already_present();
  report.seconds = static_cast<double>(Clock::Real()->MonotonicNanos() - start) / 1e9;
  return report;
}

}  // namespace ferry::mirror
