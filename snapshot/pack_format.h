// Constants of the pack file format. Spec: docs/format/pack.md.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::snapshot::pack_format {

inline constexpr uint8_t kMagic[4] = {'F', 'P', 'A', 'K'};
inline constexpr uint8_t kEndMagic[4] = {'F', 'P', 'K', 'E'};
inline constexpr uint8_t kVersion = 1;

inline constexpr size_t kHeaderSize = 8;         // magic, version, 3 reserved
inline constexpr size_t kEntryFrameSize = 36;    // chunk id + u32 sealed length
inline constexpr size_t kIndexKeySize = 16 + 96; // key id + wrapped data key
inline constexpr size_t kIndexEntrySize = 44;    // chunk id + u64 offset + u32 length
inline constexpr size_t kFooterSize = 56;
// The checksum covers every byte before it: file_size - kChecksumTail.
inline constexpr size_t kChecksumTail = 40;      // checksum (32) + end magic (4) + version + 3 reserved

// Decoder bounds.
inline constexpr uint64_t kMaxPackSize = 1ull << 30;
inline constexpr uint32_t kMaxKeysPerPack = 4096;

}  // namespace ferry::snapshot::pack_format
