#include "core/bytes.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace ferry {
namespace {

TEST(Utf8Test, AcceptsWellFormedText) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii {\"json\": 1}"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));  // é € 😀
  EXPECT_TRUE(IsValidUtf8(std::string_view("nul\0inside", 11)));
}

TEST(Utf8Test, RefusesMalformedSequences) {
  for (const std::string_view bad : {
           std::string_view("\xff"),              // never valid
           std::string_view("\xc3"),              // truncated
           std::string_view("\xe2\x82"),          // truncated
           std::string_view("\xc0\xaf"),          // overlong '/'
           std::string_view("\xe0\x80\xaf"),      // overlong
           std::string_view("\xed\xa0\x80"),      // surrogate U+D800
           std::string_view("\xf4\x90\x80\x80"),  // past U+10FFFF
           std::string_view("a\x80"
                            "b"),  // stray continuation byte
       }) {
    EXPECT_FALSE(IsValidUtf8(bad)) << HexEncode(AsBytes(bad));
  }
}

TEST(HexTest, RoundTripsEveryByteValue) {
  Bytes all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<uint8_t>(i));
  const std::string hex = HexEncode(all);
  ASSERT_EQ(hex.size(), 512u);
  Result<Bytes> back = HexDecode(hex);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, all);
}

TEST(HexTest, EncodesLowercase) {
  EXPECT_EQ(HexEncode(Bytes{0x00, 0x0a, 0xab, 0xff}), "000aabff");
  EXPECT_EQ(HexEncode(Bytes{}), "");
}

TEST(HexTest, DecodeAcceptsUpperAndMixedCase) {
  Result<Bytes> upper = HexDecode("DEADBEEF");
  ASSERT_TRUE(upper.ok());
  EXPECT_EQ(*upper, (Bytes{0xde, 0xad, 0xbe, 0xef}));
  Result<Bytes> mixed = HexDecode("dEaDbEeF");
  ASSERT_TRUE(mixed.ok());
  EXPECT_EQ(*mixed, (Bytes{0xde, 0xad, 0xbe, 0xef}));
}

TEST(HexTest, EmptyStringDecodesToNoBytes) {
  Result<Bytes> r = HexDecode("");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

TEST(HexTest, DecodeRejectsOddLength) {
  for (std::string_view hex : {"0", "abc", "00112"}) {
    SCOPED_TRACE(hex);
    Result<Bytes> r = HexDecode(hex);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("odd length"), std::string::npos);
  }
}

TEST(HexTest, DecodeRejectsNonHexCharacters) {
  struct Case {
    std::string hex;
    size_t bad_pair_start;  // the position the error message names
  };
  const Case cases[] = {
      {"0g", 0},
      {"g0", 0},
      {"00zz", 2},
      {"0x12", 0},
      {" 0", 0},
      {"00-1", 2},
      {std::string{'0', '0', '\xff', '0'}, 2},
      {std::string{'0', '0', '\0', '0'}, 2},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(HexEncode(AsBytes(c.hex)));
    Result<Bytes> r = HexDecode(c.hex);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("position " + std::to_string(c.bad_pair_start)),
              std::string::npos)
        << r.status().message();
  }
}

TEST(LittleEndianTest, PutWritesLeastSignificantByteFirst) {
  Bytes out;
  PutU8(out, 0x01);
  PutU16(out, 0x0302);
  PutU32(out, 0x07060504);
  PutU64(out, 0x0f0e0d0c0b0a0908);
  PutBytes(out, Bytes{0x10, 0x11});
  Bytes expected;
  for (uint8_t i = 0x01; i <= 0x11; ++i) expected.push_back(i);
  EXPECT_EQ(out, expected);
}

