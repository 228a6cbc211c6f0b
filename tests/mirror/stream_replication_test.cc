// Streams over the link (capability "streams"): the receiver's checks of
// StreamQuery and StreamAppend, the sender's QueryStream, SendStreamAppend
// and WaitStreamAck, over an in-memory channel with an in-memory StreamSink.
// Batches are real sealed batches (docs/format/stream-batch.md).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mirror/replication/envelope_codec.h"
#include "mirror/replication/in_memory_channel.h"
#include "mirror/replication/replication_receiver.h"
#include "mirror/replication/replication_sender.h"
#include "snapshot/keyset.h"
#include "snapshot/local_store.h"
#include "snapshot/stream_batch.h"
#include "tests/testing/test_util.h"

namespace ferry::mirror {
namespace {

using ::ferry::testing::HasCode;
using ::ferry::testing::SeededBytes;
using ::ferry::testing::TempDir;
using ::testing::HasSubstr;

// Keeps batches in memory with the rules of the StreamSink contract: the
// first batch of a stream anywhere, then exactly at the end; a batch wholly
// below the end is acknowledged without being stored. With `trusted` set,
// batches of any other signer are refused (as the hub refuses every key but
// the agent's). Used on the session's thread; read it once the session ended.
class MemorySink : public StreamSink {
 public:
  struct Stream {
    StreamPosition position;
    std::vector<Bytes> batches;
  };

  Result<StreamPosition> Position(const std::string& stream) override {
    ++positions_asked;
    auto it = streams.find(stream);
    return it == streams.end() ? StreamPosition{} : it->second.position;
  }

  Result<StreamPosition> Append(const snapshot::StreamBatchHeader& h, ByteView sealed) override {
    if (trusted && h.signer != *trusted) {
      return PermissionDeniedError("stream batch is signed by a key this sink does not accept");
    }
    Stream& s = streams[h.stream];
    const bool empty = s.batches.empty();
    if (!empty && h.end_offset() <= s.position.next) return s.position;
    if (!empty && h.first_offset != s.position.next) {
      return FailedPreconditionError("stream " + h.stream + ": batch at " +
                                     std::to_string(h.first_offset) + " does not continue at " +
                                     std::to_string(s.position.next));
    }
    if (empty) s.position.start = h.first_offset;
    s.position.next = h.end_offset();
    s.batches.emplace_back(sealed.begin(), sealed.end());
    return s.position;
  }

  std::optional<sodium::PublicKey> trusted;
  std::map<std::string, Stream> streams;
  int positions_asked = 0;
};

// Accepts any commit; streams go to `sink` (none when null).
class StreamPolicy : public ReceiverPolicy {
 public:
  explicit StreamPolicy(StreamSink* sink) : sink_(sink) {}
  Status AuthorizeCommit(const snapshot::ParsedManifest&) override { return OkStatus(); }
  Result<linkpb::EnrollResponse> Enroll(const linkpb::EnrollRequest&,
                                        const sodium::PublicKey&) override {
    return PermissionDeniedError("no enrollment here");
  }
  StreamSink* streams() override { return sink_; }

 private:
  StreamSink* sink_;
};

linkpb::Envelope HelloEnvelope() {
  linkpb::Envelope hello;
  hello.set_request_id(1);
  hello.mutable_hello()->set_min_version(kLinkProtocolVersion);
  hello.mutable_hello()->set_max_version(kLinkProtocolVersion);
  return hello;
}

bool Lists(const linkpb::HelloAck& ack, std::string_view capability) {
  return std::find(ack.capabilities().begin(), ack.capabilities().end(), capability) !=
         ack.capabilities().end();
}

std::string AsString(const Bytes& b) { return std::string(b.begin(), b.end()); }

class StreamReplicationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keyset_ = snapshot::Keyset::Generate();
    snapshot::Keyset::NewDataKey k = keyset_->MakeDataKey();
    key_.key = std::move(k.key);
    key_.wrapped = std::move(k.wrapped);
    Result<std::unique_ptr<snapshot::LocalStore>> s =
        snapshot::LocalStore::Create(dir_.Sub("target"));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    target_ = std::move(*s);
    peer_key_ = sodium::RandomArray<32>();
  }

