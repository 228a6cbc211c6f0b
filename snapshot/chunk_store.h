// ChunkStore: a store of sealed chunks, wrapped data keys and snapshots, as
// the receiving side of the link and the hub see it. It never needs keys:
// everything in it is ciphertext, wrapped keys, signed manifests and
// reference sets of chunk ids. It is both a ChunkSink (chunks go in) and a
// ChunkSource (chunk_source.h: what restore and verify read), and adds
// durability and snapshot commits.
//
// LocalStore (packs on a local filesystem, docs/format/store.md) is the one
// implementation today; S3-compatible object storage comes behind this same
// interface with its own issue.
// Thread-safety: implementations are thread-safe.
#pragma once

#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/status.h"
#include "snapshot/chunk_sink.h"
#include "snapshot/chunk_source.h"
#include "snapshot/manifest.h"
#include "snapshot/types.h"

namespace ferry::snapshot {

struct SnapshotSummary;

class ChunkStore : public ChunkSink, public ChunkSource {
 public:
  // (ChunkSink: ChunkSealedSize, PutChunk — not durable until Flush.)
  // (ChunkSource: ReadSealedChunk, WrappedKey, and LoadManifest and ReadRefs
  // of committed snapshots — a snapshot is readable once CommitSnapshot
  // returned.)

  // Makes everything put so far durable.
  virtual Status Flush() = 0;
  // Durability marks, to acknowledge writes as they become durable without
  // waiting for them: every chunk put before WriteMark() returned m is
  // durable once DurableMark() >= m. The default never reports durability
  // (callers then Flush()).
  virtual uint64_t WriteMark() { return 1; }
  virtual uint64_t DurableMark() { return 0; }
  // Writes that failed (a full disk, an I/O error) lose what was not yet
  // durable: the chunks of the failed pack are dropped (reported missing
  // again, to be sent again) and the store goes on with new packs. Each
  // such failure bumps FailureCount(); a durability mark taken before a
  // failure proves nothing after it: whoever holds acknowledgements must
  // drop them (and end its session) when the count moved. LastFailure() is
  // the error of the most recent one.
  virtual uint64_t FailureCount() { return 0; }
  virtual Status LastFailure() { return OkStatus(); }

  // Makes a snapshot durable and listed, atomically: every chunk named by the
  // reference set staged at `staged_refs_path` (a file under staging_dir())
  // must be present with its sealed size (else kFailedPrecondition). Takes
  // the staged file over.
  virtual Status CommitSnapshot(const ParsedManifest& manifest,
                                const std::string& staged_refs_path) = 0;
  // Whether CommitSnapshot of `id` completed: the snapshot is listed. (Its
  // manifest file alone proves nothing: a commit whose last step failed
  // leaves one behind, and must be committed again, not taken as done.)
  virtual Result<bool> IsCommitted(const SnapshotId& id) = 0;
  // A local directory for files being received (e.g. a reference set
  // arriving in parts), on the same filesystem as the store where it has one.
  virtual std::string staging_dir() const = 0;
};

}  // namespace ferry::snapshot
