// HubStreams: the hub's store of its agents' stream batches — where a batch
// may go (first anywhere, then exactly at the end), idempotent re-sends,
// reads by record offset, names, listing, and the index rebuilt after a
// restart. Batches are real sealed batches (docs/format/stream-batch.md).
#include "cloud-hub/hub_streams.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "snapshot/keyset.h"
#include "snapshot/stream_batch.h"
#include "tests/testing/test_util.h"

namespace ferry::hub {
namespace {

using ::ferry::testing::HasCode;
using ::ferry::testing::MakeDirsOrDie;
using ::ferry::testing::TempDir;
using mirror::StreamPosition;
using ::testing::HasSubstr;

// The record at `offset` of a stream: its content names the offset, so a
// record served at the wrong place is caught.
Bytes RecordAt(const std::string& stream, uint64_t offset) {
  return ToBytes(stream + " record " + std::to_string(offset));
}

class HubStreamsTest : public ::testing::Test {
 protected:
  HubStreamsTest() : keyset_(snapshot::Keyset::Generate()) {
    snapshot::Keyset::NewDataKey k = keyset_->MakeDataKey();
    key_.key = std::move(k.key);
    key_.wrapped = std::move(k.wrapped);
    Reopen();
  }

  // Destroys the HubStreams and makes a new one on the same directory (a
  // hub restart).
  void Reopen() {
    streams_.reset();
    streams_ = std::make_unique<HubStreams>(dir_.path());
  }

  // A sealed batch of records [first, first + count) of `stream`.
  Bytes Batch(const std::string& stream, uint64_t first, uint32_t count) {
    std::vector<Bytes> records;
    for (uint32_t i = 0; i < count; ++i) records.push_back(RecordAt(stream, first + i));
    const std::vector<ByteView> views(records.begin(), records.end());
    Result<Bytes> b = snapshot::SealStreamBatch(stream, first, views, key_, keyset_->signing_key());
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? std::move(*b) : Bytes();
  }

  // Verifies `sealed` (as the link receiver does) and appends it.
  Result<StreamPosition> Append(const std::string& tenant, const std::string& agent,
                                const Bytes& sealed) {
    Result<snapshot::StreamBatchHeader> h = snapshot::VerifyStreamBatch(sealed);
    EXPECT_TRUE(h.ok()) << h.status().ToString();
    if (!h.ok()) return h.status();
    return streams_->Append(tenant, agent, *h, sealed);
  }
  // Appends a new batch and expects it to be stored; returns it.
  Bytes AppendOk(const std::string& tenant, const std::string& agent, const std::string& stream,
                 uint64_t first, uint32_t count) {
    Bytes b = Batch(stream, first, count);
    Result<StreamPosition> p = Append(tenant, agent, b);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (p.ok()) {
      EXPECT_EQ(p->next, first + count);
    }
    return b;
  }

  Result<HubStreams::ReadResult> Read(const std::string& stream, uint64_t from,
                                      size_t max_bytes = 64u << 20) {
    return streams_->Read("acme", "edge-1", stream, from, max_bytes);
  }

  // The first offsets of the batches of a read.
  static std::vector<uint64_t> FirstOffsets(const HubStreams::ReadResult& r) {
    std::vector<uint64_t> out;
    for (const Bytes& b : r.batches) {
      Result<snapshot::StreamBatchHeader> h = snapshot::VerifyStreamBatch(b);
      EXPECT_TRUE(h.ok()) << h.status().ToString();
      out.push_back(h.ok() ? h->first_offset : UINT64_MAX);
    }
    return out;
  }

  static void ExpectPosition(const Result<StreamPosition>& p, uint64_t start, uint64_t next) {
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(p->start, start);
    EXPECT_EQ(p->next, next);
  }

  uint64_t BatchCount(const std::string& tenant, const std::string& agent,
                      const std::string& stream) {
    Result<std::vector<HubStreams::Info>> list = streams_->List(tenant, agent);
    EXPECT_TRUE(list.ok()) << list.status().ToString();
    if (!list.ok()) return 0;
    for (const HubStreams::Info& i : *list) {
      if (i.stream == stream) return i.batches;
    }
    return 0;
  }

