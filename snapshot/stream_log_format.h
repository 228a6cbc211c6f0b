// Constants of the stream log's on-disk format (segment files and the start
// file) and its checksum. Spec: docs/format/stream-segment.md.
//
// Shared by the writer and the reader in stream_log.cc, the tests and the
// fuzz target. CRC32C comes from ISA-L (libisal, Debian's libisal-dev).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/bytes.h"

namespace ferry::snapshot::stream_format {

// Segment header (32 bytes): magic, version, 3 reserved, u64 first offset,
// i64 created (Unix ns), u32 reserved, u32 CRC32C of bytes [0, 28).
inline constexpr uint8_t kSegmentMagic[4] = {'F', 'S', 'E', 'G'};
inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kHeaderSize = 32;
inline constexpr size_t kHeaderCrcOffset = 28;

// Record frame: u32 payload length, u32 CRC32C of (u64 offset || u32 length
// || payload), then the payload. The offset is not stored: it is the
// segment's first offset plus the record's index in the segment.
inline constexpr size_t kFrameSize = 8;

// Start file (24 bytes): magic, version, 3 reserved, u64 first retained
// offset, u32 reserved, u32 CRC32C of bytes [0, 20).
inline constexpr uint8_t kStartMagic[4] = {'F', 'S', 'T', 'A'};
inline constexpr size_t kStartFileSize = 24;
inline constexpr size_t kStartCrcOffset = 20;

// Decoder bounds. A record's payload is at most kMaxRecordBytes whatever the
// configured limit; a segment is rolled at a configured size of at most
// kMaxSegmentBytes and can exceed it by one record only.
inline constexpr uint32_t kMaxRecordBytes = 16u << 20;
inline constexpr uint64_t kMinSegmentBytes = 64;
inline constexpr uint64_t kMaxSegmentBytes = uint64_t{1} << 30;
inline constexpr uint64_t kMaxSegmentFileBytes = kMaxSegmentBytes + kFrameSize + kMaxRecordBytes;

// File names in a stream log directory.
inline constexpr size_t kSegmentNameDigits = 20;  // first offset, decimal, zero-padded
inline constexpr char kSegmentSuffix[] = ".seg";
inline constexpr char kTempSuffix[] = ".tmp";  // a segment being rewritten by Open
inline constexpr char kStartFileName[] = "start";
inline constexpr char kLockFileName[] = "lock";

// CRC32C (Castagnoli polynomial 0x1EDC6F41, reflected, initial value and
// final XOR 0xFFFFFFFF: the iSCSI / RFC 3720 checksum). Crc32c("123456789")
// is 0xE3069283. Crc32cExtend(Crc32c(a), b) == Crc32c(a || b).
uint32_t Crc32c(ByteView data);
uint32_t Crc32cExtend(uint32_t crc, ByteView data);

// The checksum stored in a record's frame.
uint32_t RecordCrc(uint64_t offset, ByteView payload);

// "00000000000000001234.seg" for first offset 1234.
std::string SegmentFileName(uint64_t first_offset);

}  // namespace ferry::snapshot::stream_format
