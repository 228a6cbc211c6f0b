#include "snapshot/chunk_stream.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "snapshot/chunker.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

using ::ferry::testing::CompressibleBytes;
using ::ferry::testing::SeededBytes;

// Small chunks so that short inputs still have many cut points.
ChunkerParams SmallParams() {
  ChunkerParams p;
  p.min_size = 256;
  p.avg_size = 1024;
  p.max_size = 4096;
  return p;
}

// Random data with runs of zeros (which hit the max_size cut) and
// compressible stretches in between.
Bytes MixedInput(uint64_t seed, size_t size) {
  Bytes out = SeededBytes(seed, size);
  const Bytes comp = CompressibleBytes(seed + 1, size / 4, 0.5);
  std::copy(comp.begin(), comp.end(), out.begin() + static_cast<std::ptrdiff_t>(size / 8));
  std::fill(out.begin() + static_cast<std::ptrdiff_t>(size / 2),
            out.begin() + static_cast<std::ptrdiff_t>(size / 2 + 20000), 0);
  return out;
}

// Records what a stream emits and checks its buffering bound as it goes.
struct Collector {
  std::vector<Bytes> chunks;
  uint64_t emitted = 0;
  ChunkStream::Emit Emit() {
    return [this](ByteView c) {
      emitted += c.size();
      chunks.emplace_back(c.begin(), c.end());
    };
  }
  std::vector<size_t> Lengths() const {
    std::vector<size_t> l;
    for (const Bytes& c : chunks) l.push_back(c.size());
    return l;
  }
  Bytes Joined() const {
    Bytes all;
    for (const Bytes& c : chunks) all.insert(all.end(), c.begin(), c.end());
    return all;
  }
};

// Cut lengths of the whole input in one buffer, straight from the chunker.
std::vector<size_t> ReferenceCuts(const Chunker& chunker, ByteView data) {
  std::vector<size_t> out;
  while (!data.empty()) {
    const size_t n = chunker.FindBoundary(data, /*at_eof=*/true);
    if (n == 0) break;
    out.push_back(n);
    data = data.subspan(n);
  }
  return out;
}

class ChunkStreamTest : public ::testing::Test {
 protected:
  ChunkStreamTest() : chunker_(SmallParams(), DefaultGearTable()) {}
  Chunker chunker_;
};

TEST_F(ChunkStreamTest, WriteEmitsChunksThatConcatenateToTheInput) {
  const Bytes input = MixedInput(1, 300000);
  Collector c;
  ChunkStream stream(chunker_, c.Emit());
  stream.Write(input);
  EXPECT_EQ(stream.total_bytes(), input.size());
  stream.Finish();
  EXPECT_EQ(c.Joined(), input);
  EXPECT_EQ(c.Lengths(), ReferenceCuts(chunker_, input));
  for (size_t i = 0; i < c.chunks.size(); ++i) {
    SCOPED_TRACE("chunk " + std::to_string(i));
    EXPECT_LE(c.chunks[i].size(), SmallParams().max_size);
    if (i + 1 < c.chunks.size()) {
      EXPECT_GE(c.chunks[i].size(), SmallParams().min_size);
    }
  }
  EXPECT_GT(c.chunks.size(), 50u);
}

TEST_F(ChunkStreamTest, PieceSizesDoNotChangeTheCuts) {
  const Bytes input = MixedInput(2, 60000);
  const std::vector<size_t> want = ReferenceCuts(chunker_, input);
  std::mt19937_64 rng(3);
  const struct {
    const char* what;
    size_t max_piece;
  } kModes[] = {{"1-byte pieces", 1},
                {"up to 7 bytes", 7},
                {"up to 5000 bytes", 5000},
                {"up to 3 x max_size", 3 * 4096}};
  for (const auto& mode : kModes) {
    for (bool prepare_commit : {false, true}) {
      SCOPED_TRACE(std::string(mode.what) + (prepare_commit ? ", Prepare/Commit" : ", Write"));
      Collector c;
      ChunkStream stream(chunker_, c.Emit());
      size_t pos = 0;
      while (pos < input.size()) {
        const size_t n = std::min<size_t>(input.size() - pos, 1 + rng() % mode.max_piece);
        if (prepare_commit) {
          // Like a read(2) into the buffer: ask for room, get fewer bytes.
          const size_t asked = n + rng() % 100;
          MutableByteView dst = stream.Prepare(asked);
          ASSERT_EQ(dst.size(), asked);
          std::memcpy(dst.data(), input.data() + pos, n);
          stream.Commit(n);
        } else {
          stream.Write(ByteView(input).subspan(pos, n));
        }
        pos += n;
        // At most max_size bytes may wait for a cut: the rest is emitted.
        ASSERT_LE(pos - c.emitted, SmallParams().max_size) << "at " << pos;
      }
      stream.Finish();
      EXPECT_EQ(c.Joined(), input);
      EXPECT_EQ(c.Lengths(), want);
    }
  }
}