  TempDir dir_;
  std::unique_ptr<snapshot::Keyset> keyset_;
  snapshot::StreamBatchKey key_;
  std::unique_ptr<HubStreams> streams_;
};

TEST_F(HubStreamsTest, FirstBatchMayStartAtAnyOffset) {
  ExpectPosition(streams_->Position("acme", "edge-1", "sensors"), 0, 0);
  ExpectPosition(Append("acme", "edge-1", Batch("sensors", 1000, 3)), 1000, 1003);
  ExpectPosition(streams_->Position("acme", "edge-1", "sensors"), 1000, 1003);
  ExpectPosition(Append("acme", "edge-1", Batch("logs", 0, 2)), 0, 2);
  ExpectPosition(streams_->Position("acme", "edge-1", "logs"), 0, 2);
}

TEST_F(HubStreamsTest, AppendsMustContinueExactlyAtTheNextOffset) {
  const Bytes first = AppendOk("acme", "edge-1", "sensors", 1000, 3);
  const struct {
    const char* what;
    uint64_t first;
    uint32_t count;
    const char* message;
  } kRefused[] = {
      {"gap of one", 1004, 2,
       "stream sensors: batch [1004, 1006) leaves a gap: "
       "this hub holds [1000, 1003)"},
      {"far gap", 5000, 1, "batch [5000, 5001) leaves a gap"},
      {"overlap of one", 1002, 3,
       "stream sensors: batch [1002, 1005) overlaps the end: "
       "this hub holds [1000, 1003)"},
      {"overlap from below the start", 990, 20,
       "batch [990, 1010) starts below this hub's first offset 1000"},
      {"wholly below the start: never stored here, so never acknowledged", 10, 5,
       "batch [10, 15) starts below this hub's first offset 1000"},
  };
  for (const auto& c : kRefused) {
    SCOPED_TRACE(c.what);
    Result<StreamPosition> p = Append("acme", "edge-1", Batch("sensors", c.first, c.count));
    EXPECT_TRUE(HasCode(p.status(), StatusCode::kFailedPrecondition));
    EXPECT_THAT(p.status().message(), HasSubstr(c.message));
    ExpectPosition(streams_->Position("acme", "edge-1", "sensors"), 1000, 1003);
    EXPECT_EQ(BatchCount("acme", "edge-1", "sensors"), 1u) << "a refused batch is not stored";
  }
  ExpectPosition(Append("acme", "edge-1", Batch("sensors", 1003, 2)), 1000, 1005);
  Result<HubStreams::ReadResult> r = Read("sensors", 1000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(FirstOffsets(*r), (std::vector<uint64_t>{1000, 1003}));
}

// A sender re-sends what it had no ack for (e.g. after a cut): a batch
// wholly below the next offset is acknowledged with the current position
// and not stored again.
TEST_F(HubStreamsTest, BatchAlreadyHeldIsAcknowledgedWithoutBeingStoredAgain) {
  const Bytes a = AppendOk("acme", "edge-1", "sensors", 0, 3);
  const Bytes b = AppendOk("acme", "edge-1", "sensors", 3, 2);
  Result<std::vector<HubStreams::Info>> before = streams_->List("acme");
  ASSERT_TRUE(before.ok());
  ASSERT_EQ(before->size(), 1u);

  const struct {
    const char* what;
    Bytes batch;
  } kHeld[] = {
      {"the first batch again", a},
      {"the last batch again", b},
      {"a batch inside a stored one", Batch("sensors", 1, 1)},
      {"a batch spanning stored ones", Batch("sensors", 2, 3)},
  };
  for (const auto& c : kHeld) {
    SCOPED_TRACE(c.what);
    ExpectPosition(Append("acme", "edge-1", c.batch), 0, 5);
  }
  Result<std::vector<HubStreams::Info>> after = streams_->List("acme");
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].batches, 2u);
  EXPECT_EQ((*after)[0].bytes, (*before)[0].bytes) << "nothing was appended";
  Result<HubStreams::ReadResult> r = Read("sensors", 0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->batches.size(), 2u);
  EXPECT_TRUE(r->batches[0] == a);
  EXPECT_TRUE(r->batches[1] == b);
}

TEST_F(HubStreamsTest, ReadFromTheMiddleOfABatchStartsWithThatBatch) {
  std::vector<Bytes> batches;
  batches.push_back(AppendOk("acme", "edge-1", "sensors", 10, 3));  // [10, 13)
  batches.push_back(AppendOk("acme", "edge-1", "sensors", 13, 5));  // [13, 18)
  batches.push_back(AppendOk("acme", "edge-1", "sensors", 18, 2));  // [18, 20)
  const struct {
    uint64_t from;
    std::vector<uint64_t> firsts;
  } kReads[] = {
      {10, {10, 13, 18}}, {12, {10, 13, 18}}, {13, {13, 18}},
      {15, {13, 18}},     {17, {13, 18}},     {19, {18}},
  };
  for (const auto& c : kReads) {
    SCOPED_TRACE("from " + std::to_string(c.from));
    Result<HubStreams::ReadResult> r = Read("sensors", c.from);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(FirstOffsets(*r), c.firsts);
    EXPECT_EQ(r->position.start, 10u);
    EXPECT_EQ(r->position.next, 20u);
    // The batches come back byte for byte as they were sent.
    const size_t skip = batches.size() - c.firsts.size();
    for (size_t i = 0; i < r->batches.size(); ++i) {
      EXPECT_TRUE(r->batches[i] == batches[skip + i]) << "batch " << i;
    }
  }
  // And they open to the records at their offsets.
  Result<HubStreams::ReadResult> r = Read("sensors", 15);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Result<std::vector<snapshot::StreamRecord>> records =
      snapshot::OpenStreamBatch(r->batches[0], key_.key.key);
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  ASSERT_EQ(records->size(), 5u);
  EXPECT_EQ((*records)[2].offset, 15u);
  EXPECT_TRUE((*records)[2].data == RecordAt("sensors", 15));
}

TEST_F(HubStreamsTest, ReadReturnsAtLeastOneBatchAndStopsAtMaxBytes) {
  const Bytes a = AppendOk("acme", "edge-1", "sensors", 0, 4);
  const Bytes b = AppendOk("acme", "edge-1", "sensors", 4, 4);
  AppendOk("acme", "edge-1", "sensors", 8, 4);
  Result<HubStreams::ReadResult> r = Read("sensors", 1, 1);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(FirstOffsets(*r), (std::vector<uint64_t>{0})) << "one batch, whatever its size";
  r = Read("sensors", 1, a.size() + b.size());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(FirstOffsets(*r), (std::vector<uint64_t>{0, 4}));
}

TEST_F(HubStreamsTest, ReadAtTheNextOffsetIsEmptyAndOutsideTheStreamIsOutOfRange) {
  AppendOk("acme", "edge-1", "sensors", 10, 3);
  AppendOk("acme", "edge-1", "sensors", 13, 2);
  Result<HubStreams::ReadResult> at_next = Read("sensors", 15);
  ASSERT_TRUE(at_next.ok()) << at_next.status().ToString();
  EXPECT_TRUE(at_next->batches.empty());
  EXPECT_EQ(at_next->position.start, 10u);
  EXPECT_EQ(at_next->position.next, 15u);

  const struct {
    uint64_t from;
    const char* message;
  } kOutside[] = {
      {0, "offset 0 of stream sensors is not at this hub: its first offset is 10"},
      {9, "offset 9 of stream sensors is not at this hub: its first offset is 10"},
      {16, "offset 16 of stream sensors is past its end: the next offset is 15"},
      {UINT64_MAX, "is past its end: the next offset is 15"},
  };
  for (const auto& c : kOutside) {
    SCOPED_TRACE("from " + std::to_string(c.from));
    Result<HubStreams::ReadResult> r = Read("sensors", c.from);
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kOutOfRange));
    EXPECT_THAT(r.status().message(), HasSubstr(c.message));
  }
}

