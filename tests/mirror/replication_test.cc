// The replication engine over an in-memory channel: pushes, dedup against the
// far side, resumption after cuts, flow control, bandwidth, and the far
// side's refusals.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <thread>

#include "mirror/replication/envelope_codec.h"
#include "mirror/replication/in_memory_channel.h"
#include "mirror/replication/replication_receiver.h"
#include "mirror/replication/replication_sender.h"
#include "snapshot/restorer.h"
#include "snapshot/sealed_chunk.h"
#include "snapshot/volume_capture.h"
#include "tests/testing/test_util.h"

namespace ferry::mirror {
namespace {

using ::ferry::testing::CompressibleBytes;
using ::ferry::testing::DiffTrees;
using ::ferry::testing::MakeDirsOrDie;
using ::ferry::testing::SeededBytes;
using ::ferry::testing::TempDir;
using ::ferry::testing::WriteFileOrDie;
using snapshot::Keyset;
using snapshot::LocalStore;

// Accepts any enrolled signer; enrollment with the token "good-token" once.
class TestPolicy : public ReceiverPolicy {
 public:
  Status AuthorizeCommit(const snapshot::ParsedManifest& m) override {
    if (refuse_signer && m.signer == *refuse_signer) {
      return PermissionDeniedError("manifest signed by a key this session may not commit for");
    }
    return OkStatus();
  }
  Result<linkpb::EnrollResponse> Enroll(const linkpb::EnrollRequest& r,
                                        const sodium::PublicKey&) override {
    if (r.token() != "good-token" || token_used) {
      return PermissionDeniedError("join token is unknown, used or expired");
    }
    token_used = true;
    linkpb::EnrollResponse resp;
    resp.set_tenant("acme");
    resp.set_agent_name(r.agent_name());
    return resp;
  }
  Status OnAgentReport(const linkpb::AgentReport& r) override {
    reports.push_back(r);  // the session's thread; read once it ended
    return OkStatus();
  }
  std::optional<sodium::PublicKey> refuse_signer;
  bool token_used = false;
  std::vector<linkpb::AgentReport> reports;
};

// A Hello for this side's protocol version, request id 1.
linkpb::Envelope HelloEnvelope() {
  linkpb::Envelope hello;
  hello.set_request_id(1);
  hello.mutable_hello()->set_min_version(kLinkProtocolVersion);
  hello.mutable_hello()->set_max_version(kLinkProtocolVersion);
  return hello;
}

class ReplicationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keyset_ = Keyset::Generate();
    source_ = OpenStore("source");
    target_ = OpenStore("target");
    capture_.chunker = snapshot::ChunkerParams{1024, 4096, 16384};  // many chunks
    peer_key_ = sodium::RandomArray<32>();
  }

  std::unique_ptr<LocalStore> OpenStore(const std::string& name) {
    Result<std::unique_ptr<LocalStore>> s = LocalStore::Create(dir_.Sub(name));
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // A tree of `files` files, ~`size` bytes each, half compressible.
  std::string MakeTree(const std::string& name, int files, size_t size, uint64_t seed) {
    const std::string root = dir_.Sub(name);
    MakeDirsOrDie(root + "/sub");
    for (int i = 0; i < files; ++i) {
      const std::string path = root + (i % 3 == 0 ? "/sub/f" : "/f") + std::to_string(i);
      WriteFileOrDie(path,
                     i % 2 ? SeededBytes(seed + i, size) : CompressibleBytes(seed + i, size, 0.3));
    }
    return root;
  }

  snapshot::SnapshotId Capture(const std::string& tree) {
    Result<snapshot::CaptureReport> r = CaptureVolume(tree, *keyset_, *source_, capture_);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->id : snapshot::SnapshotId{};
  }

  // Runs a receiver for one session on its own thread.
  struct Session {
    std::unique_ptr<InMemoryChannel> sender_end;
    std::unique_ptr<InMemoryChannel> receiver_end;
    std::unique_ptr<ReplicationReceiver> receiver;
    std::thread thread;
    Status ended;
    ~Session() {
      if (thread.joinable()) {
        sender_end->Close(UnavailableError("test over"));
        thread.join();
      }
    }
  };
  static ServeOptions DefaultServe() {
    ServeOptions serve;
    serve.idle_timeout = std::chrono::seconds(30);
    return serve;
  }
  std::unique_ptr<Session> StartSession(bool enrolled = true, ReceiverOptions options = {},
                                        ServeOptions serve = DefaultServe()) {
    auto s = std::make_unique<Session>();
    auto [a, b] = InMemoryChannel::CreatePair();
    s->sender_end = std::move(a);
    s->receiver_end = std::move(b);
    s->receiver =
        std::make_unique<ReplicationReceiver>(*target_, policy_, peer_key_, enrolled, options);
    Session* raw = s.get();
    s->thread = std::thread([raw, serve = std::move(serve)] {
      raw->ended = ServeSession(*raw->receiver_end, *raw->receiver, serve);
    });
    return s;
  }
  void EndSession(Session& s) {
    s.sender_end->Close(UnavailableError("sender done"));
    s.thread.join();
  }

  void ExpectRestoresFromTarget(const snapshot::SnapshotId& id, const std::string& tree) {
    const std::string out = dir_.Sub("restored-" + HexEncode(id).substr(0, 8));
    Result<snapshot::RestoreReport> r = snapshot::RestoreSnapshot(*target_, *keyset_, id, out);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(DiffTrees(tree, out), "");
    EXPECT_TRUE(snapshot::VerifySnapshot(*target_, *keyset_, id).ok());
  }

  TempDir dir_;
  std::unique_ptr<Keyset> keyset_;
  std::unique_ptr<LocalStore> source_, target_;
  snapshot::CaptureOptions capture_;
  TestPolicy policy_;
  sodium::PublicKey peer_key_{};
};

TEST_F(ReplicationTest, PushedSnapshotRestoresByteForByteFromTheFarSide) {
  const std::string tree = MakeTree("tree", 20, 50000, 1);
  const snapshot::SnapshotId id = Capture(tree);
  auto session = StartSession();
  ReplicationSender sender(*session->sender_end, *source_);
  Result<PushReport> r = sender.Push(id);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->already_present);
  EXPECT_EQ(r->chunks_missing, r->chunks_referenced) << "the far side started empty";
  EXPECT_EQ(r->chunks_sent, r->chunks_missing);
  EndSession(*session);
  ExpectRestoresFromTarget(id, tree);
}