TEST_F(ChunkStreamTest, EmptyCommitsAreHarmless) {
  const Bytes input = SeededBytes(4, 20000);
  Collector c;
  ChunkStream stream(chunker_, c.Emit());
  for (size_t pos = 0; pos < input.size(); pos += 1000) {
    stream.Prepare(4096);
    stream.Commit(0);
    MutableByteView dst = stream.Prepare(1000);
    std::memcpy(dst.data(), input.data() + pos, 1000);
    stream.Commit(1000);
    stream.Write({});
  }
  stream.Finish();
  EXPECT_EQ(c.Joined(), input);
  EXPECT_EQ(c.Lengths(), ReferenceCuts(chunker_, input));
}

TEST_F(ChunkStreamTest, FinishOnEmptyInputEmitsNothing) {
  Collector c;
  ChunkStream stream(chunker_, c.Emit());
  stream.Finish();
  EXPECT_TRUE(c.chunks.empty());
  stream.Prepare(100);
  stream.Commit(0);
  stream.Finish();
  EXPECT_TRUE(c.chunks.empty());
  EXPECT_EQ(stream.total_bytes(), 0u);
}

TEST_F(ChunkStreamTest, ShortInputIsEmittedByFinish) {
  for (size_t size : {size_t{1}, size_t{100}, size_t{255}, size_t{4095}}) {
    SCOPED_TRACE(size);
    const Bytes input = SeededBytes(size, size);
    Collector c;
    ChunkStream stream(chunker_, c.Emit());
    stream.Write(input);
    if (size < SmallParams().min_size) {
      EXPECT_TRUE(c.chunks.empty()) << "nothing is cut before min_size";
    }
    stream.Finish();
    if (size < SmallParams().min_size) {
      EXPECT_EQ(c.chunks.size(), 1u);
    }
    EXPECT_EQ(c.Joined(), input);
    EXPECT_EQ(c.Lengths(), ReferenceCuts(chunker_, input));
  }
}

TEST_F(ChunkStreamTest, StreamIsReusableAfterFinish) {
  const Bytes first = MixedInput(5, 50000);
  const Bytes second = MixedInput(6, 70000);
  Collector c;
  ChunkStream stream(chunker_, c.Emit());
  stream.Write(first);
  stream.Finish();
  const size_t first_chunks = c.chunks.size();
  EXPECT_EQ(stream.total_bytes(), 0u) << "Finish resets the count";
  stream.Write(second);
  EXPECT_EQ(stream.total_bytes(), second.size());
  stream.Finish();

  Collector fresh;
  ChunkStream other(chunker_, fresh.Emit());
  other.Write(second);
  other.Finish();
  const std::vector<size_t> all = c.Lengths();
  EXPECT_EQ(std::vector<size_t>(all.begin() + static_cast<std::ptrdiff_t>(first_chunks), all.end()),
            fresh.Lengths())
      << "no bytes of the first input leak into the second";
  EXPECT_EQ(
      std::vector<size_t>(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(first_chunks)),
      ReferenceCuts(chunker_, first));
}

TEST_F(ChunkStreamTest, LargeWritesAreSplitWithoutChangingCuts) {
  // Write() copies in 1 MiB steps; an input over several steps, with the
  // default (64 KiB average) chunker.
  const Chunker big(ChunkerParams{}, DefaultGearTable());
  const Bytes input = MixedInput(7, (3 << 20) + 12345);
  Collector c;
  ChunkStream stream(big, c.Emit());
  stream.Write(input);
  stream.Finish();
  EXPECT_EQ(c.Joined(), input);
  EXPECT_EQ(c.Lengths(), ReferenceCuts(big, input));
}

}  // namespace
}  // namespace ferry::snapshot
