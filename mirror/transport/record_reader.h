// RecordReader: the receiving half of the link's record layer. Decrypts
// each Noise transport message (one WebSocket message) into a record and
// reassembles frames. Pure: no I/O. Format and the error for each kind of
// damage: docs/format/link-transport.md ("Records", "Decoding").
//
// A frame's declared length is checked against max_frame_bytes before any
// buffer is allocated for it; then exactly that many bytes are reserved.
//
// Errors (all final: the reader keeps returning the first error, and the
// session must end): kDataLoss for a message that does not decrypt
// (damaged, replayed, reordered, dropped or foreign: the nonce is implicit)
// and for a malformed record (empty, over 65519 bytes, unknown type, a
// continuation without a start, a start inside a frame, a record that is
// not full although the frame continues, a record that overruns its
// frame); kResourceExhausted for a declared frame length over
// max_frame_bytes; kFailedPrecondition for ReadMessage without a cipher key.
// Thread-safety: thread-compatible (the session reads on its strand).
#pragma once

#include <cstddef>
#include <optional>

#include "core/bytes.h"
#include "core/status.h"
#include "mirror/noise/cipher_state.h"
#include "mirror/transport/record_format.h"

namespace ferry::mirror::transport {

class RecordReader {
 public:
  explicit RecordReader(size_t max_frame_bytes, noise::CipherState receive = {});

  // Decrypts one transport message and consumes its record. Returns true
  // when the record completed a frame, which is then moved into `frame`;
  // false when more records are needed (`frame` untouched).
  Result<bool> ReadMessage(ByteView message, Bytes& frame);

  // Consumes one plaintext record (what ReadMessage does after decrypting):
  // for tests and fuzzers.
  Result<bool> ReadRecord(ByteView record, Bytes& frame);

  // A frame has started and is not complete.
  bool in_frame() const { return open_.has_value(); }
  // The nonce the next message must have been encrypted with.
  uint64_t nonce() const { return cipher_.nonce(); }
  // The first error, once failed.
  const Status& status() const { return status_; }

 private:
  Result<bool> Fail(Status status);

  struct OpenFrame {
    uint32_t total;  // declared length
    Bytes data;      // received so far (capacity: total)
  };

  size_t max_frame_bytes_;
  noise::CipherState cipher_;
  std::optional<OpenFrame> open_;
  Bytes plaintext_;  // reused decryption buffer
  Status status_;
};

}  // namespace ferry::mirror::transport
