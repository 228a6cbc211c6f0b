// Ferry's full chunk path per core: chunk id (HMAC-SHA-256) + SealChunk (LZ4
// where it shrinks, then AEAD), and the reverse OpenChunk (AEAD open, LZ4,
// id check). Compare with crypto_bench.cc and lz4_bench.cc for the parts.
// Run: build/bin/ferry_micro_bench --benchmark_filter=Chunk
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <random>

#include "core/bytes.h"
#include "core/evp.h"
#include "snapshot/sealed_chunk.h"

namespace ferry::snapshot {
namespace {

Bytes RandomData(size_t size) {
  std::mt19937_64 rng(47);
  Bytes out(size);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

// Runs of random bytes (60%) between runs of one repeated byte (40%).
Bytes CompressibleData(size_t size) {
  std::mt19937_64 rng(48);
  Bytes out;
  out.reserve(size);
  while (out.size() < size) {
    const size_t run = 64 + rng() % 512;
    const size_t random_part = run * 6 / 10;
    for (size_t i = 0; i < run && out.size() < size; ++i) {
      out.push_back(static_cast<uint8_t>(i < random_part ? rng() : run));
    }
  }
  return out;
}

constexpr std::array<uint8_t, 32> kChunkIdKey = {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                                                 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};

DataKey MakeDataKey() {
  DataKey key;
  key.id.fill(1);
  key.key = SecretBytes(32);
  for (size_t i = 0; i < 32; ++i) key.key.data()[i] = static_cast<uint8_t>(i);
  return key;
}

// Args: {buffer size, compressible (0/1), AEAD suite (1 = AES-256-GCM, 2 = ChaCha20-Poly1305),
// compress (0/1)}.
void BM_FerrySealChunkFullPath(benchmark::State& state) {
  const auto size = static_cast<size_t>(state.range(0));
  const Bytes data = state.range(1) != 0 ? CompressibleData(size) : RandomData(size);
  const evp::HmacSha256 id_hasher(kChunkIdKey);
  const DataKey key = MakeDataKey();
  SealOptions options;
  options.suite = static_cast<evp::AeadSuite>(state.range(2));
  options.compress = state.range(3) != 0;
  Bytes out;
  for (auto _ : state) {
    out.clear();
    const ChunkId id = id_hasher.Compute(data);
    if (!SealChunk(id, data, key, out, options).ok()) {
      state.SkipWithError("SealChunk failed");
      break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
  state.counters["sealed/plain"] = static_cast<double>(out.size()) / static_cast<double>(size);
}
BENCHMARK(BM_FerrySealChunkFullPath)
    ->ArgsProduct({{64 << 10, 1 << 20}, {0, 1}, {1}, {1}})
    ->Args({64 << 10, 0, 1, 0})
    ->Args({64 << 10, 1, 2, 1});

// Args: {buffer size, compressible (0/1)}; default suite, compression on.
void BM_FerryOpenChunkFullPath(benchmark::State& state) {
  const auto size = static_cast<size_t>(state.range(0));
  const Bytes data = state.range(1) != 0 ? CompressibleData(size) : RandomData(size);
  const evp::HmacSha256 id_hasher(kChunkIdKey);
  const DataKey key = MakeDataKey();
  const ChunkId id = id_hasher.Compute(data);
  Bytes sealed;
  if (!SealChunk(id, data, key, sealed).ok()) {
    state.SkipWithError("SealChunk failed");
    return;
  }
  Bytes plain;
  for (auto _ : state) {
    if (!OpenChunk(id, sealed, key.key, id_hasher, plain).ok()) {
      state.SkipWithError("OpenChunk failed");
      break;
    }
    benchmark::DoNotOptimize(plain.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}
BENCHMARK(BM_FerryOpenChunkFullPath)->ArgsProduct({{64 << 10, 1 << 20}, {0, 1}});

}  // namespace
}  // namespace ferry::snapshot