TEST_F(ReplicationTest, SecondPushSendsNothingAndIsAcknowledgedAsPresent) {
  const std::string tree = MakeTree("tree", 10, 30000, 2);
  const snapshot::SnapshotId id = Capture(tree);
  {
    auto session = StartSession();
    ReplicationSender sender(*session->sender_end, *source_);
    ASSERT_TRUE(sender.Push(id).ok());
  }
  auto session = StartSession();
  ReplicationSender sender(*session->sender_end, *source_);
  Result<PushReport> r = sender.Push(id);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->chunks_missing, 0u);
  EXPECT_EQ(r->chunks_sent, 0u);
  EXPECT_TRUE(r->already_present);
}

TEST_F(ReplicationTest, IncrementalPushSendsOnlyNewChunks) {
  const std::string tree = MakeTree("tree", 20, 40000, 3);
  const snapshot::SnapshotId first = Capture(tree);
  {
    auto session = StartSession();
    ReplicationSender sender(*session->sender_end, *source_);
    ASSERT_TRUE(sender.Push(first).ok());
  }
  WriteFileOrDie(tree + "/f1", SeededBytes(99, 40000));  // one file rewritten
  Result<snapshot::CaptureReport> second = CaptureVolume(tree, *keyset_, *source_, capture_);
  ASSERT_TRUE(second.ok());
  auto session = StartSession();
  ReplicationSender sender(*session->sender_end, *source_);
  Result<PushReport> r = sender.Push(second->id);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // Exactly the chunks the second capture added to the source.
  EXPECT_EQ(r->chunks_sent, second->chunks_new);
  EXPECT_LT(r->chunks_sent, r->chunks_referenced / 4);
  EndSession(*session);
  ExpectRestoresFromTarget(second->id, tree);
}

// With the snapshot the far side committed before named as held, the push
// asks only about ids that snapshot does not reference: an incremental push
// costs the changed chunks on the link, not every id.
TEST_F(ReplicationTest, PushNamingAHeldSnapshotAsksOnlyAboutTheOtherIds) {
  const std::string tree = MakeTree("tree", 20, 40000, 31);
  const snapshot::SnapshotId first = Capture(tree);
  {
    auto session = StartSession();
    ReplicationSender sender(*session->sender_end, *source_);
    ASSERT_TRUE(sender.Push(first).ok());
  }
  WriteFileOrDie(tree + "/f1", SeededBytes(77, 40000));
  Result<snapshot::CaptureReport> second = CaptureVolume(tree, *keyset_, *source_, capture_);
  ASSERT_TRUE(second.ok());
  auto session = StartSession();
  ReplicationSender sender(*session->sender_end, *source_);
  Result<PushReport> r = sender.Push(second->id, first);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->chunks_referenced, second->chunks);
  EXPECT_GT(r->chunks_held, r->chunks_referenced / 2) << "most ids are the first snapshot's";
  EXPECT_EQ(r->chunks_missing, r->chunks_referenced - r->chunks_held)
      << "every id asked about was new";
  EXPECT_EQ(r->chunks_sent, second->chunks_new);
  EndSession(*session);
  ExpectRestoresFromTarget(second->id, tree);
}

// A held snapshot the far side does not have (another hub's, a hub restored
// from an old backup): its commit check refuses the snapshot, and the push
// asks about every id and completes.
TEST_F(ReplicationTest, HeldSnapshotTheFarSideLacksFallsBackToAskingAboutEveryId) {
  const std::string tree = MakeTree("tree", 12, 30000, 32);
  const snapshot::SnapshotId first = Capture(tree);
  WriteFileOrDie(tree + "/f2", SeededBytes(78, 30000));
  Result<snapshot::CaptureReport> second = CaptureVolume(tree, *keyset_, *source_, capture_);
  ASSERT_TRUE(second.ok());
  auto session = StartSession();  // the target never received `first`
  ReplicationSender sender(*session->sender_end, *source_);
  Result<PushReport> r = sender.Push(second->id, first);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->chunks_held, 0u) << "the second attempt asked about everything";
  EXPECT_EQ(r->chunks_sent, r->chunks_referenced)
      << "every chunk crossed once: the new ones in the first attempt, the rest in the second";
  EndSession(*session);
  ExpectRestoresFromTarget(second->id, tree);
}

