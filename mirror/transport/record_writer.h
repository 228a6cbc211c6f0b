// RecordWriter: the sending half of the link's record layer. Splits a frame
// (one serialized Envelope) into records of at most 65519 bytes and
// encrypts each record into one Noise transport message (CipherState
// EncryptWithAd, empty associated data, implicit nonce). Pure: no I/O.
// Format: docs/format/link-transport.md ("Records").
//
// Every record but a frame's last is full (kMaxRecordSize bytes); the
// reader rejects anything else, so a frame has exactly one encoding.
//
// Errors: kResourceExhausted if a frame exceeds max_frame_bytes (nothing
// written, the writer stays usable); kFailedPrecondition without a cipher
// key; the cipher's kResourceExhausted at nonce 2^64-1 (the session must
// end: some of the frame's messages may have been appended).
// Thread-safety: thread-compatible (the session serialises its senders).
#pragma once

#include <cstddef>
#include <vector>

#include "core/bytes.h"
#include "core/status.h"
#include "mirror/noise/cipher_state.h"
#include "mirror/transport/record_format.h"

namespace ferry::mirror::transport {

class RecordWriter {
 public:
  // `max_frame_bytes` must be at most kMaxFrameBytesLimit (checked by the
  // callers' option validation; larger values are clamped).
  explicit RecordWriter(size_t max_frame_bytes, noise::CipherState send = {});

  // Appends the transport messages of `frame` to `messages` (one Bytes per
  // WebSocket message), in order.
  Status WriteFrame(ByteView frame, std::vector<Bytes>& messages);

  // Encrypts `record` as it is into one message: lets tests hand a peer
  // malformed records. Not for production use.
  Status WriteRecordForTest(ByteView record, std::vector<Bytes>& messages);

  // The plaintext records of `frame`, without encryption: for tests, tools
  // and fuzzers. Precondition: frame.size() <= kMaxFrameBytesLimit.
  static std::vector<Bytes> SplitFrame(ByteView frame);
  // How many records a frame of `frame_size` bytes takes (at least 1).
  static size_t RecordCount(size_t frame_size);

  // The nonce of the next message.
  uint64_t nonce() const { return cipher_.nonce(); }
  size_t max_frame_bytes() const { return max_frame_bytes_; }

 private:
  // Calls emit(record) for each record of `frame`, reusing one buffer.
  template <typename Emit>
  static Status ForEachRecord(ByteView frame, Bytes& scratch, Emit&& emit);

  size_t max_frame_bytes_;
  noise::CipherState cipher_;
  Bytes scratch_;  // one plaintext record
};

}  // namespace ferry::mirror::transport
