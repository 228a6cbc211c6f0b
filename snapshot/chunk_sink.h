// ChunkSink: where a capture puts sealed chunks (a LocalStore today; the
// agent's outbox reuses it).
//
// Thread-safety: implementations are thread-safe.
#pragma once

#include <optional>

#include "core/bytes.h"
#include "core/status.h"
#include "snapshot/types.h"

namespace ferry::snapshot {

struct PutResult {
  uint32_t sealed_size = 0;  // the size kept for the id
  bool added = false;        // false when the sink already had it
};

class ChunkSink {
 public:
  virtual ~ChunkSink() = default;
  // The sealed size of `id` if the sink already holds it.
  virtual Result<std::optional<uint32_t>> ChunkSealedSize(const ChunkId& id) = 0;
  // Stores a sealed chunk unless present.
  virtual Result<PutResult> PutChunk(const ChunkId& id, ByteView sealed, const KeyId& key_id,
                                     ByteView wrapped_key) = 0;
};

}  // namespace ferry::snapshot
