// Content-defined chunking: FastCDC (Xia et al., USENIX ATC 2016) with a
// 64-bit gear rolling hash, cut-point skipping and normalized chunking
// (level 2). Cut points depend only on the bytes themselves, so an insert or
// a delete moves only the boundaries next to it and the rest of a file still
// deduplicates.
//
// The exact cut-point rule, the gear table derivation and worked examples
// are specified in docs/format/chunking.md. Changing any of it changes the
// boundaries of every chunk, and so breaks dedup against older snapshots: it
// is versioned with the keyset format.
//
// Thread-safety: ChunkerParams and GearTable are values. A Chunker is
// immutable after construction; FindBoundary is const and thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "core/bytes.h"
#include "core/status.h"

namespace ferry::snapshot {

// Chunk size bounds, in bytes.
struct ChunkerParams {
  // No content-defined cut before this many bytes (16 KiB). Bytes before
  // min_size - 64 are not even hashed (cut-point skipping).
  uint32_t min_size = 16 * 1024;
  // Target (normalization point) size (64 KiB). Must be a power of two. The
  // mean chunk on random data comes out about 1.14 x avg_size when
  // min_size = avg_size / 4 and max_size = 4 x avg_size.
  uint32_t avg_size = 64 * 1024;
  // A chunk is cut here when no content-defined cut was found (256 KiB).
  uint32_t max_size = 256 * 1024;

  // kInvalidArgument with a message naming the field unless
  // 64 <= min_size < avg_size < max_size <= 16 MiB and avg_size is a power of two.
  Status Validate() const;
};

inline constexpr uint32_t kChunkerMinMinSize = 64;         // the gear hash window
inline constexpr uint32_t kChunkerMaxMaxSize = 16u << 20;  // == kMaxChunkSize

using GearTable = std::array<uint64_t, 256>;

// The table derived from the fixed public seed documented in
// docs/format/chunking.md (tests, tools, benchmarks). Computed once.
const GearTable& DefaultGearTable();

// Keyed table, so that chunk boundaries (visible to the hub as chunk sizes)
// do not reveal content to someone without the key. Derived from the
// tenant's chunk-id key with keyed BLAKE2b: every agent of a tenant derives
// the same table, so dedup across devices still works.
// Precondition: chunk_id_key is 32 bytes (keyset loading checks it); any
// other length is a fatal invariant violation (the process aborts).
GearTable GearTableFromKey(ByteView chunk_id_key);

class Chunker {
 public:
  // `params` must already be valid (Validate().ok()); otherwise the process
  // aborts. The gear table is copied.
  Chunker(const ChunkerParams& params, const GearTable& gear);

  // `data` starts at the beginning of a chunk. Returns the length of that chunk:
  //  - a cut point n with min_size <= n <= max_size when one is found in data, or
  //    max_size when data.size() >= max_size and no content-defined cut was found before it;
  //  - data.size() when at_eof and data.size() <= max_size without a cut (the last,
  //    possibly short, chunk);
  //  - 0 when !at_eof and data.size() < max_size and no cut was found yet: the caller must
  //    supply more data (0 also when at_eof and data is empty).
  // Deterministic: the same bytes give the same cuts regardless of how the caller
  // buffers them (a cut at n depends only on data[n-64, n) and on n).
  // Reads at most max_size bytes of `data`.
  size_t FindBoundary(ByteView data, bool at_eof) const;

  const ChunkerParams& params() const { return params_; }

 private:
  ChunkerParams params_;
  // A position n is a cut when its hash is below the threshold, i.e. when the
  // top bits selected by the mask are all zero (see docs/format/chunking.md).
  uint64_t threshold_small_;  // before avg_size: log2(avg) + 2 mask bits
  uint64_t threshold_large_;  // from avg_size on: log2(avg) - 2 mask bits
  GearTable gear_;
};

}  // namespace ferry::snapshot
