// Constants of the pack file format. Spec: docs/format/pack.md.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::snapshot::pack_format {

inline constexpr uint8_t kMagic[4] = {'F', 'P', 'A', 'K'};
inline constexpr uint8_t kEndMagic[4] = {'F', 'P', 'K', 'E'};
inline constexpr uint8_t kVersion = 1;

inline constexpr size_t kHeaderSize = 8;          // magic, version, 3 reserved
inline constexpr size_t kEntryFrameSize = 36;     // chunk id + u32 sealed length
inline constexpr size_t kIndexKeySize = 16 + 96;  // key id + wrapped data key
inline constexpr size_t kIndexEntrySize = 76;     // chunk id + u64 offset + u32 length + SHA-256
// Footer: u64 index offset, u32 index length, u32 reserved, SHA-256 checksum
// of (header || index || the footer's first 16 bytes), end magic, version, 3 reserved.
inline constexpr size_t kFooterSize = 56;

// Decoder bounds.
inline constexpr uint64_t kMaxPackSize = 1ull << 30;
inline constexpr uint32_t kMaxKeysPerPack = 4096;

}  // namespace ferry::snapshot::pack_format
