// ChunkWriter: the write path of one chunk — id, dedup check, LZ4, seal,
// store — safe to call from many worker threads at once.
//
// Data keys: a fresh key is made for every `key_rotation_bytes` of plaintext
// sealed (by default about one pack's worth), wrapped to the tenant public
// key, and stored in the index of every pack holding a chunk it sealed.
//
// Thread-safety: thread-safe. `keyset` and `sink` must outlive the writer.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>

#include "snapshot/chunk_sink.h"
#include "snapshot/keyset.h"
#include "snapshot/sealed_chunk.h"

namespace ferry::snapshot {

struct ChunkResult {
  ChunkId id{};
  uint32_t plain_size = 0;
  uint32_t sealed_size = 0;
  bool is_new = false;
};

struct ChunkWriterStats {
  std::atomic<uint64_t> chunks{0};
  std::atomic<uint64_t> new_chunks{0};
  std::atomic<uint64_t> plain_bytes{0};      // plaintext handled
  std::atomic<uint64_t> new_plain_bytes{0};  // plaintext of chunks not already stored
  std::atomic<uint64_t> stored_bytes{0};     // sealed bytes written for new chunks
};

class ChunkWriter {
 public:
  ChunkWriter(const Keyset& keyset, ChunkSink& sink, SealOptions seal_options = {},
              uint64_t key_rotation_bytes = 16u << 20);

  Result<ChunkResult> Write(ByteView plaintext);
  const ChunkWriterStats& stats() const { return stats_; }

 private:
  std::shared_ptr<const Keyset::NewDataKey> KeyFor(size_t bytes);

  const Keyset& keyset_;
  ChunkSink& sink_;
  const SealOptions seal_options_;
  const uint64_t key_rotation_bytes_;
  std::mutex mu_;
  std::shared_ptr<const Keyset::NewDataKey> key_;  // guarded by mu_
  uint64_t key_bytes_ = 0;                         // guarded by mu_
  ChunkWriterStats stats_;
};

}  // namespace ferry::snapshot