// Cut the link at every point of a push: resuming on a new session completes
// it, no chunk that arrived is sent again, and what the cut lost in flight —
// the only thing ever sent twice — fits in one upload window.
TEST_F(ReplicationTest, CutAtEveryPointResumesWithoutResendingWhatArrived) {
  const std::string tree = MakeTree("tree", 12, 50000, 4);
  const snapshot::SnapshotId id = Capture(tree);
  Result<snapshot::ParsedManifest> m = source_->LoadManifest(id);
  ASSERT_TRUE(m.ok());
  const uint64_t referenced = m->body.refs().count();
  SenderOptions options;
  options.upload_batch_bytes = 64 << 10;  // many uploads, many cut points
  ReceiverOptions receiver_options;
  receiver_options.upload_window_bytes = 256 << 10;
  int points = 0;
  for (uint64_t cut_after = 1;; ++cut_after) {
    SCOPED_TRACE("cut after " + std::to_string(cut_after) + " frames");
    target_ = OpenStore("target-" + std::to_string(cut_after));
    uint64_t sent_bytes = 0, received_bytes = 0, chunks_received = 0;
    bool done = false;
    {
      auto session = StartSession(true, receiver_options);
      session->sender_end->CutAfterSends(cut_after);
      ReplicationSender sender(*session->sender_end, *source_, options);
      Result<PushReport> r = sender.Push(id);
      EndSession(*session);
      done = r.ok();
      if (!done) {
        ASSERT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
      }
      sent_bytes = sender.progress().bytes_sent;
      received_bytes = session->receiver->stats().bytes_received;
      chunks_received = session->receiver->stats().chunks_received;
      EXPECT_LE(sent_bytes - received_bytes, receiver_options.upload_window_bytes)
          << "the cut lost more than one window in flight";
    }
    if (done) break;  // past the last frame: nothing left to cut
    ++points;
    auto session = StartSession(true, receiver_options);
    ReplicationSender sender(*session->sender_end, *source_, options);
    Result<PushReport> r = sender.Push(id);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EndSession(*session);
    const ReplicationReceiver::Stats& got = session->receiver->stats();
    EXPECT_EQ(got.chunks_new, got.chunks_received) << "a chunk that had arrived was sent again";
    EXPECT_EQ(chunks_received + got.chunks_received, referenced)
        << "every chunk arrives exactly once over the two sessions";
    EXPECT_TRUE(target_->LoadManifest(id).ok());
  }
  EXPECT_GT(points, 5);
  ExpectRestoresFromTarget(id, tree);
}

// A push cut every few frames, resumed again and again, still completes.
TEST_F(ReplicationTest, RepeatedCutsStillComplete) {
  const std::string tree = MakeTree("tree", 24, 60000, 14);
  const snapshot::SnapshotId id = Capture(tree);
  SenderOptions options;
  options.upload_batch_bytes = 64 << 10;
  int sessions = 0;
  while (true) {
    ASSERT_LT(++sessions, 1000) << "no progress";
    auto session = StartSession();
    session->sender_end->CutAfterSends(4);
    ReplicationSender sender(*session->sender_end, *source_, options);
    Result<PushReport> r = sender.Push(id);
    EndSession(*session);
    if (r.ok()) break;
    ASSERT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  }
  EXPECT_GT(sessions, 3);
  ExpectRestoresFromTarget(id, tree);
}

// A fake far side that holds its acks back checks the sender never has more
// than one window of uploads unacknowledged.
TEST_F(ReplicationTest, SenderNeverExceedsTheUploadWindow) {
  const std::string tree = MakeTree("tree", 30, 60000, 5);
  const snapshot::SnapshotId id = Capture(tree);
  auto [sender_end, peer_end] = InMemoryChannel::CreatePair();
  constexpr uint64_t kWindow = 200 << 10;
  SenderOptions options;
  options.upload_batch_bytes = 48 << 10;
  std::thread peer([&, end = peer_end.get()] {
    ReceiverOptions ro;
    ro.upload_window_bytes = kWindow;
    ReplicationReceiver real(*target_, policy_, peer_key_, true, ro);
    std::vector<linkpb::Envelope> held;  // acks not yet sent
    uint64_t unacked = 0;
    uint64_t most_unacked = 0;
    while (true) {
      // Quiet for a while with acks held: the sender is waiting for them
      // (e.g. draining before its commit). Release them.
      Result<linkpb::Envelope> in = end->Receive(std::chrono::milliseconds(100));
      if (!in.ok() && in.status().code() == StatusCode::kDeadlineExceeded) {
        ASSERT_TRUE(real.ReleaseAcks(held).ok());  // what the receiver holds itself
        for (auto& h : held) ASSERT_TRUE(end->Send(h).ok());
        held.clear();
        unacked = 0;
        continue;
      }
      if (!in.ok()) {
        EXPECT_GT(most_unacked, kWindow - (70 << 10)) << "the window was never filled";
        return;
      }
      std::vector<linkpb::Envelope> out;
      if (!real.Handle(*in, out).ok()) return;
      for (auto& e : out) {
        if (e.has_upload_ack()) {
          unacked += e.upload_ack().credit_bytes();
          most_unacked = std::max(most_unacked, unacked);
          EXPECT_LE(unacked, kWindow) << "sender overran the window";
          held.push_back(std::move(e));
          // Release acks only when the next upload (at most the batch size
          // plus one chunk) might not fit: the sender may then be waiting.
          if (unacked + (48 << 10) + (16 << 10) + 4096 > kWindow) {
            for (auto& h : held) ASSERT_TRUE(end->Send(h).ok());
            held.clear();
            unacked = 0;
          }
        } else {
          // Anything else is answered in order, after the acks before it.
          for (auto& h : held) ASSERT_TRUE(end->Send(h).ok());
          held.clear();
          unacked = 0;
          ASSERT_TRUE(end->Send(e).ok());
        }
      }
    }
  });
  ReplicationSender sender(*sender_end, *source_, options);
  Result<PushReport> r = sender.Push(id);
  sender_end->Close(UnavailableError("done"));
  peer.join();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(r->uploads, 10u);
  ExpectRestoresFromTarget(id, tree);
}

