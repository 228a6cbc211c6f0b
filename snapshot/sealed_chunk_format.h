// Constants of the sealed chunk format. Spec: docs/format/sealed-chunk.md.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::snapshot::sealed_chunk_format {

inline constexpr uint8_t kVersion = 1;
inline constexpr uint8_t kFlagLz4 = 0x01;
inline constexpr uint8_t kKnownFlags = kFlagLz4;

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

}  // namespace ferry::snapshot::sealed_chunk_format