  // The records [first, first + count): record o is SeededBytes(o, ...).
  std::vector<Bytes> Records(uint64_t first, uint32_t count) {
    std::vector<Bytes> records;
    for (uint32_t i = 0; i < count; ++i) records.push_back(SeededBytes(first + i, 10 + i * 7));
    return records;
  }
  // Those records as a batch of `stream`, signed by the keyset's signing
  // key (or `signer`).
  Bytes Batch(const std::string& stream, uint64_t first, uint32_t count,
              const sodium::SigningKeyPair* signer = nullptr) {
    const std::vector<Bytes> records = Records(first, count);
    const std::vector<ByteView> views(records.begin(), records.end());
    Result<Bytes> b = snapshot::SealStreamBatch(stream, first, views, key_,
                                                signer ? *signer : keyset_->signing_key());
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? std::move(*b) : Bytes();
  }

  // A receiver serving one session on its own thread.
  struct Session {
    std::unique_ptr<InMemoryChannel> sender_end;
    std::unique_ptr<InMemoryChannel> receiver_end;
    std::unique_ptr<StreamPolicy> policy;
    std::unique_ptr<ReplicationReceiver> receiver;
    std::thread thread;
    Status ended;
    // Waits for the session to end (the receiver ended it, or the sender
    // closes its end first when `close`).
    void End(bool close = true) {
      if (!thread.joinable()) return;
      if (close) sender_end->Close(UnavailableError("sender done"));
      thread.join();
    }
    ~Session() { End(); }
  };
  std::unique_ptr<Session> StartSession(StreamSink* sink, bool enrolled = true,
                                        ReceiverOptions options = {}) {
    auto s = std::make_unique<Session>();
    auto [a, b] = InMemoryChannel::CreatePair();
    s->sender_end = std::move(a);
    s->receiver_end = std::move(b);
    s->policy = std::make_unique<StreamPolicy>(sink);
    s->receiver = enrolled ? std::make_unique<ReplicationReceiver>(*target_, *s->policy, peer_key_,
                                                                   true, options)
                           : std::make_unique<ReplicationReceiver>(*s->policy, peer_key_, options);
    Session* raw = s.get();
    s->thread = std::thread([raw] {
      ServeOptions serve;
      serve.idle_timeout = std::chrono::seconds(30);
      raw->ended = ServeSession(*raw->receiver_end, *raw->receiver, serve);
    });
    return s;
  }

  TempDir dir_;
  std::unique_ptr<snapshot::Keyset> keyset_;
  snapshot::StreamBatchKey key_;
  std::unique_ptr<snapshot::LocalStore> target_;
  sodium::PublicKey peer_key_{};
};

TEST_F(StreamReplicationTest, HelloAckListsStreamsOnlyForAnEnrolledPeerWithASink) {
  MemorySink sink;
  const struct {
    const char* what;
    bool enrolled;
    StreamSink* sink;
    bool streams;
  } kCases[] = {
      {"enrolled, policy with a sink", true, &sink, true},
      {"enrolled, policy without a sink", true, nullptr, false},
      {"unknown key, policy with a sink", false, &sink, false},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    StreamPolicy policy(c.sink);
    std::unique_ptr<ReplicationReceiver> receiver =
        c.enrolled ? std::make_unique<ReplicationReceiver>(*target_, policy, peer_key_, true)
                   : std::make_unique<ReplicationReceiver>(policy, peer_key_);
    std::vector<linkpb::Envelope> out;
    ASSERT_TRUE(receiver->Handle(HelloEnvelope(), out).ok());
    ASSERT_EQ(out.size(), 1u);
    ASSERT_TRUE(out[0].has_hello_ack());
    EXPECT_EQ(out[0].hello_ack().enrolled(), c.enrolled);
    EXPECT_EQ(Lists(out[0].hello_ack(), kStreamsCapability), c.streams);
    EXPECT_TRUE(Lists(out[0].hello_ack(), kAgentReportCapability));
  }
}