TEST_F(ReplicationTest, BandwidthLimitPacesUploads) {
  const std::string tree = MakeTree("tree", 10, 100000, 6);
  const snapshot::SnapshotId id = Capture(tree);
  FakeClock clock;
  int64_t slept = 0;
  TokenBucket bucket(/*bytes_per_second=*/1 << 20, /*burst=*/64 << 10, &clock, [&](int64_t ns) {
    slept += ns;
    clock.Advance(ns);
  });
  SenderOptions options;
  options.bandwidth = &bucket;
  options.upload_batch_bytes = 32 << 10;
  auto session = StartSession();
  ReplicationSender sender(*session->sender_end, *source_, options);
  Result<PushReport> r = sender.Push(id);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // At 1 MiB/s with a 64 KiB burst, sending B bytes takes (B - burst) / rate.
  const double expected = static_cast<double>(sender.progress().bytes_sent) / (1 << 20);
  EXPECT_NEAR(static_cast<double>(slept) / 1e9, expected, expected * 0.1 + 0.07);
}

TEST_F(ReplicationTest, UnenrolledKeyMayOnlyEnroll) {
  const std::string tree = MakeTree("tree", 2, 1000, 7);
  const snapshot::SnapshotId id = Capture(tree);
  {
    auto session = StartSession(/*enrolled=*/false);
    ReplicationSender sender(*session->sender_end, *source_);
    Result<PushReport> r = sender.Push(id);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied) << r.status().ToString();
    EXPECT_NE(r.status().message().find("join token"), std::string::npos);
    // The sender stopped at the HelloAck (enrolled: false): nothing else went out.
    EXPECT_EQ(session->sender_end->frames_sent(), 1u);
    EndSession(*session);
  }
  {
    // A sender that ignores the HelloAck and asks anyway is refused and cut.
    auto session = StartSession(/*enrolled=*/false);
    const linkpb::Envelope hello = HelloEnvelope();
    ASSERT_TRUE(session->sender_end->Send(hello).ok());
    linkpb::Envelope query;
    query.set_request_id(2);
    query.mutable_missing_query()->add_ids(std::string(32, 'x'));
    ASSERT_TRUE(session->sender_end->Send(query).ok());
    session->thread.join();
    EXPECT_EQ(session->ended.code(), StatusCode::kPermissionDenied);
    EXPECT_NE(session->ended.message().find("join token"), std::string::npos);
  }
  {
    auto session = StartSession(/*enrolled=*/false);
    ReplicationSender sender(*session->sender_end, *source_);
    linkpb::EnrollRequest req;
    req.set_token("wrong-token");
    Result<linkpb::EnrollResponse> r = sender.Enroll(req);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  }
  {
    auto session = StartSession(/*enrolled=*/false);
    ReplicationSender sender(*session->sender_end, *source_);
    linkpb::EnrollRequest req;
    req.set_token("good-token");
    req.set_agent_name("edge-1");
    Result<linkpb::EnrollResponse> r = sender.Enroll(req);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->tenant(), "acme");
  }
  {
    auto session = StartSession(/*enrolled=*/false);
    ReplicationSender sender(*session->sender_end, *source_);
    linkpb::EnrollRequest req;
    req.set_token("good-token");
    Result<linkpb::EnrollResponse> r = sender.Enroll(req);
    ASSERT_FALSE(r.ok()) << "a join token works once";
    EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  }
}

TEST_F(ReplicationTest, CommitSignedByAnotherKeyIsRefused) {
  const std::string tree = MakeTree("tree", 3, 5000, 8);
  const snapshot::SnapshotId id = Capture(tree);
  policy_.refuse_signer = keyset_->signing_key().public_key;
  auto session = StartSession();
  ReplicationSender sender(*session->sender_end, *source_);
  Result<PushReport> r = sender.Push(id);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied) << r.status().ToString();
  EXPECT_FALSE(target_->LoadManifest(id).ok()) << "nothing committed";
}

TEST_F(ReplicationTest, VersionMismatchIsAClearError) {
  auto session = StartSession();
  linkpb::Envelope hello;
  hello.set_request_id(1);
  hello.mutable_hello()->set_min_version(7);
  hello.mutable_hello()->set_max_version(9);
  ASSERT_TRUE(session->sender_end->Send(hello).ok());
  Result<linkpb::Envelope> reply = session->sender_end->Receive(std::chrono::seconds(10));
  ASSERT_TRUE(reply.ok());
  ASSERT_TRUE(reply->has_error());
  Status s = StatusFromError(reply->error());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("version mismatch"), std::string::npos);
}

