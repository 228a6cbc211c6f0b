// Constants of the sealed chunk format. Spec: docs/format/sealed-chunk.md.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::snapshot::sealed_chunk_format {

inline constexpr uint8_t kVersion = 1;
inline constexpr uint8_t kFlagLz4 = 0x01;
// The payload is a delta (snapshot/delta.h) and the base ids follow the header.
inline constexpr uint8_t kFlagDelta = 0x02;
inline constexpr uint8_t kKnownFlags = kFlagLz4 | kFlagDelta;

inline constexpr size_t kOffVersion = 0;
inline constexpr size_t kOffSuite = 1;
inline constexpr size_t kOffFlags = 2;
inline constexpr size_t kOffReserved = 3;
inline constexpr size_t kOffKeyId = 4;
inline constexpr size_t kOffPlainLen = 20;
inline constexpr size_t kOffNonce = 24;
inline constexpr size_t kHeaderSize = 36;
inline constexpr size_t kTagSize = 16;
inline constexpr size_t kOverhead = kHeaderSize + kTagSize;
// A delta chunk's extension, between the header and the ciphertext: u8
// count (1..kMaxDeltaBases), count x 32-byte base ids, then the 32-byte id
// of the content the delta rebuilds.
inline constexpr size_t kMaxDeltaBases = 16;
inline constexpr size_t BaseListSize(size_t bases) { return 1 + 32 * bases + 32; }

}  // namespace ferry::snapshot::sealed_chunk_format