// The sender keeps several batches in flight and waits for their acks in
// order; each ack says how far the far side's copy reaches. A batch the far
// side already holds is acknowledged again, unchanged, without being stored.
TEST_F(StreamReplicationTest, BatchesInFlightAreAcknowledgedInOrder) {
  MemorySink sink;
  auto session = StartSession(&sink);
  ReplicationSender sender(*session->sender_end);
  Result<StreamPosition> p = sender.QueryStream("sensors");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->start, 0u);
  EXPECT_EQ(p->next, 0u) << "a stream never seen";
  EXPECT_TRUE(sender.PeerHas(kStreamsCapability));

  // Six batches, the first at an arbitrary offset, all sent before any ack.
  std::vector<Bytes> sent;
  std::vector<uint64_t> ids;
  std::vector<uint64_t> ends;
  uint64_t next = 500;
  uint64_t records = 0, bytes = 0;
  for (uint32_t count : {1u, 3u, 10u, 2u, 7u, 1u}) {
    sent.push_back(Batch("sensors", next, count));
    Result<uint64_t> id = sender.SendStreamAppend("sensors", next, count, AsString(sent.back()));
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    ids.push_back(*id);
    next += count;
    ends.push_back(next);
    records += count;
    bytes += sent.back().size();
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    SCOPED_TRACE("batch " + std::to_string(i));
    Result<StreamPosition> ack = sender.WaitStreamAck(ids[i]);
    ASSERT_TRUE(ack.ok()) << ack.status().ToString();
    EXPECT_EQ(ack->start, 500u);
    EXPECT_EQ(ack->next, ends[i]);
  }
  // An id that is not (or no longer) in flight.
  EXPECT_TRUE(HasCode(sender.WaitStreamAck(ids[0]).status(), StatusCode::kFailedPrecondition));

  // Sent again (e.g. after a lost ack): acknowledged with the same position.
  Result<uint64_t> again = sender.SendStreamAppend("sensors", 501, 3, AsString(sent[1]));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  Result<StreamPosition> ack = sender.WaitStreamAck(*again);
  ASSERT_TRUE(ack.ok()) << ack.status().ToString();
  EXPECT_EQ(ack->start, 500u);
  EXPECT_EQ(ack->next, next);
  p = sender.QueryStream("sensors");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->start, 500u);
  EXPECT_EQ(p->next, next);
  session->End();
  EXPECT_EQ(session->ended.code(), StatusCode::kUnavailable) << "the sender closed the link";

  // The far side holds each batch once, byte for byte, in order.
  ASSERT_EQ(sink.streams.count("sensors"), 1u);
  const MemorySink::Stream& held = sink.streams["sensors"];
  ASSERT_EQ(held.batches.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) EXPECT_TRUE(held.batches[i] == sent[i]) << i;
  const ReplicationReceiver::Stats& stats = session->receiver->stats();
  EXPECT_EQ(stats.stream_batches, 6u) << "the batch sent again is not counted";
  EXPECT_EQ(stats.stream_records, records);
  EXPECT_EQ(stats.stream_bytes, bytes);
  // And the records come back out with the data key.
  Result<std::vector<snapshot::StreamRecord>> opened =
      snapshot::OpenStreamBatch(held.batches[2], key_.key.key);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  ASSERT_EQ(opened->size(), 10u);
  EXPECT_EQ((*opened)[0].offset, 504u);
  EXPECT_TRUE((*opened)[9].data == Records(504, 10)[9]);
}

// The StreamAppend's fields must say what the signed header says; a frame
// that does not is a protocol violation and ends the session.
TEST_F(StreamReplicationTest, StreamAppendDisagreeingWithItsBatchEndsTheSession) {
  const Bytes batch = Batch("sensors", 20, 4);
  const struct {
    const char* what;
    std::string stream;
    uint64_t first;
    uint32_t count;
  } kCases[] = {
      {"another stream", "logs", 20, 4},
      {"another first offset", "sensors", 21, 4},
      {"another record count", "sensors", 20, 3},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    MemorySink sink;
    auto session = StartSession(&sink);
    ReplicationSender sender(*session->sender_end);
    Result<uint64_t> id = sender.SendStreamAppend(c.stream, c.first, c.count, AsString(batch));
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    Result<StreamPosition> ack = sender.WaitStreamAck(*id);
    EXPECT_TRUE(HasCode(ack.status(), StatusCode::kInvalidArgument));
    EXPECT_THAT(ack.status().message(), HasSubstr("protocol violation"));
    EXPECT_THAT(ack.status().message(), HasSubstr("carries a batch of sensors at 20 (4 records)"));
    session->End(/*close=*/false);  // the receiver ends it
    EXPECT_TRUE(HasCode(session->ended, StatusCode::kInvalidArgument));
    EXPECT_TRUE(sink.streams.empty()) << "nothing was stored";
  }
}

