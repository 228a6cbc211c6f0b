#include "snapshot/chunker.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/sodium.h"

namespace ferry::snapshot {
namespace {

// The gear hash shifts left by one bit per byte, so after 64 bytes a byte has
// left the 64-bit state: h(n) depends on data[n-64, n) only.
constexpr size_t kWindow = 64;
static_assert(kChunkerMinMinSize == kWindow);

// docs/format/chunking.md, "Gear table".
constexpr char kGearLabel[] = "ferry/chunker/v1/gear";
constexpr char kDefaultGearSeed[] = "Ferry chunker v1 public gear key";
static_assert(sizeof(kDefaultGearSeed) - 1 == 32);

[[noreturn]] void Fatal(const std::string& what) {
  std::fprintf(stderr, "fatal: chunker: %s\n", what.c_str());
  std::abort();
}

GearTable DeriveGearTable(ByteView key) {
  GearTable table;
  Bytes message(AsBytes(kGearLabel).begin(), AsBytes(kGearLabel).end());
  message.push_back(0);
  for (size_t block = 0; block < table.size() / 4; ++block) {
    message.back() = static_cast<uint8_t>(block);
    const sodium::Hash256 digest = sodium::Blake2b256(message, key);
    for (size_t i = 0; i < 4; ++i) table[4 * block + i] = LoadU64(digest.data() + 8 * i);
  }
  return table;
}

// A cut where the top `bits` bits of the hash are zero, i.e. where
// (h & mask) == 0 with mask = ~0 << (64 - bits), i.e. where h < 2^(64 - bits).
// The top bits are used because bit k of h mixes the last k + 1 bytes: the
// top bits see the whole 64-byte window.
uint64_t ThresholdForMaskBits(unsigned bits) { return uint64_t{1} << (64 - bits); }

// Absorbs data[n-1] for each candidate n in [begin, end) and returns the first
// n whose hash is below `threshold`, or `end`. On entry `h` has absorbed
// data[.., begin-1); when no cut is found it has absorbed data[.., end-1).
// Unrolled by 8: the loop-carried dependency is one shift-add per byte, and
// the loop counter and the bounds check are paid once per 8 bytes.
inline size_t Scan(const uint8_t* data, const uint64_t* gear, uint64_t& h, size_t begin, size_t end,
                   uint64_t threshold) {
  size_t n = begin;
  const uint8_t* p = data + begin - 1;  // p[i] is the byte that completes candidate n + i
  for (; n + 8 <= end; n += 8, p += 8) {
    for (size_t i = 0; i < 8; ++i) {
      h = (h << 1) + gear[p[i]];
      if (h < threshold) [[unlikely]] {
        return n + i;
      }
    }
  }
  for (; n < end; ++n, ++p) {
    h = (h << 1) + gear[*p];
    if (h < threshold) [[unlikely]] {
      return n;
    }
  }
  return end;
}

}  // namespace

Status ChunkerParams::Validate() const {
  if (min_size < kChunkerMinMinSize) {
    return InvalidArgumentError("ChunkerParams.min_size must be at least " +
                                std::to_string(kChunkerMinMinSize) + " bytes, got " +
                                std::to_string(min_size));
  }
  if (!std::has_single_bit(avg_size)) {
    return InvalidArgumentError("ChunkerParams.avg_size must be a power of two, got " +
                                std::to_string(avg_size));
  }
  if (min_size >= avg_size) {
    return InvalidArgumentError("ChunkerParams.min_size (" + std::to_string(min_size) +
                                ") must be less than avg_size (" + std::to_string(avg_size) + ")");
  }
  if (max_size <= avg_size) {
    return InvalidArgumentError("ChunkerParams.max_size (" + std::to_string(max_size) +
                                ") must be greater than avg_size (" + std::to_string(avg_size) +
                                ")");
  }
  if (max_size > kChunkerMaxMaxSize) {
    return InvalidArgumentError("ChunkerParams.max_size must be at most " +
                                std::to_string(kChunkerMaxMaxSize) + " bytes, got " +
                                std::to_string(max_size));
  }
  return OkStatus();
}

const GearTable& DefaultGearTable() {
  static const GearTable table = DeriveGearTable(AsBytes(kDefaultGearSeed).first(32));
  return table;
}

GearTable GearTableFromKey(ByteView chunk_id_key) {
  if (chunk_id_key.size() != 32) {
    Fatal("GearTableFromKey needs a 32-byte chunk-id key, got " +
          std::to_string(chunk_id_key.size()) + " bytes");
  }
  return DeriveGearTable(chunk_id_key);
}

Chunker::Chunker(const ChunkerParams& params, const GearTable& gear)
    : params_(params), gear_(gear) {
  if (Status s = params.Validate(); !s.ok()) Fatal(s.ToString());
  const auto avg_bits = static_cast<unsigned>(std::countr_zero(params.avg_size));
  threshold_small_ = ThresholdForMaskBits(avg_bits + 2);
  threshold_large_ = ThresholdForMaskBits(avg_bits - 2);
}

size_t Chunker::FindBoundary(ByteView data, bool at_eof) const {
  const size_t size = data.size();
  const size_t min_size = params_.min_size;
  const size_t avg_size = params_.avg_size;
  const size_t max_size = params_.max_size;
  if (size < min_size) return at_eof ? size : 0;

  // Candidate cuts n run from min_size to `last`; deciding n needs data[n-64, n).
  // n = max_size is a cut whatever its hash, so its byte is never hashed.
  const size_t last = std::min(size, max_size);
  const uint8_t* p = data.data();
  const uint64_t* gear = gear_.data();

  // Cut-point skipping: nothing before min_size - 64 can influence a cut.
  uint64_t h = 0;
  for (size_t i = min_size - kWindow; i < min_size - 1; ++i) h = (h << 1) + gear[p[i]];

  // Normalized chunking: a harder condition before avg_size, an easier one after.
  const size_t small_end = std::min(avg_size, last + 1);
  size_t n = Scan(p, gear, h, min_size, small_end, threshold_small_);
  if (n < small_end) return n;
  if (small_end == avg_size) {
    const size_t large_end = std::min(max_size, last + 1);
    n = Scan(p, gear, h, avg_size, large_end, threshold_large_);
    if (n < large_end) return n;
  }
  if (size >= max_size) return max_size;
  return at_eof ? size : 0;
}

}  // namespace ferry::snapshot