TEST(LittleEndianTest, PutThenLoadRoundTrips) {
  const uint16_t u16s[] = {0, 1, 0x00ff, 0xff00, 0x1234, std::numeric_limits<uint16_t>::max()};
  for (uint16_t v : u16s) {
    Bytes b;
    PutU16(b, v);
    ASSERT_EQ(b.size(), 2u);
    EXPECT_EQ(LoadU16(b.data()), v);
  }
  const uint32_t u32s[] = {0,           1,          0x80,
                           0x8000'0000, 0xdeadbeef, std::numeric_limits<uint32_t>::max()};
  for (uint32_t v : u32s) {
    Bytes b;
    PutU32(b, v);
    ASSERT_EQ(b.size(), 4u);
    EXPECT_EQ(LoadU32(b.data()), v);
    uint8_t stored[4];
    StoreU32(stored, v);
    EXPECT_EQ(Bytes(stored, stored + 4), b);
  }
  const uint64_t u64s[] = {0,
                           1,
                           0x80,
                           0x8000'0000,
                           0x1'0000'0000,
                           0x8000'0000'0000'0000,
                           0x0123'4567'89ab'cdef,
                           std::numeric_limits<uint64_t>::max()};
  for (uint64_t v : u64s) {
    Bytes b;
    PutU64(b, v);
    ASSERT_EQ(b.size(), 8u);
    EXPECT_EQ(LoadU64(b.data()), v);
    uint8_t stored[8];
    StoreU64(stored, v);
    EXPECT_EQ(Bytes(stored, stored + 8), b);
  }
}

TEST(BytesTest, StringConversionsRoundTrip) {
  const std::string s("a\0b\xff", 4);
  Bytes b = ToBytes(s);
  EXPECT_EQ(b, (Bytes{'a', 0, 'b', 0xff}));
  EXPECT_EQ(ToString(b), s);
  EXPECT_EQ(AsStringView(AsBytes(s)), s);
}

TEST(ByteReaderTest, ReadsFieldsInOrder) {
  Bytes in;
  PutU8(in, 0xab);
  PutU16(in, 0x1234);
  PutU32(in, 0xdeadbeef);
  PutU64(in, 0x0123456789abcdef);
  PutBytes(in, Bytes{1, 2, 3, 4, 5});
  ByteReader r(in);
  uint8_t u8 = 0;
  uint16_t u16 = 0;
  uint32_t u32 = 0;
  uint64_t u64 = 0;
  ByteView view;
  std::array<uint8_t, 2> arr{};
  ASSERT_TRUE(r.ReadU8(u8));
  ASSERT_TRUE(r.ReadU16(u16));
  ASSERT_TRUE(r.ReadU32(u32));
  ASSERT_TRUE(r.ReadU64(u64));
  ASSERT_TRUE(r.ReadView(2, view));
  ASSERT_TRUE(r.ReadArray(arr));
  EXPECT_EQ(u8, 0xab);
  EXPECT_EQ(u16, 0x1234);
  EXPECT_EQ(u32, 0xdeadbeefu);
  EXPECT_EQ(u64, 0x0123456789abcdefu);
  EXPECT_EQ(Bytes(view.begin(), view.end()), (Bytes{1, 2}));
  EXPECT_EQ(arr, (std::array<uint8_t, 2>{3, 4}));
  EXPECT_EQ(r.position(), in.size() - 1);
  EXPECT_EQ(r.remaining(), 1u);
  EXPECT_EQ(Bytes(r.Rest().begin(), r.Rest().end()), (Bytes{5}));
  ASSERT_TRUE(r.ReadU8(u8));
  EXPECT_TRUE(r.empty());
  EXPECT_TRUE(r.Rest().empty());
}

// Every accessor, given one byte too few, fails and leaves the cursor and the
// output where they were.
TEST(ByteReaderTest, ShortReadFailsWithoutMovingTheCursor) {
  // The reader sees only the first `visible` bytes of `buffer`; the byte after
  // them is a sentinel that must never show up in a result.
  Bytes buffer = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xee};
  for (size_t visible = 0; visible < buffer.size(); ++visible) {
    SCOPED_TRACE("visible=" + std::to_string(visible));
    ByteReader r(ByteView(buffer).first(visible));
    // Consume one byte first (when there is one) so failures are checked
    // at a non-zero position too.
    size_t start = 0;
    uint8_t first = 0;
    if (visible > 0) {
      ASSERT_TRUE(r.ReadU8(first));
      start = 1;
    }
    const size_t left = visible - start;

    uint16_t u16 = 0xaaaa;
    EXPECT_EQ(r.ReadU16(u16), left >= 2);
    if (left < 2) {
      EXPECT_EQ(u16, 0xaaaa);
      EXPECT_EQ(r.position(), start);
    } else {
      EXPECT_EQ(r.position(), start + 2);
    }
    ByteReader r32(ByteView(buffer).first(visible));
    uint32_t u32 = 0xaaaaaaaa;
    EXPECT_EQ(r32.ReadU32(u32), visible >= 4);
    if (visible < 4) {
      EXPECT_EQ(u32, 0xaaaaaaaau);
      EXPECT_EQ(r32.position(), 0u);
    }
    ByteReader r64(ByteView(buffer).first(visible));
    uint64_t u64 = 0xaaaaaaaaaaaaaaaa;
    EXPECT_EQ(r64.ReadU64(u64), visible >= 8);
    if (visible < 8) {
      EXPECT_EQ(u64, 0xaaaaaaaaaaaaaaaau);
      EXPECT_EQ(r64.position(), 0u);
    }
    ByteReader rv(ByteView(buffer).first(visible));
    ByteView view;
    EXPECT_FALSE(rv.ReadView(visible + 1, view));
    EXPECT_TRUE(view.empty());
    EXPECT_EQ(rv.position(), 0u);
    std::array<uint8_t, 4> arr{};
    ByteReader ra(ByteView(buffer).first(visible));
    EXPECT_EQ(ra.ReadArray(arr), visible >= 4);
    if (visible < 4) {
      EXPECT_EQ(arr, (std::array<uint8_t, 4>{}));
      EXPECT_EQ(ra.position(), 0u);
    }
  }
}