// A batch changed on the way fails its signature: DATA_LOSS, nothing
// stored, the session ends.
TEST_F(StreamReplicationTest, TamperedBatchIsRefusedWithDataLoss) {
  const Bytes good = Batch("sensors", 0, 3);
  for (size_t at : {size_t{4}, size_t{150}, good.size() / 2, good.size() - 1}) {
    SCOPED_TRACE("byte " + std::to_string(at));
    MemorySink sink;
    auto session = StartSession(&sink);
    ReplicationSender sender(*session->sender_end);
    Bytes bad = good;
    bad[at] ^= 0x01;
    Result<uint64_t> id = sender.SendStreamAppend("sensors", 0, 3, AsString(bad));
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    Result<StreamPosition> ack = sender.WaitStreamAck(*id);
    EXPECT_TRUE(HasCode(ack.status(), StatusCode::kDataLoss));
    session->End(/*close=*/false);
    EXPECT_TRUE(HasCode(session->ended, StatusCode::kDataLoss));
    EXPECT_TRUE(sink.streams.empty());
  }
}

// The sink decides whom to trust and where a batch may go; its refusals
// reach the sender with their code.
TEST_F(StreamReplicationTest, SinkRefusalsReachTheSender) {
  {
    SCOPED_TRACE("a batch signed by a key the sink does not accept");
    MemorySink sink;
    sink.trusted = keyset_->signing_key().public_key;
    auto session = StartSession(&sink);
    ReplicationSender sender(*session->sender_end);
    const sodium::SigningKeyPair other = sodium::GenerateSigningKeyPair();
    Result<uint64_t> id =
        sender.SendStreamAppend("sensors", 0, 2, AsString(Batch("sensors", 0, 2, &other)));
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    EXPECT_TRUE(HasCode(sender.WaitStreamAck(*id).status(), StatusCode::kPermissionDenied));
    session->End(/*close=*/false);
    EXPECT_TRUE(sink.streams.empty());
  }
  {
    SCOPED_TRACE("a batch that leaves a gap");
    MemorySink sink;
    auto session = StartSession(&sink);
    ReplicationSender sender(*session->sender_end);
    Result<uint64_t> first =
        sender.SendStreamAppend("sensors", 0, 2, AsString(Batch("sensors", 0, 2)));
    ASSERT_TRUE(first.ok());
    Result<uint64_t> gap =
        sender.SendStreamAppend("sensors", 3, 1, AsString(Batch("sensors", 3, 1)));
    ASSERT_TRUE(gap.ok());
    Result<StreamPosition> ack = sender.WaitStreamAck(*first);
    ASSERT_TRUE(ack.ok()) << ack.status().ToString();
    EXPECT_EQ(ack->next, 2u);
    Result<StreamPosition> refused = sender.WaitStreamAck(*gap);
    EXPECT_TRUE(HasCode(refused.status(), StatusCode::kFailedPrecondition));
    EXPECT_THAT(refused.status().message(), HasSubstr("does not continue at 2"));
    session->End(/*close=*/false);
    EXPECT_EQ(sink.streams["sensors"].batches.size(), 1u);
  }
}

TEST_F(StreamReplicationTest, SenderFacingAReceiverWithoutStreamsGetsUnimplemented) {
  auto session = StartSession(/*sink=*/nullptr);
  ReplicationSender sender(*session->sender_end);
  Result<StreamPosition> q = sender.QueryStream("sensors");
  EXPECT_TRUE(HasCode(q.status(), StatusCode::kUnimplemented));
  EXPECT_THAT(q.status().message(), HasSubstr("does not take streams"));
  EXPECT_FALSE(sender.PeerHas(kStreamsCapability));
  Result<uint64_t> a = sender.SendStreamAppend("sensors", 0, 1, AsString(Batch("sensors", 0, 1)));
  EXPECT_TRUE(HasCode(a.status(), StatusCode::kUnimplemented));
  EXPECT_EQ(session->sender_end->frames_sent(), 1u) << "nothing but the Hello went out";
  session->End();
  EXPECT_EQ(session->ended.code(), StatusCode::kUnavailable) << "the session was not cut";

  // A sender that ignores the HelloAck is refused with UNIMPLEMENTED.
  StreamPolicy policy(nullptr);
  ReplicationReceiver receiver(*target_, policy, peer_key_, true);
  std::vector<linkpb::Envelope> out;
  ASSERT_TRUE(receiver.Handle(HelloEnvelope(), out).ok());
  for (bool append : {false, true}) {
    SCOPED_TRACE(append ? "stream_append" : "stream_query");
    linkpb::Envelope e;
    e.set_request_id(2);
    if (append) {
      const Bytes b = Batch("sensors", 0, 1);
      e.mutable_stream_append()->set_stream("sensors");
      e.mutable_stream_append()->set_record_count(1);
      e.mutable_stream_append()->set_sealed_batch(AsString(b));
    } else {
      e.mutable_stream_query()->set_stream("sensors");
    }
    out.clear();
    EXPECT_TRUE(HasCode(receiver.Handle(e, out), StatusCode::kUnimplemented));
    ASSERT_EQ(out.size(), 1u);
    ASSERT_TRUE(out[0].has_error());
    EXPECT_EQ(out[0].request_id(), 2u);
    EXPECT_TRUE(HasCode(StatusFromError(out[0].error()), StatusCode::kUnimplemented));
  }
}

