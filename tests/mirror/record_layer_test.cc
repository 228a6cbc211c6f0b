// Tests of the link's record layer: mirror/transport/record_writer.cc and
// record_reader.cc (format: docs/format/link-transport.md, "Records").
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "core/sodium.h"
#include "mirror/transport/record_format.h"
#include "mirror/transport/record_reader.h"
#include "mirror/transport/record_writer.h"
#include "tests/testing/test_util.h"

// ---------------------------------------------------------------------------
// Allocation tracking: the largest single allocation made while tracking is
// on (any thread). Replaces the global operator new of mirror_tests; the
// transport tests use it too (link_transport_test.cc).
namespace {
std::atomic<bool> g_track_allocations{false};
std::atomic<size_t> g_largest_allocation{0};
}  // namespace

void* operator new(size_t size) {
  if (g_track_allocations.load(std::memory_order_relaxed)) {
    size_t prev = g_largest_allocation.load(std::memory_order_relaxed);
    while (size > prev && !g_largest_allocation.compare_exchange_weak(prev, size)) {
    }
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size) { return ::operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace ferry::mirror::transport::testing {
void StartTrackingAllocations() {
  g_largest_allocation.store(0);
  g_track_allocations.store(true);
}
size_t StopTrackingAllocations() {
  g_track_allocations.store(false);
  return g_largest_allocation.load();
}
}  // namespace ferry::mirror::transport::testing

namespace ferry::mirror::transport {
namespace {

constexpr size_t k8MiB = size_t{8} << 20;

Bytes Frame(size_t size, uint64_t seed = 1) { return ferry::testing::SeededBytes(seed, size); }

// Reads plaintext records until a frame completes; fails the test on error.
Bytes Reassemble(RecordReader& reader, const std::vector<Bytes>& records) {
  Bytes frame;
  for (size_t i = 0; i < records.size(); ++i) {
    auto r = reader.ReadRecord(records[i], frame);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    EXPECT_EQ(*r, i + 1 == records.size()) << "record " << i;
  }
  return frame;
}

struct CipherPair {
  noise::CipherState send;
  noise::CipherState receive;
};
CipherPair Ciphers() {
  SecretBytes key = sodium::RandomSecret(32);
  return {noise::CipherState(key.Clone()), noise::CipherState(key.Clone())};
}

Bytes RecordOf(std::initializer_list<uint8_t> head, size_t filler = 0) {
  Bytes r(head);
  r.resize(r.size() + filler, 0xab);
  return r;
}
Bytes StartRecord(uint32_t total, size_t data) {
  Bytes r;
  PutU8(r, 0x01);
  PutU32(r, total);
  r.resize(r.size() + data, 0xcd);
  return r;
}

TEST(RecordLayer, SmallFrameRecordIsByteExact) {
  // docs/format/link-transport.md, worked example.
  std::vector<Bytes> records = RecordWriter::SplitFrame(AsBytes("hello"));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(HexEncode(records[0]), "010500000068656c6c6f");
  records = RecordWriter::SplitFrame({});
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(HexEncode(records[0]), "0100000000");
}

TEST(RecordLayer, TwoRecordFrameLayout) {
  const Bytes frame = Frame(kMaxFrameStartData + 1);
  std::vector<Bytes> records = RecordWriter::SplitFrame(frame);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].size(), kMaxRecordSize);
  EXPECT_EQ(HexEncode(ByteView(records[0]).first(5)), "01ebff0000");  // 65515 LE
  EXPECT_EQ(records[1].size(), 2u);
  EXPECT_EQ(records[1][0], 0x02);
  EXPECT_EQ(records[1][1], frame.back());
}

TEST(RecordLayer, RoundTripsAtEveryBoundary) {
  const size_t sizes[] = {
      0,
      1,
      kMaxFrameStartData - 1,
      kMaxFrameStartData,
      kMaxFrameStartData + 1,
      kMaxFrameStartData + kMaxContinuationData - 1,
      kMaxFrameStartData + kMaxContinuationData,
      kMaxFrameStartData + kMaxContinuationData + 1,
      kMaxFrameStartData + 5 * kMaxContinuationData,
      1'000'000,
      k8MiB,
  };
  for (size_t size : sizes) {
    SCOPED_TRACE(size);
    const Bytes frame = Frame(size, size);
    std::vector<Bytes> records = RecordWriter::SplitFrame(frame);
    EXPECT_EQ(records.size(), RecordWriter::RecordCount(size));
    for (size_t i = 0; i + 1 < records.size(); ++i) {
      EXPECT_EQ(records[i].size(), kMaxRecordSize) << "every record but the last is full";
    }
    RecordReader reader(k8MiB);
    EXPECT_EQ(Reassemble(reader, records), frame);
    EXPECT_FALSE(reader.in_frame());
  }
}

TEST(RecordLayer, EncryptedRoundTripOfSeveralFrames) {
  CipherPair c = Ciphers();
  RecordWriter writer(k8MiB, std::move(c.send));
  RecordReader reader(k8MiB, std::move(c.receive));
  for (size_t size :
       {size_t{0}, size_t{1}, kMaxFrameStartData, kMaxFrameStartData + 1, size_t{300'000}, k8MiB}) {
    SCOPED_TRACE(size);
    const Bytes frame = Frame(size, size + 7);
    std::vector<Bytes> messages;
    ASSERT_TRUE(writer.WriteFrame(frame, messages).ok());
    ASSERT_EQ(messages.size(), RecordWriter::RecordCount(size));
    Bytes out;
    for (size_t i = 0; i < messages.size(); ++i) {
      EXPECT_LE(messages[i].size(), noise::kMaxMessageSize);
      auto r = reader.ReadMessage(messages[i], out);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(*r, i + 1 == messages.size());
    }
    EXPECT_EQ(out, frame);
  }
  EXPECT_EQ(writer.nonce(), reader.nonce());
}

TEST(RecordLayer, WriterRefusesFrameOverMaximum) {
  CipherPair c = Ciphers();
  RecordWriter writer(1000, std::move(c.send));
  std::vector<Bytes> messages;
  Status s = writer.WriteFrame(Frame(1001), messages);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(messages.empty());
  EXPECT_EQ(writer.nonce(), 0u);
  EXPECT_TRUE(writer.WriteFrame(Frame(1000), messages).ok());
}

TEST(RecordLayer, WriterAndReaderWithoutKeyRefuseMessages) {
  RecordWriter writer(1000);
  std::vector<Bytes> messages;
  EXPECT_EQ(writer.WriteFrame(Frame(10), messages).code(), StatusCode::kFailedPrecondition);
  RecordReader reader(1000);
  Bytes frame;
  EXPECT_EQ(reader.ReadMessage(Bytes(40), frame).status().code(), StatusCode::kFailedPrecondition);
}

// Every malformed record sequence, as plaintext records. The last record of
// each case is the bad one; the ones before it are valid.
TEST(RecordLayer, MalformedRecordsAreRejected) {
  struct Case {
    const char* name;
    std::vector<Bytes> records;
    StatusCode code;
    const char* message;
  };
  const size_t two_records = kMaxFrameStartData + 10;
  const Case cases[] = {
      {"empty record", {Bytes{}}, StatusCode::kDataLoss, "empty record"},
      {"unknown type 0x00",
       {RecordOf({0x00}, 4)},
       StatusCode::kDataLoss,
       "unknown record type 0x00"},
      {"unknown type 0x03",
       {RecordOf({0x03}, 4)},
       StatusCode::kDataLoss,
       "unknown record type 0x03"},
      {"unknown type 0xff", {RecordOf({0xff})}, StatusCode::kDataLoss, "unknown record type 0xff"},
      {"record over 65519 bytes",
       {StartRecord(70000, kMaxFrameStartData + 1)},
       StatusCode::kDataLoss,
       "exceeds the maximum of 65519"},
      {"continuation without start",
       {RecordOf({0x02}, 10)},
       StatusCode::kDataLoss,
       "continuation record without a frame start"},
      {"start while a frame is open",
       {StartRecord(two_records, kMaxFrameStartData), StartRecord(5, 5)},
       StatusCode::kDataLoss,
       "while a frame is open"},
      {"truncated start header",
       {RecordOf({0x01, 0x05, 0x00})},
       StatusCode::kDataLoss,
       "5-byte header"},
      {"start carries more than declared",
       {StartRecord(2, 3)},
       StatusCode::kDataLoss,
       "more than its declared frame length 2"},
      {"short start although the frame continues",
       {StartRecord(100, 50)},
       StatusCode::kDataLoss,
       "must start with 100"},
      {"short start of a long frame",
       {StartRecord(two_records, 1000)},
       StatusCode::kDataLoss,
       "must start with 65514"},
      {"empty continuation",
       {StartRecord(two_records, kMaxFrameStartData), RecordOf({0x02})},
       StatusCode::kDataLoss,
       "empty continuation record"},
      {"continuation overruns the frame",
       {StartRecord(two_records, kMaxFrameStartData), RecordOf({0x02}, 11)},
       StatusCode::kDataLoss,
       "overruns its frame (10 of"},
      {"short continuation although the frame continues",
       {StartRecord(kMaxFrameStartData + kMaxContinuationData + 5, kMaxFrameStartData),
        RecordOf({0x02}, 100)},
       StatusCode::kDataLoss,
       "must carry 65518"},
      {"declared length over the maximum",
       {StartRecord(k8MiB + 1, kMaxFrameStartData)},
       StatusCode::kResourceExhausted,
       "8388609 bytes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    RecordReader reader(k8MiB);
    Bytes frame;
    for (size_t i = 0; i + 1 < c.records.size(); ++i) {
      auto r = reader.ReadRecord(c.records[i], frame);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    }
    auto r = reader.ReadRecord(c.records.back(), frame);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), c.code) << r.status().ToString();
    EXPECT_NE(r.status().message().find(c.message), std::string::npos) << r.status().message();
    // Failure is final: a valid record afterwards gets the same error.
    auto again = reader.ReadRecord(RecordWriter::SplitFrame(AsBytes("ok"))[0], frame);
    EXPECT_EQ(again.status(), r.status());
    EXPECT_FALSE(reader.in_frame());
  }
}

TEST(RecordLayer, DeclaredFourGibFrameIsRefusedWithoutAllocating) {
  // One record that claims a 4 GiB - 1 frame: refused on the length field,
  // before any buffer for the frame exists.
  const Bytes record = StartRecord(0xFFFFFFFFu, kMaxFrameStartData);
  RecordReader reader(k8MiB);
  Bytes frame;
  testing::StartTrackingAllocations();
  auto r = reader.ReadRecord(record, frame);
  const size_t largest = testing::StopTrackingAllocations();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("4294967295"), std::string::npos);
  EXPECT_LT(largest, size_t{4096}) << "only the error message may be allocated";
  EXPECT_TRUE(frame.empty());
}

TEST(RecordLayer, DeclaredFrameAtTheMaximumReservesExactlyIt) {
  const size_t max = 200'000;
  const Bytes frame = Frame(max);
  std::vector<Bytes> records = RecordWriter::SplitFrame(frame);
  RecordReader reader(max);
  Bytes out;
  testing::StartTrackingAllocations();
  auto r = reader.ReadRecord(records[0], out);
  const size_t largest = testing::StopTrackingAllocations();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(largest, max);
  for (size_t i = 1; i < records.size(); ++i) ASSERT_TRUE(reader.ReadRecord(records[i], out).ok());
  EXPECT_EQ(out, frame);
}

// Damage on the wire, at the message level: every kind fails to decrypt
// under the implicit nonce and ends the reader with kDataLoss.
TEST(RecordLayer, TamperedMessagesAreDataLoss) {
  struct Case {
    const char* name;
    std::function<std::vector<Bytes>(std::vector<Bytes>)> tamper;
  };
  const Case cases[] = {
      {"flipped bit in ciphertext",
       [](std::vector<Bytes> m) {
         m[1][7] ^= 0x10;
         return m;
       }},
      {"flipped bit in tag",
       [](std::vector<Bytes> m) {
         m[1].back() ^= 0x01;
         return m;
       }},
      {"replayed message",
       [](std::vector<Bytes> m) {
         m.insert(m.begin() + 2, m[1]);
         return m;
       }},
      {"reordered messages",
       [](std::vector<Bytes> m) {
         std::swap(m[1], m[2]);
         return m;
       }},
      {"dropped message",
       [](std::vector<Bytes> m) {
         m.erase(m.begin() + 1);
         return m;
       }},
      {"truncated message",
       [](std::vector<Bytes> m) {
         m[1].resize(m[1].size() / 2);
         return m;
       }},
      {"message shorter than a tag",
       [](std::vector<Bytes> m) {
         m[1].resize(5);
         return m;
       }},
      {"empty message",
       [](std::vector<Bytes> m) {
         m[1].clear();
         return m;
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    CipherPair ciphers = Ciphers();
    RecordWriter writer(k8MiB, std::move(ciphers.send));
    RecordReader reader(k8MiB, std::move(ciphers.receive));
    std::vector<Bytes> messages;
    // Three frames of one record each, then a two-record frame.
    for (size_t size : {size_t{10}, size_t{20}, size_t{30}, kMaxFrameStartData + 50}) {
      ASSERT_TRUE(writer.WriteFrame(Frame(size, size), messages).ok());
    }
    messages = c.tamper(std::move(messages));
    Bytes frame;
    auto first = reader.ReadMessage(messages[0], frame);
    ASSERT_TRUE(first.ok());
    Status failure;
    for (size_t i = 1; i < messages.size() && failure.ok(); ++i) {
      failure = reader.ReadMessage(messages[i], frame).status();
    }
    EXPECT_EQ(failure.code(), StatusCode::kDataLoss) << failure.ToString();
    EXPECT_NE(failure.message().find("does not decrypt"), std::string::npos) << failure.message();
    EXPECT_EQ(reader.status(), failure);
  }
}

}  // namespace
}  // namespace ferry::mirror::transport