// Frames a hostile sender could send: each ends the session with a typed
// error, and nothing is stored.
TEST_F(ReplicationTest, MalformedFramesEndTheSession) {
  struct Case {
    const char* name;
    std::function<linkpb::Envelope()> frame;
    StatusCode code;
  };
  auto upload = [](std::string id, std::string sealed, bool with_key) {
    linkpb::Envelope e;
    e.set_request_id(9);
    linkpb::ChunkUpload* up = e.mutable_chunk_upload();
    if (with_key) {
      linkpb::DataKey* k = up->add_keys();
      k->set_key_id(std::string(16, 'k'));
      k->set_wrapped(std::string(snapshot::kWrappedDataKeySize, 'w'));
    }
    linkpb::SealedChunk* c = up->add_chunks();
    c->set_id(std::move(id));
    c->set_sealed(std::move(sealed));
    return e;
  };
  // A structurally valid sealed chunk naming key "kkkk…".
  std::string sealed(36 + 16 + 10, '\0');
  sealed[0] = 1;  // version
  sealed[1] = 1;  // suite
  for (int i = 4; i < 20; ++i) sealed[static_cast<size_t>(i)] = 'k';
  sealed[20] = 10;  // plain_len
  const std::vector<Case> cases = {
      {"chunk id of 31 bytes", [&] { return upload(std::string(31, 'i'), sealed, true); },
       StatusCode::kInvalidArgument},
      {"sealed chunk with a bad header", [&] { return upload(std::string(32, 'i'), "junk", true); },
       StatusCode::kDataLoss},
      {"chunk under an unknown data key",
       [&] { return upload(std::string(32, 'i'), sealed, false); }, StatusCode::kInvalidArgument},
      {"oversized query",
       [] {
         linkpb::Envelope e;
         for (int i = 0; i < 10000; ++i) e.mutable_missing_query()->add_ids(std::string(32, 'x'));
         return e;
       },
       StatusCode::kInvalidArgument},
      {"commit part without a manifest",
       [] {
         linkpb::Envelope e;
         e.mutable_commit_request()->set_refs_part("x");
         return e;
       },
       StatusCode::kInvalidArgument},
      {"commit announcing a huge reference set",
       [] {
         linkpb::Envelope e;
         e.mutable_commit_request()->set_manifest("m");
         e.mutable_commit_request()->set_refs_size(1ull << 40);
         return e;
       },
       StatusCode::kResourceExhausted},
      {"second hello",
       [] {
         linkpb::Envelope e;
         e.mutable_hello()->set_min_version(1);
         e.mutable_hello()->set_max_version(1);
         return e;
       },
       StatusCode::kInvalidArgument},
      {"a reply where a request belongs",
       [] {
         linkpb::Envelope e;
         e.mutable_missing_reply();
         return e;
       },
       StatusCode::kInvalidArgument},
      {"a policy sync, which only the receiver sends",
       [] {
         linkpb::Envelope e;
         e.mutable_policy_sync()->set_generation(1);
         return e;
       },
       StatusCode::kInvalidArgument},
      {"an agent report with a last_error over 1 KiB",
       [] {
         linkpb::Envelope e;
         e.mutable_agent_report()->set_last_error(std::string(kMaxAgentReportErrorBytes + 1, 'e'));
         return e;
       },
       StatusCode::kInvalidArgument},
      {"an agent report with a negative time",
       [] {
         linkpb::Envelope e;
         e.mutable_agent_report()->set_reported_unix(-1);
         return e;
       },
       StatusCode::kInvalidArgument},
      {"an agent report with pending bytes past INT64_MAX",
       [] {
         linkpb::Envelope e;
         e.mutable_agent_report()->set_pending_bytes(uint64_t{1} << 63);
         return e;
       },
       StatusCode::kInvalidArgument},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto session = StartSession();
    ReplicationSender sender(*session->sender_end, *source_);
    ASSERT_TRUE(sender.Hello().ok());
    ASSERT_TRUE(session->sender_end->Send(c.frame()).ok());
    Result<linkpb::Envelope> reply = session->sender_end->Receive(std::chrono::seconds(10));
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    ASSERT_TRUE(reply->has_error()) << BodyName(*reply);
    EXPECT_EQ(StatusFromError(reply->error()).code(), c.code) << reply->error().message();
    session->thread.join();
    EXPECT_EQ(session->ended.code(), c.code);
  }
  Result<snapshot::StoreStats> stats = target_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->chunks, 0u);
  EXPECT_TRUE(policy_.reports.empty()) << "a refused report reaches no policy";
}

// ---- policy sync, Listen and keepalive ----

linkpb::Envelope SyncEnvelope(uint64_t generation, std::vector<std::string> policies) {
  linkpb::Envelope e;
  e.set_request_id(0);
  e.mutable_policy_sync()->set_generation(generation);
  for (std::string& p : policies) e.mutable_policy_sync()->add_policies(std::move(p));
  return e;
}

// What a sender's on_policy_sync saw. Called on the sender's thread only.
struct SyncLog {
  std::vector<linkpb::PolicySync> syncs;
  std::function<void(const linkpb::PolicySync&)> Callback() {
    return [this](const linkpb::PolicySync& s) { syncs.push_back(s); };
  }
};