TEST_F(StreamReplicationTest, UnenrolledPeerMayNotUseStreams) {
  MemorySink sink;
  {
    SCOPED_TRACE("through the sender: the HelloAck lists no streams");
    auto session = StartSession(&sink, /*enrolled=*/false);
    ReplicationSender sender(*session->sender_end);
    EXPECT_TRUE(HasCode(sender.QueryStream("sensors").status(), StatusCode::kUnimplemented));
    EXPECT_FALSE(sender.peer().enrolled());
    EXPECT_EQ(session->sender_end->frames_sent(), 1u);
  }
  for (bool append : {false, true}) {
    SCOPED_TRACE(append ? "a stream_append anyway" : "a stream_query anyway");
    auto session = StartSession(&sink, /*enrolled=*/false);
    ASSERT_TRUE(session->sender_end->Send(HelloEnvelope()).ok());
    linkpb::Envelope e;
    e.set_request_id(2);
    if (append) {
      const Bytes b = Batch("sensors", 0, 1);
      e.mutable_stream_append()->set_stream("sensors");
      e.mutable_stream_append()->set_record_count(1);
      e.mutable_stream_append()->set_sealed_batch(AsString(b));
    } else {
      e.mutable_stream_query()->set_stream("sensors");
    }
    ASSERT_TRUE(session->sender_end->Send(e).ok());
    session->End(/*close=*/false);
    EXPECT_TRUE(HasCode(session->ended, StatusCode::kPermissionDenied));
    EXPECT_THAT(session->ended.message(), HasSubstr("not enrolled"));
    // The peer was told: a HelloAck, then the error.
    Result<linkpb::Envelope> hello_ack = session->sender_end->Receive(std::chrono::seconds(5));
    ASSERT_TRUE(hello_ack.ok()) << hello_ack.status().ToString();
    EXPECT_TRUE(hello_ack->has_hello_ack());
    Result<linkpb::Envelope> error = session->sender_end->Receive(std::chrono::seconds(5));
    ASSERT_TRUE(error.ok()) << error.status().ToString();
    ASSERT_TRUE(error->has_error());
    EXPECT_TRUE(HasCode(StatusFromError(error->error()), StatusCode::kPermissionDenied));
  }
  EXPECT_EQ(sink.positions_asked, 0) << "the sink was never asked";
  EXPECT_TRUE(sink.streams.empty());
}

// A batch larger than the far side's frame limit is refused before it is
// sent (the session goes on).
TEST_F(StreamReplicationTest, BatchOverTheFarSidesFrameLimitIsNotSent) {
  MemorySink sink;
  ReceiverOptions options;
  options.max_frame_bytes = 64u << 10;
  auto session = StartSession(&sink, true, options);
  ReplicationSender sender(*session->sender_end);
  const std::vector<Bytes> big = {SeededBytes(9, 100u << 10)};
  const std::vector<ByteView> views(big.begin(), big.end());
  Result<Bytes> batch =
      snapshot::SealStreamBatch("sensors", 0, views, key_, keyset_->signing_key());
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  Result<uint64_t> id = sender.SendStreamAppend("sensors", 0, 1, AsString(*batch));
  EXPECT_TRUE(HasCode(id.status(), StatusCode::kInvalidArgument));
  EXPECT_THAT(id.status().message(), HasSubstr("exceeds the far side's frame limit of 65536"));
  EXPECT_EQ(session->sender_end->frames_sent(), 1u);
  // A batch that fits still goes through on the same session.
  Result<uint64_t> small =
      sender.SendStreamAppend("sensors", 0, 2, AsString(Batch("sensors", 0, 2)));
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  Result<StreamPosition> ack = sender.WaitStreamAck(*small);
  ASSERT_TRUE(ack.ok()) << ack.status().ToString();
  EXPECT_EQ(ack->next, 2u);
}

}  // namespace
}  // namespace ferry::mirror
