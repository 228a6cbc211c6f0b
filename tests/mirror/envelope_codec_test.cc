// Tests of mirror/replication/envelope_codec.cc: the checks every link frame
// gets before anything acts on it.
#include "mirror/replication/envelope_codec.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::mirror {
namespace {

TEST(EnvelopeCodecTest, RoundTripsAndRefusesWhatIsNotAnEnvelope) {
  linkpb::Envelope e;
  e.set_request_id(7);
  e.mutable_ping()->set_nonce(42);
  Result<Bytes> frame = EncodeEnvelope(e, kDefaultMaxFrameBytes);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  Result<linkpb::Envelope> back = DecodeEnvelope(*frame, kDefaultMaxFrameBytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->request_id(), 7u);
  EXPECT_EQ(back->ping().nonce(), 42u);

  EXPECT_EQ(DecodeEnvelope(*frame, frame->size() - 1).status().code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(EncodeEnvelope(e, frame->size() - 1).status().code(), StatusCode::kResourceExhausted);
  const Bytes junk = {0xff, 0xff, 0xff};
  EXPECT_EQ(DecodeEnvelope(junk, kDefaultMaxFrameBytes).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(DecodeEnvelope({}, kDefaultMaxFrameBytes).status().code(), StatusCode::kDataLoss)
      << "an Envelope without a body";
}

// The link allows frames up to 4 GiB - 1, protobuf parses at most 2 GiB - 1:
// a larger frame used to reach ParseFromArray with a negative size, which
// aborts the process (found while writing tests/fuzz/link_envelope_fuzz.cc).
TEST(EnvelopeCodecTest, FrameOverTwoGiBIsRefusedEvenWhenTheLimitAllowsIt) {
  const size_t size = size_t{3} << 30;
  // Address space only: the decoder must refuse the frame without reading it.
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  const ByteView frame(static_cast<const uint8_t*>(p), size);
  Result<linkpb::Envelope> e = DecodeEnvelope(frame, 0xFFFFFFFFu);
  EXPECT_EQ(e.status().code(), StatusCode::kResourceExhausted) << e.status().ToString();
  munmap(p, size);
}

// AgentReport.last_error must be UTF-8 (a proto3 string) and at most 1 KiB:
// BoundedUtf8 replaces stray bytes and never cuts a character in two.
TEST(EnvelopeCodecTest, BoundedUtf8IsWellFormedAndBounded) {
  struct Case {
    const char* name;
    std::string in;
    size_t max;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"ascii fits", "disk full", 64, "disk full"},
      {"ascii is cut", "abcdef", 3, "abc"},
      {"multibyte kept whole", "caf\xc3\xa9", 5, "caf\xc3\xa9"},
      {"multibyte that does not fit is dropped", "caf\xc3\xa9", 4, "caf"},
      {"four-byte character", "\xf0\x9f\x98\x80!", 5, "\xf0\x9f\x98\x80!"},
      {"stray continuation byte", std::string("a\x80") + "b", 8, "a?b"},
      {"invalid first byte", "\xff\xfe", 8, "??"},
      {"truncated sequence at the end", "ok\xe2\x82", 8, "ok??"},
      {"overlong form", "\xc0\xaf", 8, "??"},
      {"surrogate", "\xed\xa0\x80", 8, "???"},
      {"past U+10FFFF", "\xf4\x90\x80\x80", 8, "????"},
      {"empty", "", 8, ""},
      {"zero budget", "abc", 0, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(BoundedUtf8(c.in, c.max), c.want);
  }
  const std::string long_text(5000, 'x');
  EXPECT_EQ(BoundedUtf8(long_text, 1024).size(), 1024u);
}

TEST(EnvelopeCodecTest, AgentReportRoundTrips) {
  linkpb::Envelope e;
  e.mutable_agent_report()->set_pending_bytes(123456);
  e.mutable_agent_report()->set_pending_snapshots(3);
  e.mutable_agent_report()->set_last_error("push failed");
  e.mutable_agent_report()->set_last_error_unix(1714564800);
  e.mutable_agent_report()->set_reported_unix(1714564805);
  Result<Bytes> frame = EncodeEnvelope(e, kDefaultMaxFrameBytes);
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  Result<linkpb::Envelope> back = DecodeEnvelope(*frame, kDefaultMaxFrameBytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_TRUE(back->has_agent_report());
  EXPECT_STREQ(BodyName(*back), "agent_report");
  EXPECT_EQ(back->agent_report().pending_bytes(), 123456u);
  EXPECT_EQ(back->agent_report().pending_snapshots(), 3u);
  EXPECT_EQ(back->agent_report().last_error(), "push failed");
  EXPECT_EQ(back->agent_report().last_error_unix(), 1714564800);
  EXPECT_EQ(back->agent_report().reported_unix(), 1714564805);
}

}  // namespace
}  // namespace ferry::mirror
