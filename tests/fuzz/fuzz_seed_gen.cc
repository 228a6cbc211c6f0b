// Writes the seed corpora of the fuzz targets (tests/fuzz/README.md):
//
//   cmake --build build --target fuzz_seed_gen
//   build/bin/fuzz_seed_gen tests/fuzz/corpus
//
// Replaces the files in <dir>/record_reader_fuzz/ and <dir>/link_envelope_fuzz/.
// The link seeds are the real frames of a push: a small tree is captured into
// a store and pushed by a ReplicationSender to a ReplicationReceiver through
// a loopback channel that records every frame the sender sends; then one
// seed per message type. The record seeds split those frames (and large
// synthetic ones) into records. Keys and nonces are random, so every run
// writes different bytes of the same shape.
#include <stdlib.h>

#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/log.h"
#include "mirror/replication/envelope_codec.h"
#include "mirror/replication/replication_receiver.h"
#include "mirror/replication/replication_sender.h"
#include "mirror/transport/record_format.h"
#include "mirror/transport/record_writer.h"
#include "snapshot/keyset.h"
#include "snapshot/local_store.h"
#include "snapshot/volume_capture.h"
#include "tests/fuzz/fuzz_formats.h"

namespace ferry::fuzz {
namespace {

namespace fs = std::filesystem;
using mirror::linkpb::Envelope;
using mirror::transport::RecordWriter;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "fuzz_seed_gen: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T OrDie(Result<T> r, const std::string& what) {
  if (!r.ok()) Die(what + ": " + r.status().ToString());
  return std::move(*r);
}

Bytes Encode(const Envelope& e) { return OrDie(mirror::EncodeEnvelope(e, UINT64_MAX), "encode"); }

// The sender's end of a link whose far end is a ReplicationReceiver called
// synchronously; every frame sent is recorded.
class LoopbackChannel final : public mirror::FrameChannel {
 public:
  explicit LoopbackChannel(mirror::ReplicationReceiver& receiver) : receiver_(receiver) {}
  Status Send(const Envelope& envelope) override {
    if (closed_) return UnavailableError("closed");
    sent.push_back(Encode(envelope));
    ASSIGN_OR_RETURN(Envelope in,
                     mirror::DecodeEnvelope(sent.back(), mirror::kDefaultMaxFrameBytes));
    std::vector<Envelope> out;
    Status s = receiver_.Handle(in, out);
    replies_.insert(replies_.end(), out.begin(), out.end());
    if (!s.ok()) closed_ = true;
    return OkStatus();
  }
  Result<Envelope> Receive(std::chrono::milliseconds) override {
    if (replies_.empty()) {
      // Nothing else is coming: the receiver acks the uploads it holds.
      std::vector<Envelope> acks;
      RETURN_IF_ERROR(receiver_.ReleaseAcks(acks));
      replies_.insert(replies_.end(), acks.begin(), acks.end());
    }
    if (replies_.empty()) return UnavailableError("nothing to receive");
    Envelope e = std::move(replies_.front());
    replies_.pop_front();
    return e;
  }
  void Close(const Status&) override { closed_ = true; }
  std::vector<Bytes> sent;

 private:
  mirror::ReplicationReceiver& receiver_;
  std::deque<Envelope> replies_;
  bool closed_ = false;
};

class AcceptAll : public mirror::ReceiverPolicy {
 public:
  Status AuthorizeCommit(const snapshot::ParsedManifest&) override { return OkStatus(); }
  Result<mirror::linkpb::EnrollResponse> Enroll(const mirror::linkpb::EnrollRequest&,
                                                const sodium::PublicKey&) override {
    return mirror::linkpb::EnrollResponse();
  }
};

// Deterministic bytes, half of them compressible.
Bytes FileBytes(uint64_t seed, size_t size) {
  Bytes b(size);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b[i] = (i / 512) % 2 ? static_cast<uint8_t>(x) : static_cast<uint8_t>('a' + i % 7);
  }
  return b;
}