TEST_F(HubStreamsTest, StreamNeverReceivedIsNotFound) {
  AppendOk("acme", "edge-1", "sensors", 0, 1);
  const struct {
    const char* tenant;
    const char* agent;
    const char* stream;
  } kUnknown[] = {
      {"acme", "edge-1", "logs"},       // another stream
      {"acme", "edge-2", "sensors"},    // another agent's
      {"globex", "edge-1", "sensors"},  // another tenant's
  };
  for (const auto& c : kUnknown) {
    SCOPED_TRACE(std::string(c.tenant) + "/" + c.agent + "/" + c.stream);
    Result<HubStreams::ReadResult> r = streams_->Read(c.tenant, c.agent, c.stream, 0, 1 << 20);
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kNotFound));
    EXPECT_THAT(r.status().message(), HasSubstr("has sent no stream " + std::string(c.stream)));
    ExpectPosition(streams_->Position(c.tenant, c.agent, c.stream), 0, 0);
  }
  // Asking did not create anything.
  Result<std::vector<HubStreams::Info>> list = streams_->List("acme");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].stream, "sensors");
  list = streams_->List("globex");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  EXPECT_TRUE(list->empty());
}

TEST_F(HubStreamsTest, BadNamesAreInvalidArgument) {
  const std::string kBad[] = {"",       "Sensors", "a/b", "..",
                              "../etc", "-x",      "a b", std::string(64, 'a')};
  for (const std::string& bad : kBad) {
    SCOPED_TRACE("'" + bad + "'");
    EXPECT_TRUE(HasCode(streams_->Position(bad, "edge-1", "sensors").status(),
                        StatusCode::kInvalidArgument));
    EXPECT_TRUE(
        HasCode(streams_->Position("acme", bad, "sensors").status(), StatusCode::kInvalidArgument));
    EXPECT_TRUE(
        HasCode(streams_->Position("acme", "edge-1", bad).status(), StatusCode::kInvalidArgument));
    EXPECT_TRUE(HasCode(streams_->Read(bad, "edge-1", "sensors", 0, 1).status(),
                        StatusCode::kInvalidArgument));
    EXPECT_TRUE(HasCode(streams_->Read("acme", bad, "sensors", 0, 1).status(),
                        StatusCode::kInvalidArgument));
    EXPECT_TRUE(HasCode(streams_->Read("acme", "edge-1", bad, 0, 1).status(),
                        StatusCode::kInvalidArgument));
    EXPECT_TRUE(HasCode(streams_->List(bad).status(), StatusCode::kInvalidArgument));
    const Bytes good = Batch("sensors", 0, 1);
    EXPECT_TRUE(HasCode(Append(bad, "edge-1", good).status(), StatusCode::kInvalidArgument));
    EXPECT_TRUE(HasCode(Append("acme", bad, good).status(), StatusCode::kInvalidArgument));
    if (!bad.empty()) {
      // A name the batch format allows (1..255 bytes) but the hub does not.
      Result<StreamPosition> p = Append("acme", "edge-1", Batch(bad, 0, 1));
      EXPECT_TRUE(HasCode(p.status(), StatusCode::kInvalidArgument));
      EXPECT_THAT(p.status().message(), HasSubstr("stream name"));
    }
  }
  // Nothing was created.
  Result<std::vector<HubStreams::Info>> list = streams_->List("acme");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  EXPECT_TRUE(list->empty());
}

