// Content-defined chunking speed (ferry::snapshot::Chunker) beside raw memory
// read and copy speed, per core. Run: build/bin/ferry_micro_bench --benchmark_filter=Chunker
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>

#include "core/bytes.h"
#include "snapshot/chunker.h"

namespace ferry::snapshot {
namespace {

Bytes RandomData(size_t size) {
  std::mt19937_64 rng(42);
  Bytes out(size);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

// About 40% compressible: runs of random bytes (60%) between runs of one repeated byte (40%).
Bytes CompressibleData(size_t size) {
  std::mt19937_64 rng(43);
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

// Cuts a whole buffer into chunks with the default parameters, as the agent does for a file.
void ChunkWholeBuffer(benchmark::State& state, const Bytes& data) {
  const Chunker chunker(ChunkerParams{}, DefaultGearTable());
  size_t chunks = 0;
  for (auto _ : state) {
    ByteView rest(data);
    chunks = 0;
    while (!rest.empty()) {
      const size_t n = chunker.FindBoundary(rest, /*at_eof=*/true);
      rest = rest.subspan(n);
      ++chunks;
    }
    benchmark::DoNotOptimize(chunks);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
  state.counters["chunks"] = static_cast<double>(chunks);
}

void BM_ChunkerFindBoundary_Random(benchmark::State& state) {
  ChunkWholeBuffer(state, RandomData(static_cast<size_t>(state.range(0))));
}
BENCHMARK(BM_ChunkerFindBoundary_Random)->Arg(64 << 10)->Arg(1 << 20)->Arg(16 << 20);

void BM_ChunkerFindBoundary_Compressible(benchmark::State& state) {
  ChunkWholeBuffer(state, CompressibleData(static_cast<size_t>(state.range(0))));
}
BENCHMARK(BM_ChunkerFindBoundary_Compressible)->Arg(64 << 10)->Arg(1 << 20);

// Reference: reading every byte once (a 64-bit XOR over the buffer, which the
// compiler vectorizes), the least any pass over the data costs.
void BM_RawMemoryReadXor(benchmark::State& state) {
  const Bytes data = RandomData(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    uint64_t acc = 0;
    for (size_t i = 0; i + 8 <= data.size(); i += 8) {
      uint64_t w;
      std::memcpy(&w, data.data() + i, 8);
      acc ^= w;
    }
    benchmark::DoNotOptimize(acc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}
BENCHMARK(BM_RawMemoryReadXor)->Arg(64 << 10)->Arg(1 << 20)->Arg(16 << 20);

void BM_RawMemcpy(benchmark::State& state) {
  const Bytes data = RandomData(static_cast<size_t>(state.range(0)));
  Bytes copy(data.size());
  for (auto _ : state) {
    std::memcpy(copy.data(), data.data(), data.size());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}
BENCHMARK(BM_RawMemcpy)->Arg(64 << 10)->Arg(1 << 20)->Arg(16 << 20);

}  // namespace
}  // namespace ferry::snapshot
