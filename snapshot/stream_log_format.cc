#include "snapshot/stream_log_format.h"

#include <isa-l/crc.h>

#include <algorithm>
#include <climits>
#include <cstdio>

namespace ferry::snapshot::stream_format {

uint32_t Crc32cExtend(uint32_t crc, ByteView data) {
  // ISA-L's crc32_iscsi carries the raw register (no pre- or post-inversion)
  // and takes an int length: invert around it and feed at most 1 GiB a call.
  uint32_t state = ~crc;
  const uint8_t* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    const size_t n = std::min<size_t>(left, size_t{1} << 30);
    state = crc32_iscsi(const_cast<unsigned char*>(p), static_cast<int>(n), state);
    p += n;
    left -= n;
  }
  return ~state;
}

uint32_t Crc32c(ByteView data) { return Crc32cExtend(0, data); }

uint32_t RecordCrc(uint64_t offset, ByteView payload) {
  uint8_t covered[12];
  StoreU64(covered, offset);
  StoreU32(covered + 8, static_cast<uint32_t>(payload.size()));
  return Crc32cExtend(Crc32c(ByteView(covered, sizeof(covered))), payload);
}

std::string SegmentFileName(uint64_t first_offset) {
  char name[kSegmentNameDigits + sizeof(kSegmentSuffix)];
  std::snprintf(name, sizeof(name), "%020llu%s", static_cast<unsigned long long>(first_offset),
                kSegmentSuffix);
  return name;
}

}  // namespace ferry::snapshot::stream_format