TEST_F(HubStreamsTest, ListReportsAgentsStreamsAndPositions) {
  size_t sensors_bytes = 0;
  for (uint64_t first : {uint64_t{100}, uint64_t{103}}) {
    sensors_bytes += AppendOk("acme", "edge-1", "sensors", first, 3).size();
  }
  AppendOk("acme", "edge-1", "logs", 0, 7);
  AppendOk("acme", "edge-2", "sensors", 50, 1);
  AppendOk("globex", "edge-1", "metrics", 0, 1);
  // Directories that are no names of the hub's are not streams.
  MakeDirsOrDie(dir_.Sub("tenants/acme/streams/edge-1/Not_A_Stream"));
  MakeDirsOrDie(dir_.Sub("tenants/acme/streams/Not_An_Agent/sensors"));

  Result<std::vector<HubStreams::Info>> list = streams_->List("acme");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 3u);
  const struct {
    const char* agent;
    const char* stream;
    uint64_t start, next, batches;
  } kWant[] = {
      {"edge-1", "logs", 0, 7, 1},
      {"edge-1", "sensors", 100, 106, 2},
      {"edge-2", "sensors", 50, 51, 1},
  };
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    const HubStreams::Info& got = (*list)[i];
    EXPECT_EQ(got.agent, kWant[i].agent);
    EXPECT_EQ(got.stream, kWant[i].stream);
    EXPECT_EQ(got.position.start, kWant[i].start);
    EXPECT_EQ(got.position.next, kWant[i].next);
    EXPECT_EQ(got.batches, kWant[i].batches);
  }
  // On disk: one stream-log segment, a 32-byte header and an 8-byte frame
  // per batch (docs/format/stream-segment.md).
  EXPECT_EQ((*list)[1].bytes, 32 + 2 * 8 + sensors_bytes);

  Result<std::vector<HubStreams::Info>> one_agent = streams_->List("acme", "edge-2");
  ASSERT_TRUE(one_agent.ok()) << one_agent.status().ToString();
  ASSERT_EQ(one_agent->size(), 1u);
  EXPECT_EQ((*one_agent)[0].agent, "edge-2");
  Result<std::vector<HubStreams::Info>> other = streams_->List("globex");
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  ASSERT_EQ(other->size(), 1u);
  EXPECT_EQ((*other)[0].stream, "metrics");
  Result<std::vector<HubStreams::Info>> none = streams_->List("initech");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());
}

