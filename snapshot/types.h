// Identifiers shared by every snapshot format.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/bytes.h"
#include "core/status.h"

namespace ferry::snapshot {

// HMAC-SHA-256(chunk-id key, plaintext): names a chunk within a tenant.
using ChunkId = std::array<uint8_t, 32>;
// Names a data key (random, 16 bytes).
using KeyId = std::array<uint8_t, 16>;
// BLAKE2b-256 of a manifest: names a snapshot.
using SnapshotId = std::array<uint8_t, 32>;

// Hard limit on a chunk's plaintext, whatever the chunker settings: every
// decoder checks it before allocating.
inline constexpr uint32_t kMaxChunkSize = 16u << 20;

template <size_t N>
Result<std::array<uint8_t, N>> ArrayFromBytes(ByteView b, const char* what) {
  if (b.size() != N) {
    return DataLossError(std::string(what) + " must be " + std::to_string(N) + " bytes, got " +
                         std::to_string(b.size()));
  }
  std::array<uint8_t, N> out;
  std::copy(b.begin(), b.end(), out.begin());
  return out;
}

// A delta chunk's bases (docs/format/delta.md), each with its sealed size.
using BaseList = std::vector<std::pair<ChunkId, uint32_t>>;

struct ArrayHash {
  template <size_t N>
  size_t operator()(const std::array<uint8_t, N>& a) const {
    static_assert(N >= 8);
    return static_cast<size_t>(LoadU64(a.data()));  // ids are uniformly distributed
  }
};

}  // namespace ferry::snapshot
