// How the fuzz targets read their input, shared with the seed generators
// (fuzz_seed_gen.cc, stream_log_seed_gen.cc, format_seed_gen.cc) so that
// seeds and targets agree. Header-only; no dependencies beyond core/bytes.h. Described in
// tests/fuzz/README.md.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/bytes.h"

// A property the targets check: abort (a crash, for libFuzzer) when false.
#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

namespace ferry::fuzz {

// ---------------------------------------------------------------------------
// record_reader_fuzz
//
//   byte 0   config: bits 0-2 pick the reader's max_frame_bytes from
//            kRecordMaxFrame; bit 3 also runs every record through a keyed
//            CipherState (encrypted reader, compared with the plaintext one);
//            bit 4 selects writer mode.
//   records mode: repeated { u16 LE size n | u16 LE literal count k |
//            min(k, n) literal bytes }. The record is the literal bytes
//            followed by Filler() bytes up to n, so a few input bytes can
//            describe a full 65519-byte record.
//   writer mode: u32 LE frame size | pattern bytes. The frame is the pattern
//            repeated (Filler() if empty), at most kMaxWriterFrame bytes.

inline constexpr std::array<size_t, 8> kRecordMaxFrame = {
    0, 1, 255, 65514, 65515, 65514 + 65518, size_t{1} << 20, size_t{8} << 20};
inline constexpr uint8_t kRecordEncrypt = 0x08;
inline constexpr uint8_t kRecordWriterMode = 0x10;
inline constexpr size_t kMaxRecordsPerInput = 256;
inline constexpr size_t kMaxWriterFrame = size_t{1} << 20;

// The filler byte at offset i of a record (or of a writer-mode frame).
inline uint8_t Filler(size_t i) { return static_cast<uint8_t>(i * 167 + 13); }

// Appends Filler(from) .. Filler(to - 1) to `out` (Filler repeats every 256
// bytes; copying from a table keeps the targets' time on the code under test).
inline void AppendFiller(Bytes& out, size_t from, size_t to) {
  static const std::array<uint8_t, 512> table = [] {
    std::array<uint8_t, 512> t{};
    for (size_t i = 0; i < t.size(); ++i) t[i] = Filler(i);
    return t;
  }();
  while (from < to) {
    const size_t n = std::min<size_t>(to - from, 256);
    out.insert(out.end(), table.begin() + from % 256, table.begin() + from % 256 + n);
    from += n;
  }
}

// Appends one record to a records-mode input: its first `literal` bytes
// verbatim; the rest must equal Filler() (the generator builds such records).
inline void AppendRecord(Bytes& input, ByteView record, size_t literal) {
  literal = std::min(literal, record.size());
  PutU16(input, static_cast<uint16_t>(record.size()));
  PutU16(input, static_cast<uint16_t>(literal));
  PutBytes(input, record.first(literal));
}

// Reads the records of a records-mode input (after the config byte).
inline std::vector<Bytes> ParseRecords(ByteView in) {
  std::vector<Bytes> records;
  ByteReader r(in);
  uint16_t n = 0, k = 0;
  while (records.size() < kMaxRecordsPerInput && r.ReadU16(n) && r.ReadU16(k)) {
    ByteView literal;
    const size_t take = std::min<size_t>({k, n, r.remaining()});
    r.ReadView(take, literal);
    Bytes record;
    record.reserve(n);
    record.assign(literal.begin(), literal.end());
    AppendFiller(record, record.size(), n);
    records.push_back(std::move(record));
  }
  return records;
}

// ---------------------------------------------------------------------------
// Length-prefixed pieces (link_envelope_fuzz's frames, stream_log_fuzz's
// files): repeated { u32 LE length L | min(L, rest) bytes }. A length past
// the end takes what is left; at most `max_count` pieces are read.

inline void AppendFrame(Bytes& input, ByteView frame) {
  PutU32(input, static_cast<uint32_t>(frame.size()));
  PutBytes(input, frame);
}

inline std::vector<ByteView> ParseFrames(ByteView in, size_t max_count) {
  std::vector<ByteView> frames;
  ByteReader r(in);
  uint32_t len = 0;
  while (frames.size() < max_count && r.ReadU32(len)) {
    ByteView frame;
    r.ReadView(std::min<size_t>(len, r.remaining()), frame);
    frames.push_back(frame);
  }
  return frames;
}

// ---------------------------------------------------------------------------
// link_envelope_fuzz
//
//   byte 0   config: bit 0 set = the peer key is not enrolled; bit 1 = tight
//            receiver limits (kTight*) instead of the defaults; bit 2 = a
//            fresh, empty store for this session (else the process's shared
//            store, which keeps what earlier sessions uploaded and committed).
//   frames:  length-prefixed pieces (above), at most kMaxFramesPerInput; each
//            frame is one serialized Envelope.

inline constexpr uint8_t kEnvelopeNotEnrolled = 0x01;
inline constexpr uint8_t kEnvelopeTightLimits = 0x02;
inline constexpr uint8_t kEnvelopeFreshStore = 0x04;
inline constexpr size_t kMaxFramesPerInput = 64;
inline constexpr uint64_t kTightMaxFrameBytes = 4096;
inline constexpr uint32_t kTightMaxQueryIds = 4;
inline constexpr uint64_t kTightMaxRefsBytes = 1024;

// ---------------------------------------------------------------------------
// The snapshot format targets. Keys are fixed (FixedKey) so that the seed
// generator (format_seed_gen.cc) writes objects the targets can open,
// verify and unlock. Where a checksum, tag or signature would stop nearly
// every mutation at the door, a config bit has the target make it valid
// first (it then plays a writer that holds the key), so the fuzzer reaches
// the checks behind it.

// 32 fixed key bytes: `salt` + 0, + 1, ... (0x10 data key, 0x20 chunk-id
// key, 0x30 manifest signing seed).
inline std::array<uint8_t, 32> FixedKey(uint8_t salt) {
  std::array<uint8_t, 32> k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(salt + i);
  return k;
}
inline constexpr uint8_t kDataKeySalt = 0x10;
inline constexpr uint8_t kChunkIdKeySalt = 0x20;
inline constexpr uint8_t kSigningSeedSalt = 0x30;
inline constexpr char kKeysetPassphrase[] = "fuzz passphrase";

// sealed_chunk_fuzz
//   byte 0   mode (the byte modulo 3):
//     kSealedAsIs:    chunk id (32) | sealed chunk, opened as it is;
//     kSealedByUs:    u16 LE bit to flip | seal options (bit 0 LZ4, bit 1
//                     ChaCha20-Poly1305) | plaintext, sealed by SealChunk;
//     kSealedPayload: chunk id (32) | header (36 bytes) | payload: the target
//                     encrypts the payload under the header (the AEAD a key
//                     holder would write), so LZ4 decoding sees any bytes.
inline constexpr uint8_t kSealedAsIs = 0;
inline constexpr uint8_t kSealedByUs = 1;
inline constexpr uint8_t kSealedPayload = 2;

// stream_batch_fuzz
//   byte 0   mode (the byte modulo 2):
//     kBatchAsIs:  a sealed stream batch, verified and opened (data key
//                  FixedKey(kDataKeySalt)) as it is;
//     kBatchByUs:  u16 LE bit to flip | options (bit 0 LZ4, bit 1
//                  ChaCha20-Poly1305) | u64 LE first offset | u8 name
//                  length | name | records as frames (AppendFrame, at most
//                  kMaxBatchRecordsPerInput): sealed by SealStreamBatch
//                  (signing seed FixedKey(kSigningSeedSalt)).
inline constexpr uint8_t kBatchAsIs = 0;
inline constexpr uint8_t kBatchByUs = 1;
inline constexpr size_t kMaxBatchRecordsPerInput = 256;

// pack_fuzz
//   byte 0   config: bit 0 = read with entry verification (frames and
//            SHA-256 of every entry); bit 1 = fix the footer checksum first.
//   rest     the pack file.
inline constexpr uint8_t kPackVerifyEntries = 0x01;
inline constexpr uint8_t kPackFixChecksum = 0x02;

// manifest_fuzz
//   byte 0   config: bit 0 = sign: the rest is u16 LE bit to flip | body
//            bytes, wrapped by the target in an envelope signed with the
//            fixed key; else the rest is an envelope, parsed as it is.
inline constexpr uint8_t kManifestSign = 0x01;

// keyset_fuzz, ref_set_fuzz
//   byte 0   config: bit 0 = fix the trailing BLAKE2b-256 checksum first.
//   rest     the keyset file / refs object.
inline constexpr uint8_t kFixChecksum = 0x01;

// tree_fuzz: the input is a serialized Tree. agent_config_fuzz,
// mirror_policy_fuzz and hub_config_fuzz: the input is the YAML (or JSON)
// text.

// http_request_fuzz
//   byte 0   config: bits 0-1 = the token every request gets as its
//            Authorization header (kHttpToken*: none, so the request's own
//            header stands; the all-tenants admin; acme's admin; acme's
//            reader); bit 2 = requests pass the auth throttle (3 failures a
//            minute; its clock moves 20 s an input) from one peer address,
//            as they do in a hub (else no throttle); bit 3 = the
//            parser's body limit is 1024 bytes (the least maxHttpBodyBytes
//            allows) instead of the default 1 MiB.
//   rest     the bytes a client sends on one connection: up to
//            kMaxHttpRequestsPerInput pipelined HTTP/1.x requests. Before
//            parsing, the placeholders below are replaced by what they
//            name in the fuzz hub (tokens are random per hub; ids are fixed,
//            but spelt out they would be 64 bytes the mutator must keep).
inline constexpr uint8_t kHttpTokenMask = 0x03;
inline constexpr uint8_t kHttpTokenNone = 0;
inline constexpr uint8_t kHttpTokenRoot = 1;
inline constexpr uint8_t kHttpTokenAdmin = 2;
inline constexpr uint8_t kHttpTokenReader = 3;
inline constexpr uint8_t kHttpThrottle = 0x04;
inline constexpr uint8_t kHttpSmallBody = 0x08;
inline constexpr size_t kMaxHttpRequestsPerInput = 8;
//   $ROOT, $ADMIN, $READER  the tokens (clear, "fry_...") of the
//                           all-tenants admin, acme's admin, acme's reader;
//   $TOKID                  the id of acme's reader token ("tok-...");
//   $SNAP, $CHUNK, $KEY     the ids (hex) of acme's snapshot, of its one
//                           chunk and of that chunk's data key.

}  // namespace ferry::fuzz