// An UploadAck promises that the upload's chunks are durable: the receiver
// holds it while the chunks sit in the store's open pack, and releases it
// once the pack is fsync'd and indexed (another reader then sees them).
TEST_F(ReplicationTest, UploadAckComesOnlyOnceItsChunksAreDurable) {
  const std::string tree = MakeTree("tree", 2, 40000, 21);
  const snapshot::SnapshotId id = Capture(tree);
  snapshot::ChunkId chunk{};
  uint32_t size = 0;
  ASSERT_TRUE(source_
                  ->ForEachRef(id,
                               [&](const snapshot::ChunkId& c, uint32_t s) {
                                 chunk = c;
                                 size = s;
                                 return CancelledError("one is enough");
                               })
                  .code() == StatusCode::kCancelled);
  Bytes sealed;
  ASSERT_TRUE(source_->ReadSealedChunk(chunk, sealed).ok());
  ASSERT_EQ(sealed.size(), size);
  auto header = snapshot::ParseSealedChunkHeader(sealed);
  ASSERT_TRUE(header.ok());
  auto wrapped = source_->WrappedKey(header->key_id);
  ASSERT_TRUE(wrapped.ok());

  ReplicationReceiver receiver(*target_, policy_, peer_key_, true);
  std::vector<linkpb::Envelope> out;
  const linkpb::Envelope hello = HelloEnvelope();
  ASSERT_TRUE(receiver.Handle(hello, out).ok());
  out.clear();
  linkpb::Envelope upload;
  upload.set_request_id(2);
  linkpb::DataKey* k = upload.mutable_chunk_upload()->add_keys();
  k->set_key_id(std::string(header->key_id.begin(), header->key_id.end()));
  k->set_wrapped(std::string(wrapped->begin(), wrapped->end()));
  linkpb::SealedChunk* c = upload.mutable_chunk_upload()->add_chunks();
  c->set_id(std::string(chunk.begin(), chunk.end()));
  c->set_sealed(std::string(sealed.begin(), sealed.end()));
  ASSERT_TRUE(receiver.Handle(upload, out).ok());
  EXPECT_TRUE(out.empty()) << "acked while the chunk is only in the open pack";
  EXPECT_TRUE(receiver.holds_acks());
  auto reader = snapshot::LocalStore::Open(target_->dir(), snapshot::LocalStore::Mode::kReadOnly);
  ASSERT_TRUE(reader.ok());
  auto seen = (*reader)->ChunkSealedSize(chunk);
  ASSERT_TRUE(seen.ok());
  EXPECT_FALSE(seen->has_value()) << "not durable yet, so not indexed";

  ASSERT_TRUE(receiver.ReleaseAcks(out).ok());
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(out[0].has_upload_ack());
  EXPECT_EQ(out[0].request_id(), 2u);
  EXPECT_EQ(out[0].upload_ack().new_chunks(), 1u);
  reader = snapshot::LocalStore::Open(target_->dir(), snapshot::LocalStore::Mode::kReadOnly);
  ASSERT_TRUE(reader.ok());
  seen = (*reader)->ChunkSealedSize(chunk);
  ASSERT_TRUE(seen.ok() && seen->has_value()) << "acked, so durable and indexed";
  EXPECT_EQ(**seen, size);
  EXPECT_FALSE(receiver.holds_acks());
}

// The far side may send a PolicySync at any point, even before its
// HelloAck: Hello hands it to the callback and still completes.
TEST_F(ReplicationTest, PolicySyncIsDeliveredDuringHello) {
  auto [sender_end, peer_end] = InMemoryChannel::CreatePair();
  // Frames are queued: the peer's answers can be in place before Hello runs.
  ASSERT_TRUE(peer_end->Send(SyncEnvelope(7, {"{\"a\":1}", "{\"b\":2}"})).ok());
  ReplicationReceiver receiver(*target_, policy_, peer_key_, true);
  const linkpb::Envelope hello = HelloEnvelope();
  std::vector<linkpb::Envelope> out;
  ASSERT_TRUE(receiver.Handle(hello, out).ok());
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(peer_end->Send(out[0]).ok());

  SyncLog log;
  SenderOptions options;
  options.on_policy_sync = log.Callback();
  ReplicationSender sender(*sender_end, *source_, options);
  ASSERT_TRUE(sender.Hello().ok());
  ASSERT_EQ(log.syncs.size(), 1u);
  EXPECT_EQ(log.syncs[0].generation(), 7u);
  ASSERT_EQ(log.syncs[0].policies_size(), 2);
  EXPECT_EQ(log.syncs[0].policies(0), "{\"a\":1}");
  EXPECT_EQ(log.syncs[0].policies(1), "{\"b\":2}");
}

// ServeSession sends what `unsolicited` returns right after the HelloAck and
// between any two frames later: a push reads those syncs wherever they fall
// (here one after the HelloAck and one in the middle of the uploads) and
// completes as usual.
TEST_F(ReplicationTest, PolicySyncIsDeliveredDuringPush) {
  const std::string tree = MakeTree("tree", 20, 50000, 11);
  const snapshot::SnapshotId id = Capture(tree);
  ServeOptions serve = DefaultServe();
  int looks = 0;  // session thread only
  serve.unsolicited = [&looks] {
    std::vector<linkpb::Envelope> out;
    ++looks;
    if (looks == 1) out.push_back(SyncEnvelope(1, {"{\"first\":true}"}));
    if (looks == 5) out.push_back(SyncEnvelope(2, {}));
    return out;
  };
  auto session = StartSession(true, {}, serve);
  SyncLog log;
  SenderOptions options;
  options.upload_batch_bytes = 64 << 10;  // many frames: the second sync lands mid-push
  options.on_policy_sync = log.Callback();
  ReplicationSender sender(*session->sender_end, *source_, options);
  // The first sync follows the HelloAck, so Hello itself does not see it.
  ASSERT_TRUE(sender.Hello().ok());
  EXPECT_TRUE(log.syncs.empty());
  Result<PushReport> r = sender.Push(id);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(r->uploads + r->queries, 4u) << "the push was too short to be interleaved";
  ASSERT_EQ(log.syncs.size(), 2u);
  EXPECT_EQ(log.syncs[0].generation(), 1u);
  EXPECT_EQ(log.syncs[0].policies_size(), 1);
  EXPECT_EQ(log.syncs[1].generation(), 2u);
  EXPECT_EQ(log.syncs[1].policies_size(), 0) << "an empty set means no policies";
  EndSession(*session);
  ExpectRestoresFromTarget(id, tree);
}

