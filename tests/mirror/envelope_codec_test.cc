// Tests of mirror/replication/envelope_codec.cc: the checks every link frame
// gets before anything acts on it.
#include "mirror/replication/envelope_codec.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>

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

}  // namespace
}  // namespace ferry::mirror
