#include "snapshot/chunk_stream.h"

#include <cstring>

namespace ferry::snapshot {

ChunkStream::ChunkStream(const Chunker& chunker, Emit emit)
    : chunker_(chunker), emit_(std::move(emit)) {}

MutableByteView ChunkStream::Prepare(size_t n) {
  // Compact when the consumed prefix is large, then make room.
  if (start_ > 0 && (start_ >= buf_.size() / 2 || end_ + n > buf_.size())) {
    std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
  }
  if (end_ + n > buf_.size()) {
    // Grow to exactly what is asked (less than max_size is left unconsumed,
    // so this settles at max_size + one read), not by doubling: the buffer
    // is kept for the stream's life, and a doubled one would be twice that.
    buf_.reserve(end_ + n);
    buf_.resize(end_ + n);
  }
  return MutableByteView(buf_.data() + end_, n);
}

void ChunkStream::Commit(size_t n) {
  end_ += n;
  total_ += n;
  Cut(/*at_eof=*/false);
}

void ChunkStream::Write(ByteView data) {
  while (!data.empty()) {
    const size_t n = std::min<size_t>(data.size(), 1 << 20);
    MutableByteView dst = Prepare(n);
    std::memcpy(dst.data(), data.data(), n);
    Commit(n);
    data = data.subspan(n);
  }
}

void ChunkStream::Cut(bool at_eof) {
  while (end_ > start_) {
    const size_t n = chunker_.FindBoundary(ByteView(buf_.data() + start_, end_ - start_), at_eof);
    if (n == 0) return;
    emit_(ByteView(buf_.data() + start_, n));
    start_ += n;
  }
}

void ChunkStream::Finish() {
  Cut(/*at_eof=*/true);
  start_ = end_ = 0;
  total_ = 0;
}

}  // namespace ferry::snapshot
