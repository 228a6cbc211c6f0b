// ChunkStream: cuts a byte stream into content-defined chunks as it arrives.
//
// Callers either Write() bytes or read straight into the buffer with
// Prepare()/Commit(); every complete chunk is handed to `emit` as soon as its
// end is known, so at most max_size + one read's worth of bytes is buffered.
// The buffer is kept across Finish(): one stream reused for many files
// allocates it once.
//
// Thread-safety: thread-compatible.
#pragma once

#include <functional>

#include "core/bytes.h"
#include "snapshot/chunker.h"

namespace ferry::snapshot {

class ChunkStream {
 public:
  // `chunk` views the stream's buffer: valid only during the call.
  using Emit = std::function<void(ByteView chunk)>;
  // `chunker` must outlive the stream.
  ChunkStream(const Chunker& chunker, Emit emit);

  void Write(ByteView data);
  // A writable area of `n` bytes at the end of the buffer; then Commit(k <= n).
  MutableByteView Prepare(size_t n);
  void Commit(size_t n);
  // Emits whatever is left as the final chunk. The stream can then be reused.
  void Finish();
  // Drops whatever is buffered, without emitting it (after a failed read).
  void Reset() {
    start_ = end_ = 0;
    total_ = 0;
  }

  uint64_t total_bytes() const { return total_; }

 private:
  void Cut(bool at_eof);
  const Chunker& chunker_;
  Emit emit_;
  Bytes buf_;
  size_t start_ = 0;  // first byte of the current chunk in buf_
  size_t end_ = 0;    // end of valid data in buf_
  uint64_t total_ = 0;
};

}  // namespace ferry::snapshot
