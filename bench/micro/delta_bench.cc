// Delta chunks (ferry::snapshot::delta) per core: signatures and encoding of
// a 64 KiB chunk, beside one HMAC-SHA-256 over the same 64 KiB (the floor a
// signature, which keys a hash of every block, cannot beat).
// Run: build/bin/ferry_micro_bench --benchmark_filter=Delta
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <optional>
#include <random>

#include "core/bytes.h"
#include "core/evp.h"
#include "snapshot/delta.h"

namespace ferry::snapshot::delta {
namespace {

constexpr size_t kChunk = 64 << 10;

Bytes RandomData(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Bytes out(size);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

constexpr std::array<uint8_t, 32> kKey = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                          12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                          23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

const evp::HmacSha256& IdHasher() {
  static const evp::HmacSha256 hasher(kKey);
  return hasher;
}

void SetBytes(benchmark::State& state, size_t size) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}

// The reference: Ferry's chunk id over the whole chunk.
void BM_DeltaRawHmacSha256(benchmark::State& state) {
  const Bytes data = RandomData(static_cast<size_t>(state.range(0)), 1);
  for (auto _ : state) benchmark::DoNotOptimize(IdHasher().Compute(data));
  SetBytes(state, data.size());
}
BENCHMARK(BM_DeltaRawHmacSha256)->Arg(kBlockSize)->Arg(kChunk);

// BlockHasher::Strong, one block at a time (a context per call).
void BM_DeltaBlockHasherStrong(benchmark::State& state) {
  const BlockHasher hasher(IdHasher());
  const Bytes data = RandomData(kBlockSize, 2);
  for (auto _ : state) benchmark::DoNotOptimize(hasher.Strong(data));
  SetBytes(state, data.size());
}
BENCHMARK(BM_DeltaBlockHasherStrong);

// The weak checksum alone, block by block over 64 KiB.
void BM_DeltaWeakChecksum(benchmark::State& state) {
  const Bytes data = RandomData(kChunk, 9);
  for (auto _ : state) {
    uint32_t x = 0;
    for (size_t i = 0; i < data.size(); i += kBlockSize) {
      x ^= WeakChecksum(ByteView(data).subspan(i, kBlockSize));
    }
    benchmark::DoNotOptimize(x);
  }
  SetBytes(state, data.size());
}
BENCHMARK(BM_DeltaWeakChecksum);

void BM_DeltaComputeSignature(benchmark::State& state) {
  const BlockHasher hasher(IdHasher());
  const Bytes data = RandomData(static_cast<size_t>(state.range(0)), 3);
  for (auto _ : state) benchmark::DoNotOptimize(ComputeSignature(hasher, data));
  SetBytes(state, data.size());
}
BENCHMARK(BM_DeltaComputeSignature)->Arg(kChunk)->Arg(1 << 20);

// Encodes `plain` against the signature of `base`; bytes are the plaintext's.
void EncodeAgainst(benchmark::State& state, const Bytes& base, const Bytes& plain) {
  const BlockHasher hasher(IdHasher());
  BaseIndex index;
  if (!index.Add(IdHasher().Compute(base), ComputeSignature(hasher, base)).ok()) {
    state.SkipWithError("BaseIndex::Add failed");
    return;
  }
  size_t payload = 0;
  for (auto _ : state) {
    std::optional<Encoded> e = Encode(hasher, index, plain, plain.size());
    payload = e ? e->payload.size() : 0;
    benchmark::DoNotOptimize(e);
  }
  SetBytes(state, plain.size());
  state.counters["payload_bytes"] = static_cast<double>(payload);
}

// The common case: a few small edits (three 1-byte overwrites, one 100-byte insert).
void BM_DeltaEncodeFewEdits(benchmark::State& state) {
  const Bytes base = RandomData(kChunk, 4);
  Bytes plain = base;
  plain[5000] ^= 1;
  plain[33000] ^= 1;
  plain[60000] ^= 1;
  const Bytes insert = RandomData(100, 5);
  plain.insert(plain.begin() + 20000, insert.begin(), insert.end());
  EncodeAgainst(state, base, plain);
}
BENCHMARK(BM_DeltaEncodeFewEdits);

void BM_DeltaEncodeUnchanged(benchmark::State& state) {
  const Bytes base = RandomData(kChunk, 6);
  EncodeAgainst(state, base, base);
}
BENCHMARK(BM_DeltaEncodeUnchanged);

// The worst case: nothing matches, the checksum rolls over every byte.
void BM_DeltaEncodeUnrelated(benchmark::State& state) {
  EncodeAgainst(state, RandomData(kChunk, 7), RandomData(kChunk, 8));
}
BENCHMARK(BM_DeltaEncodeUnrelated);

// A restore's side: Parse + Apply of the few-edits payload.
void BM_DeltaParseApply(benchmark::State& state) {
  const BlockHasher hasher(IdHasher());
  const Bytes base = RandomData(kChunk, 4);
  Bytes plain = base;
  plain[5000] ^= 1;
  plain[33000] ^= 1;
  BaseIndex index;
  if (!index.Add(IdHasher().Compute(base), ComputeSignature(hasher, base)).ok()) {
    state.SkipWithError("BaseIndex::Add failed");
    return;
  }
  const std::optional<Encoded> e = Encode(hasher, index, plain, plain.size());
  if (!e) {
    state.SkipWithError("Encode found nothing");
    return;
  }
  const ByteView bases[] = {base};
  Bytes out;
  for (auto _ : state) {
    Result<ParsedDelta> d = Parse(e->payload);
    if (!d.ok() || !Apply(*d, bases, out).ok()) {
      state.SkipWithError("Parse/Apply failed");
      break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  SetBytes(state, plain.size());
}
BENCHMARK(BM_DeltaParseApply);

}  // namespace
}  // namespace ferry::snapshot::delta
