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
#include <unordered_map>
#include <vector>

#include "snapshot/chunk_sink.h"
#include "snapshot/delta.h"
#include "snapshot/keyset.h"
#include "snapshot/sealed_chunk.h"

namespace ferry::snapshot {

struct ChunkResult {
  ChunkId id{};          // what the snapshot references: content_id, or a delta chunk's id
  ChunkId content_id{};  // HMAC-SHA-256(chunk-id key, plaintext)
  uint32_t plain_size = 0;
  uint32_t sealed_size = 0;
  bool is_new = false;
  // Non-empty when `id` is a delta chunk (new or found again): its bases,
  // which a snapshot referencing it must reference too.
  BaseList bases;
  // The chunk's delta signature, when DeltaContext::want_signature.
  Bytes signature;
};

// A delta chunk already stored for some content.
struct KnownDelta {
  ChunkId id{};
  uint32_t sealed_size = 0;
  BaseList bases;
};

// How to try a delta for one file's new chunks (snapshot/delta.h).
struct DeltaContext {
  const delta::BlockHasher* hasher = nullptr;  // required
  // Candidate bases (the file's previous chunks stored whole); null or
  // empty: store whole. `base_sealed_sizes` has each one's sealed size.
  const delta::BaseIndex* index = nullptr;
  const std::unordered_map<ChunkId, uint32_t, ArrayHash>* base_sealed_sizes = nullptr;
  // Delta chunks of the file's previous version, by content id: content
  // found again is referenced through them, not stored again.
  const std::unordered_map<ChunkId, KnownDelta, ArrayHash>* known_deltas = nullptr;
  // Signatures already known, by content id (reused instead of recomputed).
  const std::unordered_map<ChunkId, ByteView, ArrayHash>* known_signatures = nullptr;
  bool want_signature = true;
};

struct ChunkWriterStats {
  std::atomic<uint64_t> chunks{0};
  std::atomic<uint64_t> new_chunks{0};
  std::atomic<uint64_t> plain_bytes{0};        // plaintext handled
  std::atomic<uint64_t> new_plain_bytes{0};    // plaintext of chunks not already stored
  std::atomic<uint64_t> stored_bytes{0};       // sealed bytes written for new chunks
  std::atomic<uint64_t> delta_chunks{0};       // new chunks stored as deltas
  std::atomic<uint64_t> delta_plain_bytes{0};  // their plaintext
};

class ChunkWriter {
 public:
  ChunkWriter(const Keyset& keyset, ChunkSink& sink, SealOptions seal_options = {},
              uint64_t key_rotation_bytes = 16u << 20);

  // With `delta`, a new chunk is stored as a delta of the context's bases
  // when that takes at most half its size; content this writer or the
  // context already holds as a delta chunk is referenced through it.
  Result<ChunkResult> Write(ByteView plaintext, const DeltaContext* delta = nullptr);
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
  // Delta chunks this writer stored, by content id (a retried read of a
  // file, or the same content in another file, finds them again). Bounded:
  // past the limit, content seen again is stored once more, whole.
  static constexpr size_t kMaxWrittenDeltas = 1 << 16;
  std::unordered_map<ChunkId, KnownDelta, ArrayHash> written_deltas_;  // guarded by mu_
  ChunkWriterStats stats_;
};

}  // namespace ferry::snapshot