// ---- agent reports ----

linkpb::Envelope ReportEnvelope(uint64_t pending_bytes, const std::string& error) {
  linkpb::Envelope e;
  e.mutable_agent_report()->set_pending_bytes(pending_bytes);
  e.mutable_agent_report()->set_pending_snapshots(pending_bytes > 0 ? 1 : 0);
  e.mutable_agent_report()->set_last_error(error);
  e.mutable_agent_report()->set_last_error_unix(error.empty() ? 0 : 1714564800);
  e.mutable_agent_report()->set_reported_unix(1714564805);
  return e;
}

// The receiver announces the agent_report capability; the sender sends what
// `unsolicited` returns right after the HelloAck and between the frames of a
// push (here once at the start and once mid-push); the receiver hands each
// report to its policy, answers nothing, and the push completes.
TEST_F(ReplicationTest, AgentReportsGoOutAfterHelloAndBetweenTheFramesOfAPush) {
  const std::string tree = MakeTree("tree", 20, 50000, 14);
  const snapshot::SnapshotId id = Capture(tree);
  auto session = StartSession();
  int asked = 0;  // sender's thread only
  SenderOptions options;
  options.upload_batch_bytes = 64 << 10;  // many frames
  ReplicationSender* sender_ptr = nullptr;
  options.unsolicited = [&] {
    std::vector<linkpb::Envelope> out;
    ++asked;
    EXPECT_TRUE(sender_ptr->PeerHas(kAgentReportCapability));
    if (asked == 1) out.push_back(ReportEnvelope(5000, "push of abc failed"));
    if (asked == 4) out.push_back(ReportEnvelope(0, ""));
    return out;
  };
  ReplicationSender sender(*session->sender_end, *source_, options);
  sender_ptr = &sender;
  ASSERT_TRUE(sender.Hello().ok());
  EXPECT_EQ(asked, 1) << "asked once the HelloAck is in";
  Result<PushReport> r = sender.Push(id);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(asked, 4) << "asked between the push's frames";
  EndSession(*session);
  ASSERT_EQ(policy_.reports.size(), 2u);
  EXPECT_EQ(policy_.reports[0].pending_bytes(), 5000u);
  EXPECT_EQ(policy_.reports[0].pending_snapshots(), 1u);
  EXPECT_EQ(policy_.reports[0].last_error(), "push of abc failed");
  EXPECT_EQ(policy_.reports[0].last_error_unix(), 1714564800);
  EXPECT_EQ(policy_.reports[1].pending_bytes(), 0u);
  EXPECT_EQ(policy_.reports[1].last_error(), "");
  EXPECT_EQ(session->receiver->stats().reports, 2u);
  EXPECT_EQ(session->receiver->stats().commits, 1u);
  ExpectRestoresFromTarget(id, tree);
}

// Nothing goes out unasked before the far side knows this key (an
// enrollment session), and a far side whose HelloAck does not list the
// capability (a hub older than reports, which would end the session on a
// message it does not know) is not sent reports.
TEST_F(ReplicationTest, ReportsNeedAnEnrolledKeyAndThePeersCapability) {
  {
    SCOPED_TRACE("unenrolled key");
    auto session = StartSession(/*enrolled=*/false);
    int asked = 0;
    SenderOptions options;
    options.unsolicited = [&] {
      ++asked;
      return std::vector<linkpb::Envelope>{ReportEnvelope(1, "")};
    };
    ReplicationSender sender(*session->sender_end, *source_, options);
    ASSERT_TRUE(sender.Hello().ok());
    EXPECT_FALSE(sender.peer().enrolled());
    EXPECT_EQ(asked, 0);
    EndSession(*session);
  }
  {
    SCOPED_TRACE("a peer without the capability");
    auto [sender_end, peer_end] = InMemoryChannel::CreatePair();
    ReplicationReceiver receiver(*target_, policy_, peer_key_, true);
    std::vector<linkpb::Envelope> out;
    ASSERT_TRUE(receiver.Handle(HelloEnvelope(), out).ok());
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].hello_ack().capabilities_size(), 1);
    EXPECT_EQ(out[0].hello_ack().capabilities(0), kAgentReportCapability);
    out[0].mutable_hello_ack()->clear_capabilities();  // as an older hub answers
    ASSERT_TRUE(peer_end->Send(out[0]).ok());
    SenderOptions options;
    ReplicationSender* sender_ptr = nullptr;
    options.unsolicited = [&] {
      // What the agent's replicator does.
      std::vector<linkpb::Envelope> frames;
      if (sender_ptr->PeerHas(kAgentReportCapability)) frames.push_back(ReportEnvelope(1, ""));
      return frames;
    };
    ReplicationSender sender(*sender_end, *source_, options);
    sender_ptr = &sender;
    ASSERT_TRUE(sender.Hello().ok());
    EXPECT_FALSE(sender.PeerHas(kAgentReportCapability));
    Result<linkpb::Envelope> hello = peer_end->Receive(std::chrono::seconds(10));
    ASSERT_TRUE(hello.ok() && hello->has_hello());
    Result<linkpb::Envelope> more = peer_end->Receive(std::chrono::milliseconds(50));
    EXPECT_EQ(more.status().code(), StatusCode::kDeadlineExceeded) << "nothing after the hello";
  }
}