// What a reader sees of all streams, to compare before and after a restart.
struct Snapshot {
  std::vector<std::string> list;   // agent/stream [start, next) batches bytes
  std::vector<std::string> reads;  // hex of the batches of each read
};

TEST_F(HubStreamsTest, IndexIsRebuiltAfterARestart) {
  for (uint64_t first = 1000; first < 1040; first += 4)
    AppendOk("acme", "edge-1", "sensors", first, 4);
  AppendOk("acme", "edge-1", "logs", 0, 1);
  AppendOk("acme", "edge-2", "sensors", 7, 3);

  auto take = [&] {
    Snapshot s;
    Result<std::vector<HubStreams::Info>> list = streams_->List("acme");
    EXPECT_TRUE(list.ok()) << list.status().ToString();
    for (const HubStreams::Info& i : list.ok() ? *list : std::vector<HubStreams::Info>{}) {
      s.list.push_back(i.agent + "/" + i.stream + " [" + std::to_string(i.position.start) + ", " +
                       std::to_string(i.position.next) + ") " + std::to_string(i.batches) + " " +
                       std::to_string(i.bytes));
    }
    for (uint64_t from : {1000, 1001, 1019, 1020, 1038, 1039, 1040}) {
      Result<HubStreams::ReadResult> r = Read("sensors", from, 3000);
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      std::string all =
          r.ok() ? std::to_string(r->position.start) + "-" + std::to_string(r->position.next) + ":"
                 : r.status().ToString();
      if (r.ok()) {
        for (const Bytes& b : r->batches) all += HexEncode(b) + ",";
      }
      s.reads.push_back(std::move(all));
    }
    return s;
  };
  const Snapshot before = take();
  ASSERT_EQ(before.list.size(), 3u);

  {
    SCOPED_TRACE("after CloseAll");
    ASSERT_TRUE(streams_->CloseAll().ok());
    const Snapshot after = take();
    EXPECT_EQ(after.list, before.list);
    EXPECT_EQ(after.reads, before.reads);
  }
  {
    SCOPED_TRACE("after a new HubStreams on the same directory");
    Reopen();
    ExpectPosition(streams_->Position("acme", "edge-1", "sensors"), 1000, 1040);
    ExpectPosition(streams_->Position("acme", "edge-2", "sensors"), 7, 10);
    const Snapshot after = take();
    EXPECT_EQ(after.list, before.list);
    EXPECT_EQ(after.reads, before.reads);
  }
  // The rebuilt position still decides where appends may go.
  Reopen();
  EXPECT_TRUE(HasCode(Append("acme", "edge-1", Batch("sensors", 1041, 1)).status(),
                      StatusCode::kFailedPrecondition));
  ExpectPosition(Append("acme", "edge-1", Batch("sensors", 1036, 4)), 1000, 1040);
  EXPECT_EQ(BatchCount("acme", "edge-1", "sensors"), 10u);
  ExpectPosition(Append("acme", "edge-1", Batch("sensors", 1040, 2)), 1000, 1042);
  Reopen();
  Result<HubStreams::ReadResult> r = Read("sensors", 1041);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(FirstOffsets(*r), (std::vector<uint64_t>{1040}));
}

}  // namespace
}  // namespace ferry::hub
