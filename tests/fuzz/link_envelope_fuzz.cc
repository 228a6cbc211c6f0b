// libFuzzer target: what the receiving side of the link does with the frames
// a peer sends (mirror/replication/envelope_codec.cc, replication_receiver.cc).
// Input format: fuzz_formats.h. Each input is one session: its frames are
// decoded with DecodeEnvelope and handed, in order, to a ReplicationReceiver
// over a real LocalStore, the way ServeSession does. Checks, beyond "no
// crash, no UB":
//  - a decoded Envelope re-encodes and decodes to an equal message;
//  - Handle reports errors as values: a non-OK return leaves an Error frame
//    for the peer (except when the peer's own Error ended the session), and
//    every frame it answers with fits the receiver's max_frame_bytes;
//  - once the session is over (receiver gone, store flushed) nothing is left
//    in the store's tmp/ directory (no leaked refs files).
//
// Sessions share a store created once per process in a temporary directory
// (on /dev/shm when there is one), replaced every kInputsPerStore inputs so
// it stays small, and removed at exit: state carried between sessions
// (chunks, committed snapshots) is part of what the receiver must handle.
// With the fresh-store bit an input gets an empty store of its own instead
// (slower, but a commit then always reaches LocalStore::CommitSnapshot, and
// the input replays exactly).
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/message_differencer.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/log.h"
#include "mirror/replication/envelope_codec.h"
#include "mirror/replication/replication_receiver.h"
#include "snapshot/local_store.h"
#include "tests/fuzz/fuzz_formats.h"

namespace ferry::fuzz {
namespace {

using mirror::linkpb::Envelope;

constexpr int kInputsPerStore = 2000;

// Accepts every commit; enrolls with the token "good-token".
class FuzzPolicy : public mirror::ReceiverPolicy {
 public:
  Status AuthorizeCommit(const snapshot::ParsedManifest&) override { return OkStatus(); }
  Result<mirror::linkpb::EnrollResponse> Enroll(const mirror::linkpb::EnrollRequest& r,
                                                const sodium::PublicKey&) override {
    if (r.token() != "good-token") return PermissionDeniedError("join token is unknown");
    mirror::linkpb::EnrollResponse resp;
    resp.set_tenant("fuzz");
    resp.set_agent_name(r.agent_name());
    return resp;
  }
};

struct World {
  std::string root;  // mkdtemp'd, removed at exit
  int stores = 0;
  int inputs = 0;
  std::unique_ptr<snapshot::LocalStore> shared;
  FuzzPolicy policy;

  std::unique_ptr<snapshot::LocalStore> NewStore() {
    Result<std::unique_ptr<snapshot::LocalStore>> s =
        snapshot::LocalStore::Create(root + "/store-" + std::to_string(stores++));
    if (!s.ok()) {
      std::fprintf(stderr, "cannot create a store: %s\n", s.status().ToString().c_str());
      std::abort();
    }
    return std::move(*s);
  }
  static void RemoveStore(std::unique_ptr<snapshot::LocalStore> store) {
    const std::string dir = store->dir();
    store.reset();
    std::filesystem::remove_all(dir);
  }
  // The shared store, replaced every kInputsPerStore inputs.
  snapshot::LocalStore& Shared() {
    if (shared && inputs++ < kInputsPerStore) return *shared;
    inputs = 1;
    if (shared) RemoveStore(std::move(shared));
    shared = NewStore();
    return *shared;
  }
};

World* world = nullptr;
bool trace = false;  // FERRY_FUZZ_TRACE=1: print each frame and its answers

void RemoveWorld() {
  if (!world) return;
  world->shared.reset();
  std::filesystem::remove_all(world->root);
}

void Init() {
  // Parse errors are expected by the thousand; so are failed sessions.
  google::protobuf::SetLogHandler(nullptr);
  log::Init({.level = log::Level::kOff, .program = "link_envelope_fuzz"});
  world = new World;
  trace = std::getenv("FERRY_FUZZ_TRACE") != nullptr;
  std::string base = "/dev/shm";
  if (access(base.c_str(), W_OK) != 0) {
    const char* tmp = std::getenv("TMPDIR");
    base = tmp && *tmp ? tmp : "/tmp";
  }
  std::string pattern = base + "/ferry-link-fuzz-XXXXXX";
  if (!mkdtemp(pattern.data())) {
    std::perror("mkdtemp");
    std::abort();
  }
  world->root = pattern;
  std::atexit(RemoveWorld);
}

void RunSession(uint8_t config, ByteView in) {
  mirror::ReceiverOptions options;
  if (config & kEnvelopeTightLimits) {
    options.max_frame_bytes = kTightMaxFrameBytes;
    options.max_query_ids = kTightMaxQueryIds;
    options.max_refs_bytes = kTightMaxRefsBytes;
    options.upload_window_bytes = kTightMaxFrameBytes;
  }
  std::unique_ptr<snapshot::LocalStore> fresh;
  if (config & kEnvelopeFreshStore) fresh = world->NewStore();
  snapshot::LocalStore& store = fresh ? *fresh : world->Shared();
  const sodium::PublicKey peer{0x70, 0x65, 0x65, 0x72};
  {
    mirror::ReplicationReceiver receiver(store, world->policy, peer,
                                         (config & kEnvelopeNotEnrolled) == 0, options);
    std::vector<Envelope> out;
    for (ByteView frame : ParseFrames(in, kMaxFramesPerInput)) {
      Result<Envelope> e = mirror::DecodeEnvelope(frame, options.max_frame_bytes);
      if (trace) {
        std::fprintf(stderr, "frame of %zu bytes: %s\n", frame.size(),
                     e.ok() ? mirror::BodyName(*e) : e.status().ToString().c_str());
      }
      if (!e.ok()) break;  // ServeSession answers with an Error and ends the session
      {
        // Encoding is the inverse of decoding.
        Result<Bytes> again = mirror::EncodeEnvelope(*e, UINT64_MAX);
        FUZZ_CHECK(again.ok());
        Result<Envelope> back = mirror::DecodeEnvelope(*again, UINT64_MAX);
        FUZZ_CHECK(back.ok());
        FUZZ_CHECK(google::protobuf::util::MessageDifferencer::Equals(*e, *back));
      }
      out.clear();
      Status s = receiver.Handle(*e, out);
      if (trace) {
        for (const Envelope& answer : out) {
          std::fprintf(stderr, "  answer: %s %s\n", mirror::BodyName(answer),
                       answer.has_error() ? answer.error().message().c_str() : "");
        }
        if (!s.ok()) std::fprintf(stderr, "  session ends: %s\n", s.ToString().c_str());
      }
      for (const Envelope& answer : out) {
        FUZZ_CHECK(mirror::EncodeEnvelope(answer, options.max_frame_bytes).ok());
      }
      if (!s.ok()) {
        if (e->body_case() != Envelope::kError) {
          FUZZ_CHECK(!out.empty() && out.back().has_error());
        }
        break;
      }
    }
    Status flushed = receiver.Finish();
    FUZZ_CHECK(flushed.ok());
  }
  // The receiver is gone: whatever it kept in tmp/ must be gone too.
  std::error_code ec;
  FUZZ_CHECK(std::filesystem::is_empty(store.tmp_dir(), ec) && !ec);
  if (fresh) World::RemoveStore(std::move(fresh));
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ferry::fuzz::Init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ferry::fuzz::RunSession(data[0], ferry::ByteView(data + 1, size - 1));
  return 0;
}