TEST_F(ReplicationTest, ListenReturnsOkWhenNothingArrives) {
  auto session = StartSession();
  SenderOptions options;
  options.keepalive_interval = std::chrono::milliseconds(0);
  ReplicationSender sender(*session->sender_end, *source_, options);
  ASSERT_TRUE(sender.Hello().ok());
  const auto start = std::chrono::steady_clock::now();
  Status s = sender.Listen(std::chrono::milliseconds(50));
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));
  // The session is still usable.
  Result<PushReport> r = sender.Push(Capture(MakeTree("tree", 2, 5000, 12)));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

// A sync sent while the sender listens is handed to the callback, and
// Listen returns once it is applied.
TEST_F(ReplicationTest, ListenDeliversAPolicySync) {
  ServeOptions serve = DefaultServe();
  serve.poll_interval = std::chrono::milliseconds(10);
  std::atomic<uint64_t> want{1};  // the generation to send next; 0 = nothing
  serve.unsolicited = [&want] {
    std::vector<linkpb::Envelope> out;
    if (uint64_t g = want.exchange(0); g != 0) out.push_back(SyncEnvelope(g, {"{}"}));
    return out;
  };
  auto session = StartSession(true, {}, serve);
  SyncLog log;
  SenderOptions options;
  options.on_policy_sync = log.Callback();
  ReplicationSender sender(*session->sender_end, *source_, options);
  // The sync sent right after the HelloAck.
  ASSERT_TRUE(sender.Listen(std::chrono::seconds(30)).ok());
  ASSERT_EQ(log.syncs.size(), 1u);
  EXPECT_EQ(log.syncs[0].generation(), 1u);
  // A later change, while the session is idle.
  want.store(9);
  ASSERT_TRUE(sender.Listen(std::chrono::seconds(30)).ok());
  ASSERT_EQ(log.syncs.size(), 2u);
  EXPECT_EQ(log.syncs[1].generation(), 9u);
}

// The receiver's idle timeout counts frames it receives: Listen's Pings
// keep an idle session open well past it, while without them the session
// ends with DEADLINE_EXCEEDED, which Listen returns.
TEST_F(ReplicationTest, ListenKeepsAnIdleSessionAliveWithPings) {
  ServeOptions serve;
  serve.idle_timeout = std::chrono::milliseconds(300);
  {
    SCOPED_TRACE("with keepalive");
    auto session = StartSession(true, {}, serve);
    SenderOptions options;
    options.keepalive_interval = std::chrono::milliseconds(50);
    ReplicationSender sender(*session->sender_end, *source_, options);
    ASSERT_TRUE(sender.Hello().ok());
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1000);
    while (std::chrono::steady_clock::now() < until) {
      Status s = sender.Listen(std::chrono::milliseconds(100));  // returns early on each Pong
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    Result<PushReport> r = sender.Push(Capture(MakeTree("tree", 2, 5000, 13)));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
  }
  {
    SCOPED_TRACE("without keepalive");
    auto session = StartSession(true, {}, serve);
    SenderOptions options;
    options.keepalive_interval = std::chrono::milliseconds(0);
    ReplicationSender sender(*session->sender_end, *source_, options);
    ASSERT_TRUE(sender.Hello().ok());
    Status s;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (s.ok() && std::chrono::steady_clock::now() < until) {
      s = sender.Listen(std::chrono::seconds(1));
    }
    EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
    session->thread.join();
    EXPECT_EQ(session->ended.code(), StatusCode::kDeadlineExceeded);
  }
}

// A Ping from the far side is answered with a Pong carrying its id and
// nonce; Listen before enrollment is refused like Push.
TEST_F(ReplicationTest, ListenAnswersPingsAndNeedsAnEnrolledKey) {
  {
    auto [sender_end, peer_end] = InMemoryChannel::CreatePair();
    ReplicationReceiver receiver(*target_, policy_, peer_key_, true);
    const linkpb::Envelope hello = HelloEnvelope();
    std::vector<linkpb::Envelope> out;
    ASSERT_TRUE(receiver.Handle(hello, out).ok());
    ASSERT_TRUE(peer_end->Send(out[0]).ok());
    linkpb::Envelope ping;
    ping.set_request_id(42);
    ping.mutable_ping()->set_nonce(4242);
    ASSERT_TRUE(peer_end->Send(ping).ok());
    SenderOptions options;
    options.keepalive_interval = std::chrono::milliseconds(0);
    ReplicationSender sender(*sender_end, *source_, options);
    ASSERT_TRUE(sender.Listen(std::chrono::seconds(30)).ok());
    Result<linkpb::Envelope> hello_in = peer_end->Receive(std::chrono::seconds(10));
    ASSERT_TRUE(hello_in.ok() && hello_in->has_hello());
    Result<linkpb::Envelope> pong = peer_end->Receive(std::chrono::seconds(10));
    ASSERT_TRUE(pong.ok()) << pong.status().ToString();
    ASSERT_TRUE(pong->has_pong()) << BodyName(*pong);
    EXPECT_EQ(pong->request_id(), 42u);
    EXPECT_EQ(pong->pong().nonce(), 4242u);
  }
  {
    auto session = StartSession(/*enrolled=*/false);
    ReplicationSender sender(*session->sender_end, *source_);
    EXPECT_EQ(sender.Listen(std::chrono::milliseconds(10)).code(), StatusCode::kPermissionDenied);
  }
}

}  // namespace
}  // namespace ferry::mirror
