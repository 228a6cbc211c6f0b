// ChunkReader: the read path of one chunk — fetch the sealed bytes, unwrap
// its data key (cached), decrypt, decompress, and check the content against
// its id and expected size. A delta chunk (snapshot/delta.h) is named by its
// payload: the payload is checked against the id, then the chunk is rebuilt
// from its bases, read (and checked) the same way.
//
// The source may be a local store or a remote one: nothing it returns is
// trusted (the sealed bytes are authenticated with the id as associated
// data, and the plaintext is checked against the id).
//
// Errors: kNotFound (chunk or key absent from the source), kDataLoss (the
// bytes are damaged or do not match the id), kFailedPrecondition (the keyset
// cannot decrypt: agent file or locked); other errors of the source (e.g.
// kUnavailable) pass through.
// Thread-safety: thread-safe. `source` and `keyset` must outlive the reader.
#pragma once

#include <map>
#include <mutex>

#include <memory>
#include <optional>

#include "snapshot/chunk_source.h"
#include "snapshot/delta.h"
#include "snapshot/keyset.h"
#include "snapshot/manifest.h"

namespace ferry::snapshot {

class ChunkReader {
 public:
  ChunkReader(ChunkSource& source, const Keyset& keyset) : source_(source), keyset_(keyset) {}

  // Plaintext of chunk `id`, which must be `expected_size` bytes.
  Result<Bytes> Read(const ChunkId& id, uint32_t expected_size);
  Result<Bytes> Read(const pb::ChunkRef& ref);
  // The same into `plaintext` (resized; reuse it across calls to skip an
  // allocation and zero-fill per chunk).
  Status Read(const ChunkId& id, uint32_t expected_size, Bytes& plaintext);
  Status Read(const pb::ChunkRef& ref, Bytes& plaintext);
  // The concatenated plaintext of a chunk list (trees).
  Result<Bytes> ReadAll(const google::protobuf::RepeatedPtrField<pb::ChunkRef>& refs,
                        size_t max_total);

  // How many deltas deep a chunk may be stored (a delta of a delta of a
  // whole chunk is 2); deeper is refused as damage rather than followed.
  static constexpr int kMaxDeltaDepth = 8;

 private:
  Status ReadAt(const ChunkId& id, std::optional<uint32_t> expected_size, Bytes& plaintext,
                int depth);
  Result<std::shared_ptr<const SecretBytes>> Key(const KeyId& id);
  const delta::BlockHasher& DeltaHasher();  // made on first use
  ChunkSource& source_;
  const Keyset& keyset_;
  std::mutex mu_;
  std::map<KeyId, std::shared_ptr<const SecretBytes>> keys_;  // guarded by mu_
  std::once_flag delta_hasher_once_;
  std::unique_ptr<delta::BlockHasher> delta_hasher_;
};

}  // namespace ferry::snapshot
