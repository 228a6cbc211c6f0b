// How stream_log_fuzz reads its input, shared with its seed generator
// (stream_log_seed_gen.cc). Header-only; described in tests/fuzz/README.md.
//
//   byte 0   config: bit 0 = the last file is the start file (not a
//            segment); bit 1 = StreamLogOptions::repair_damaged_last_segment;
//            bit 2 = a small index interval (64 bytes) instead of the default.
//   files:   length-prefixed pieces (AppendFrame and ParseFrames in
//            fuzz_formats.h), at most kMaxStreamFiles. A segment is named
//            after the first offset in its header (bytes 8..16,
//            little-endian; the file's index when it is shorter), so a real
//            segment keeps its real name; a later file with the same name
//            replaces an earlier one.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/bytes.h"
#include "tests/fuzz/fuzz_formats.h"

namespace ferry::fuzz {

inline constexpr uint8_t kStreamStartFile = 0x01;
inline constexpr uint8_t kStreamRepair = 0x02;
inline constexpr uint8_t kStreamSmallIndex = 0x04;
inline constexpr size_t kMaxStreamFiles = 6;

// The first offset a segment file is named after (see above).
inline uint64_t StreamSegmentNameOffset(ByteView file, size_t index) {
  return file.size() >= 16 ? LoadU64(file.data() + 8) : index;
}

}  // namespace ferry::fuzz
