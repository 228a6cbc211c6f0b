// LZ4 speed per core on random (incompressible) and about 40%-compressible
// data. Bytes/s count uncompressed bytes for both directions.
// Run: build/bin/ferry_micro_bench --benchmark_filter=Lz4
#include <benchmark/benchmark.h>
#include <lz4.h>

#include <cstdint>
#include <random>

#include "core/bytes.h"

namespace ferry {
namespace {

Bytes RandomData(size_t size) {
  std::mt19937_64 rng(45);
  Bytes out(size);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

// Runs of random bytes (60%) between runs of one repeated byte (40%).
Bytes CompressibleData(size_t size) {
  std::mt19937_64 rng(46);
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

Bytes MakeData(const benchmark::State& state) {
  const auto size = static_cast<size_t>(state.range(0));
  return state.range(1) != 0 ? CompressibleData(size) : RandomData(size);
}

void BM_Lz4CompressDefault(benchmark::State& state) {
  const Bytes data = MakeData(state);
  Bytes out(static_cast<size_t>(LZ4_compressBound(static_cast<int>(data.size()))));
  int n = 0;
  for (auto _ : state) {
    n = LZ4_compress_default(reinterpret_cast<const char*>(data.data()),
                             reinterpret_cast<char*>(out.data()), static_cast<int>(data.size()),
                             static_cast<int>(out.size()));
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
  state.counters["ratio"] = static_cast<double>(n) / static_cast<double>(data.size());
}

void BM_Lz4DecompressSafe(benchmark::State& state) {
  const Bytes data = MakeData(state);
  Bytes compressed(static_cast<size_t>(LZ4_compressBound(static_cast<int>(data.size()))));
  const int n = LZ4_compress_default(
      reinterpret_cast<const char*>(data.data()), reinterpret_cast<char*>(compressed.data()),
      static_cast<int>(data.size()), static_cast<int>(compressed.size()));
  Bytes out(data.size());
  for (auto _ : state) {
    const int m =
        LZ4_decompress_safe(reinterpret_cast<const char*>(compressed.data()),
                            reinterpret_cast<char*>(out.data()), n, static_cast<int>(out.size()));
    if (m != static_cast<int>(data.size())) {
      state.SkipWithError("LZ4_decompress_safe failed");
      break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}

// Args: {buffer size, compressible (0 = random, 1 = about 40% compressible)}.
BENCHMARK(BM_Lz4CompressDefault)->ArgsProduct({{64 << 10, 1 << 20}, {0, 1}});
BENCHMARK(BM_Lz4DecompressSafe)->ArgsProduct({{64 << 10, 1 << 20}, {0, 1}});

}  // namespace
}  // namespace ferry