void WriteFile(const std::string& path, ByteView data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!f) Die("cannot write " + path);
}

struct Corpus {
  std::string dir;
  std::map<std::string, Bytes> seeds;
  void Add(const std::string& name, Bytes input) { seeds[name] = std::move(input); }
  void Write() const {
    fs::create_directories(dir);
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.is_regular_file()) fs::remove(entry.path());
    }
    for (const auto& [name, input] : seeds) WriteFile(dir + "/" + name, input);
    std::printf("%s: %zu seeds\n", dir.c_str(), seeds.size());
  }
};

// --- link_envelope_fuzz -----------------------------------------------------

Bytes Session(uint8_t config, const std::vector<Bytes>& frames) {
  Bytes input{config};
  for (const Bytes& f : frames) AppendFrame(input, f);
  return input;
}

Envelope Hello(uint64_t id) {
  Envelope e;
  e.set_request_id(id);
  e.mutable_hello()->set_min_version(mirror::kLinkProtocolVersion);
  e.mutable_hello()->set_max_version(mirror::kLinkProtocolVersion);
  e.mutable_hello()->set_software("ferry-agent 0.1.0");
  return e;
}

// Hello, then `e` (request id 2).
Bytes AfterHello(Envelope e, uint8_t config = 0) {
  e.set_request_id(2);
  return Session(config, {Encode(Hello(1)), Encode(e)});
}

// --- record_reader_fuzz -----------------------------------------------------

// Records-mode input holding whole frames: every record given verbatim.
Bytes FramesAsRecords(uint8_t config, const std::vector<Bytes>& frames) {
  Bytes input{config};
  for (const Bytes& frame : frames) {
    for (const Bytes& record : RecordWriter::SplitFrame(frame)) {
      AppendRecord(input, record, record.size());
    }
  }
  return input;
}

// Appends the records of a synthetic frame of `size` bytes: headers verbatim,
// data from Filler() (the shape the target expands).
void AppendSyntheticFrame(Bytes& input, size_t size) {
  using namespace mirror::transport;
  size_t first = std::min(size, kMaxFrameStartData);
  Bytes header{static_cast<uint8_t>(RecordType::kFrameStart)};
  PutU32(header, static_cast<uint32_t>(size));
  PutU16(input, static_cast<uint16_t>(kFrameStartHeaderSize + first));
  PutU16(input, static_cast<uint16_t>(header.size()));
  PutBytes(input, header);
  for (size_t done = first; done < size;) {
    const size_t n = std::min(size - done, kMaxContinuationData);
    PutU16(input, static_cast<uint16_t>(kContinuationHeaderSize + n));
    PutU16(input, 1);
    PutU8(input, static_cast<uint8_t>(RecordType::kContinuation));
    done += n;
  }
}

Bytes WriterMode(uint8_t max_index, uint32_t size, std::string_view pattern) {
  Bytes input{static_cast<uint8_t>(kRecordWriterMode | max_index)};
  PutU32(input, size);
  PutBytes(input, AsBytes(pattern));
  return input;
}