TEST(ByteReaderTest, NeverReadsPastTheEnd) {
  Bytes buffer = {0x01, 0x02, 0x03, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee};
  ByteReader r(ByteView(buffer).first(3));
  uint64_t u64 = 0;
  uint32_t u32 = 0;
  EXPECT_FALSE(r.ReadU64(u64));
  EXPECT_FALSE(r.ReadU32(u32));
  uint16_t u16 = 0;
  ASSERT_TRUE(r.ReadU16(u16));
  EXPECT_EQ(u16, 0x0201);
  EXPECT_FALSE(r.ReadU16(u16));
  EXPECT_EQ(u16, 0x0201);
  uint8_t u8 = 0;
  ASSERT_TRUE(r.ReadU8(u8));
  EXPECT_EQ(u8, 0x03);
  EXPECT_FALSE(r.ReadU8(u8));
  EXPECT_EQ(u8, 0x03);
  EXPECT_EQ(r.position(), 3u);
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(ByteReaderTest, HugeViewLengthFailsInsteadOfOverflowing) {
  Bytes in = {1, 2, 3, 4};
  ByteReader r(in);
  uint8_t u8 = 0;
  ASSERT_TRUE(r.ReadU8(u8));
  ByteView view;
  EXPECT_FALSE(r.ReadView(std::numeric_limits<size_t>::max(), view));
  EXPECT_FALSE(r.ReadView(std::numeric_limits<size_t>::max() - 1, view));
  EXPECT_EQ(r.position(), 1u);
  EXPECT_TRUE(r.ReadView(3, view));
  EXPECT_TRUE(r.ReadView(0, view));
  EXPECT_TRUE(view.empty());
}

TEST(ByteReaderTest, EmptyInputHasNothingToRead) {
  ByteReader r(ByteView{});
  EXPECT_TRUE(r.empty());
  uint8_t u8 = 0;
  EXPECT_FALSE(r.ReadU8(u8));
  ByteView view;
  EXPECT_TRUE(r.ReadView(0, view));
  EXPECT_EQ(r.position(), 0u);
}

}  // namespace
}  // namespace ferry

namespace ferry {
namespace {

// RFC 4648 section 10 vectors, lowercase and without padding.
TEST(Base32EncodeTest, MatchesRfc4648Vectors) {
  EXPECT_EQ(Base32Encode(ToBytes("")), "");
  EXPECT_EQ(Base32Encode(ToBytes("f")), "my");
  EXPECT_EQ(Base32Encode(ToBytes("fo")), "mzxq");
  EXPECT_EQ(Base32Encode(ToBytes("foo")), "mzxw6");
  EXPECT_EQ(Base32Encode(ToBytes("foob")), "mzxw6yq");
  EXPECT_EQ(Base32Encode(ToBytes("fooba")), "mzxw6ytb");
  EXPECT_EQ(Base32Encode(ToBytes("foobar")), "mzxw6ytboi");
}

TEST(QuoteForMessageTest, EscapesAndCutsUntrustedText) {
  EXPECT_EQ(QuoteForMessage("acme"), "\"acme\"");
  EXPECT_EQ(QuoteForMessage(std::string_view("a\"b\\c\n\x01\xff", 8)),
            "\"a\\x22b\\x5cc\\x0a\\x01\\xff\"");
  EXPECT_EQ(QuoteForMessage(std::string(100, 'x'), 3), "\"xxx...\"");
}

}  // namespace
}  // namespace ferry
