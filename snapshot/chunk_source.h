// ChunkSource: the read side of a store — what restore and verify need:
// sealed chunks, wrapped data keys, manifests and reference sets. Like the
// store it reads from, it never needs keys; the reader decrypts and checks.
//
// Implementations: every ChunkStore (LocalStore, a directory of packs); a
// hub reached over HTTP by the operator CLI comes next. Nothing a source
// returns is trusted: ChunkReader checks every chunk against its id, and
// VerifySnapshot checks the reference set against the signed manifest.
//
// Errors, for every method: kNotFound when the object is absent; kDataLoss
// when it is present but damaged; anything else a source meets (kUnavailable
// from a hub that cannot be reached, kPermissionDenied, ...) passes through
// unchanged so that callers can decide whether to retry.
// Thread-safety: implementations are thread-safe.
#pragma once

#include <cstdint>

#include "core/bytes.h"
#include "core/status.h"
#include "snapshot/manifest.h"
#include "snapshot/types.h"

namespace ferry::snapshot {

class ChunkSource {
 public:
  virtual ~ChunkSource() = default;

  // The sealed bytes of chunk `id` into `out` (resized: a reused buffer
  // saves an allocation and its zero-fill per chunk). kNotFound if absent.
  virtual Status ReadSealedChunk(const ChunkId& id, Bytes& out) = 0;
  // The wrapped data key with this id. kNotFound if absent.
  virtual Result<Bytes> WrappedKey(const KeyId& id) = 0;
  // A committed snapshot's manifest, parsed and checked with ParseManifest
  // (signature, fields) and hashing to `id` (else kDataLoss). kNotFound if
  // absent.
  virtual Result<ParsedManifest> LoadManifest(const SnapshotId& id) = 0;
  // A committed snapshot's reference set (docs/format/refs.md), unchecked,
  // if at most `max_bytes` long (else kResourceExhausted). kNotFound if
  // absent.
  virtual Result<Bytes> ReadRefs(const SnapshotId& id, uint64_t max_bytes) = 0;
};

}  // namespace ferry::snapshot