int Main(const std::string& out_dir) {
  log::Init({.level = log::Level::kWarn, .program = "fuzz_seed_gen"});
  std::string tmp = (fs::temp_directory_path() / "ferry-fuzz-seeds-XXXXXX").string();
  if (!mkdtemp(tmp.data())) Die("mkdtemp failed");

  // A small tree, captured with small chunks: a handful of chunks and trees.
  const std::string tree = tmp + "/tree";
  fs::create_directories(tree + "/sub");
  WriteFile(tree + "/a.txt", FileBytes(1, 5000));
  WriteFile(tree + "/sub/b.bin", FileBytes(2, 9000));
  WriteFile(tree + "/sub/c", FileBytes(3, 300));
  std::unique_ptr<snapshot::Keyset> keyset = snapshot::Keyset::Generate();
  std::unique_ptr<snapshot::LocalStore> source =
      OrDie(snapshot::LocalStore::Create(tmp + "/source"), "source store");
  snapshot::CaptureOptions capture;
  capture.chunker = snapshot::ChunkerParams{1024, 4096, 16384};
  capture.use_file_cache = false;
  capture.workers = 1;
  const snapshot::SnapshotId id =
      OrDie(snapshot::CaptureVolume(tree, *keyset, *source, capture), "capture").id;

  std::unique_ptr<snapshot::LocalStore> target =
      OrDie(snapshot::LocalStore::Create(tmp + "/target"), "target store");
  AcceptAll policy;
  const sodium::PublicKey peer{1, 2, 3};
  mirror::SenderOptions sender_options;
  sender_options.upload_batch_bytes = 8 << 10;  // several uploads
  sender_options.refs_part_bytes = 100;         // a commit in parts

  // The first push sends everything; the second finds it all present.
  std::vector<Bytes> push, repush;
  for (std::vector<Bytes>* frames : {&push, &repush}) {
    mirror::ReplicationReceiver receiver(*target, policy, peer, true);
    LoopbackChannel channel(receiver);
    mirror::ReplicationSender sender(channel, *source, sender_options);
    OrDie(sender.Push(id), "push");
    *frames = channel.sent;
  }

  Corpus link{out_dir + "/link_envelope_fuzz", {}};
  link.Add("push", Session(0, push));
  link.Add("push-fresh-store", Session(kEnvelopeFreshStore, push));
  link.Add("push-again", Session(0, repush));
  link.Add("push-tight-limits", Session(kEnvelopeTightLimits, push));
  std::vector<Envelope> sent;
  for (const Bytes& f : push) {
    sent.push_back(OrDie(mirror::DecodeEnvelope(f, UINT64_MAX), "decode"));
  }
  for (const Envelope& e : sent) {
    const std::string name = std::string("hello-") + mirror::BodyName(e);
    if (!link.seeds.count(name)) link.Add(name, AfterHello(e));
  }
  link.Add("hello", Session(0, {Encode(Hello(1))}));
  {
    Envelope e;
    mirror::linkpb::EnrollRequest* r = e.mutable_enroll_request();
    r->set_token("good-token");
    r->set_agent_name("edge-1");
    (*r->mutable_labels())["site"] = "plant-4";
    (*r->mutable_labels())["rack"] = "b2";
    link.Add("enroll", AfterHello(e, kEnvelopeNotEnrolled));
    r->set_token("bad-token");
    link.Add("enroll-bad-token", AfterHello(e, kEnvelopeNotEnrolled));
    link.Add("enroll-when-enrolled", AfterHello(e));
  }
  link.Add("query-not-enrolled", AfterHello(sent.at(1), kEnvelopeNotEnrolled));
  {
    Envelope e;
    mirror::linkpb::HelloAck* a = e.mutable_hello_ack();
    a->set_version(1);
    a->set_software("ferry-hub 0.1.0");
    a->set_max_frame_bytes(8 << 20);
    a->set_upload_window_bytes(8 << 20);
    a->set_max_query_ids(8192);
    a->set_enrolled(true);
    link.Add("hello-hello_ack", AfterHello(e));
  }
  {
    Envelope e;
    e.mutable_enroll_response()->set_tenant("acme");
    e.mutable_enroll_response()->set_agent_name("edge-1");
    link.Add("hello-enroll_response", AfterHello(e));
  }
  {
    Envelope e;
    e.mutable_policy_sync()->set_generation(3);
    e.mutable_policy_sync()->add_policies("policy-1");
    link.Add("hello-policy_sync", AfterHello(e));
  }
  {
    Envelope e;
    e.mutable_missing_reply()->add_missing(std::string(32, 'x'));
    link.Add("hello-missing_reply", AfterHello(e));
  }
  {
    Envelope e;
    e.mutable_upload_ack()->set_chunks(3);
    e.mutable_upload_ack()->set_new_chunks(2);
    e.mutable_upload_ack()->set_credit_bytes(9000);
    link.Add("hello-upload_ack", AfterHello(e));
  }
  {
    Envelope e;
    e.mutable_commit_ack()->set_snapshot_id(id.data(), id.size());
    link.Add("hello-commit_ack", AfterHello(e));
  }
  {
    Envelope e;
    mirror::linkpb::StreamAppend* s = e.mutable_stream_append();
    s->set_stream("sensors");
    s->set_first_offset(10);
    s->set_record_count(10);
    s->set_sealed_batch("batch");
    link.Add("hello-stream_append", AfterHello(e));
  }
  {
    Envelope e;
    e.mutable_stream_ack()->set_stream("sensors");
    e.mutable_stream_ack()->set_next_offset(20);
    link.Add("hello-stream_ack", AfterHello(e));
  }
  link.Add("hello-error",
           AfterHello(mirror::ErrorEnvelope(0, UnavailableError("agent shutting down"))));
  {
    Envelope ping, pong;
    ping.mutable_ping()->set_nonce(42);
    pong.mutable_pong()->set_nonce(42);
    link.Add("hello-ping-pong", Session(0, {Encode(Hello(1)), Encode(ping), Encode(pong)}));
  }
  {
    // A commit of a snapshot whose chunks were never uploaded.
    std::vector<Bytes> frames{Encode(Hello(1))};
    for (size_t i = 0; i < sent.size(); ++i) {
      if (sent[i].has_commit_request()) frames.push_back(push[i]);
    }
    link.Add("commit-without-chunks", Session(kEnvelopeFreshStore, frames));
  }
  link.Write();

  Corpus records{out_dir + "/record_reader_fuzz", {}};
  const uint8_t k8MiB = 7;
  records.Add("push-frames", FramesAsRecords(k8MiB, push));
  records.Add("push-frames-encrypted", FramesAsRecords(k8MiB | kRecordEncrypt, push));
  records.Add("hello-frame", FramesAsRecords(k8MiB, {push.front()}));
  records.Add("empty-frame", FramesAsRecords(k8MiB, {Bytes{}}));
  records.Add("frames-at-limit-255", FramesAsRecords(2, {Bytes(255, 'f'), Bytes(200, 'g')}));
  records.Add("frame-over-limit-255", FramesAsRecords(2, {Bytes(256, 'f')}));
  for (size_t size : {size_t{65514}, size_t{65515}, size_t{65514 + 65518},
                      size_t{65514 + 65518 + 1}, size_t{300000}}) {
    Bytes input{k8MiB};
    AppendSyntheticFrame(input, size);
    AppendSyntheticFrame(input, 10);
    records.Add("large-frame-" + std::to_string(size), input);
    input[0] = k8MiB | kRecordEncrypt;
    records.Add("large-frame-" + std::to_string(size) + "-encrypted", input);
  }
  {
    Bytes input{5};  // max 131032 bytes: one frame at the limit, one over
    AppendSyntheticFrame(input, 65514 + 65518);
    AppendSyntheticFrame(input, 65514 + 65518 + 1);
    records.Add("large-frame-over-limit", input);
  }
  records.Add("writer-empty", WriterMode(k8MiB, 0, ""));
  records.Add("writer-small", WriterMode(k8MiB, 100, "ferry"));
  records.Add("writer-one-record", WriterMode(k8MiB, 65514, "ab"));
  records.Add("writer-two-records", WriterMode(k8MiB, 65515, ""));
  records.Add("writer-large", WriterMode(k8MiB, 300000, "xyz"));
  records.Add("writer-over-limit", WriterMode(3, 70000, "q"));
  records.Write();

  fs::remove_all(tmp);
  return 0;
}

}  // namespace
}  // namespace ferry::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir, e.g. tests/fuzz/corpus>\n", argv[0]);
    return 2;
  }
  return ferry::fuzz::Main(argv[1]);
}
