// CheckWireLengths: protobuf bytes whose length-delimited fields claim more
// than they hold are refused before protobuf parses (and pre-allocates for)
// them, at any nesting level the schema names a message.
#include "snapshot/wire_check.h"

#include <gtest/gtest.h>

#include "proto/link.pb.h"
#include "proto/snapshot.pb.h"
#include "snapshot/tree.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

using ::ferry::link::v1::Envelope;

Bytes Varint(uint64_t v) {
  Bytes out;
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
  return out;
}

// A length-delimited field: tag, length, and `content` (which may be
// shorter than `claimed`).
Bytes Field(int number, uint64_t claimed, const Bytes& content) {
  Bytes out = Varint((static_cast<uint64_t>(number) << 3) | 2);
  PutBytes(out, Varint(claimed));
  PutBytes(out, content);
  return out;
}

TEST(WireCheckTest, ValidMessagesPass) {
  Envelope e;
  e.set_request_id(7);
  auto* up = e.mutable_chunk_upload();
  up->add_chunks()->set_sealed(std::string(1000, 'x'));
  up->add_keys()->set_wrapped(std::string(96, 'k'));
  const std::string bytes = e.SerializeAsString();
  EXPECT_TRUE(CheckWireLengths(AsBytes(bytes), *Envelope::descriptor()).ok());
  pb::Tree tree;
  tree.add_nodes()->set_name("a");
  const std::string t = tree.SerializeAsString();
  EXPECT_TRUE(CheckWireLengths(AsBytes(t), *pb::Tree::descriptor()).ok());
  EXPECT_TRUE(CheckWireLengths({}, *Envelope::descriptor()).ok());
}

TEST(WireCheckTest, AFieldClaimingMoreThanTheFrameHoldsIsRefusedAtAnyDepth) {
  // Envelope.hello claiming 50 MB in a 5-byte frame.
  const Bytes top = Field(2, 50'000'000, {});
  Status s = CheckWireLengths(top, *Envelope::descriptor());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("claims 50000000 bytes"), std::string::npos) << s.ToString();
  // Envelope.chunk_upload.chunks[0].sealed claiming 50 MB, inside fields
  // whose own lengths are right.
  const Bytes sealed = Field(2, 50'000'000, Bytes(3, 'x'));
  const Bytes chunk = Field(2, sealed.size(), sealed);
  const Bytes upload = Field(9, chunk.size(), chunk);
  s = CheckWireLengths(upload, *Envelope::descriptor());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("claims 50000000 bytes; 3 are left"), std::string::npos)
      << s.ToString();
  // A bytes field's content is not looked into (it is not a message).
  Bytes inner_bytes = Field(2, 50'000'000, {});
  const Bytes opaque = Field(2, inner_bytes.size(), inner_bytes);  // SealedChunk.sealed
  const Bytes chunk2 = Field(2, opaque.size(), opaque);
  const Bytes upload2 = Field(9, chunk2.size(), chunk2);
  EXPECT_TRUE(CheckWireLengths(upload2, *Envelope::descriptor()).ok());
}

TEST(WireCheckTest, TruncatedFieldsAndGroupsAreRefused) {
  const auto check = [](const Bytes& b) { return CheckWireLengths(b, *Envelope::descriptor()); };
  EXPECT_EQ(check({0x08}).code(), StatusCode::kDataLoss);           // varint missing
  EXPECT_EQ(check({0x08, 0x80}).code(), StatusCode::kDataLoss);     // varint cut
  EXPECT_EQ(check({0x09, 1, 2, 3}).code(), StatusCode::kDataLoss);  // fixed64 cut
  EXPECT_EQ(check({0x0d, 1}).code(), StatusCode::kDataLoss);        // fixed32 cut
  EXPECT_EQ(check({0x0b}).code(), StatusCode::kDataLoss);           // start group
  EXPECT_EQ(check(Bytes(11, 0xff)).code(), StatusCode::kDataLoss);  // 11-byte tag
}

}  // namespace
}  // namespace ferry::snapshot
