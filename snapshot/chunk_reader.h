// ChunkReader: the read path of one chunk — fetch the sealed bytes, unwrap
// its data key (cached), decrypt, decompress, and check the content against
// its id and expected size.
//
// Errors: kNotFound (chunk or key absent from the store), kDataLoss (the
// bytes are damaged or do not match the id), kFailedPrecondition (the keyset
// cannot decrypt: agent file or locked).
// Thread-safety: thread-safe. `store` and `keyset` must outlive the reader.
#pragma once

#include <map>
#include <mutex>

#include "snapshot/keyset.h"
#include "snapshot/local_store.h"
#include "snapshot/manifest.h"

namespace ferry::snapshot {

class ChunkReader {
 public:
  ChunkReader(LocalStore& store, const Keyset& keyset) : store_(store), keyset_(keyset) {}

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

 private:
  Result<std::shared_ptr<const SecretBytes>> Key(const KeyId& id);
  LocalStore& store_;
  const Keyset& keyset_;
  std::mutex mu_;
  std::map<KeyId, std::shared_ptr<const SecretBytes>> keys_;  // guarded by mu_
};

}  // namespace ferry::snapshot
