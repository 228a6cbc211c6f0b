// Stream cuts: the snapshot of a stream dataset. It holds no data, only the
// offsets [start, end) the stream had when a policy run started — one
// consistent cut with the volumes captured in the same run
// (docs/consistency.md). The records themselves reach the hubs as stream
// batches; a restore of the snapshot reads them there up to the cut.
//
// The snapshot is a signed manifest like a volume's (one dataset of kind
// STREAM, no root, an empty reference set), committed to the store, so it
// is queued, replicated, listed and retained like any other.
//
// Errors: kInvalidArgument (no name, start > end), the store's otherwise.
// Thread-safety: as the store's CommitSnapshot.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/status.h"
#include "snapshot/keyset.h"
#include "snapshot/local_store.h"

namespace ferry::snapshot {

struct StreamCutOptions {
  std::string dataset_name;
  uint64_t start_offset = 0;
  uint64_t end_offset = 0;
  std::map<std::string, std::string> labels;
};

// Commits the cut's snapshot into `store`; its parent is the store's latest
// snapshot of the same dataset.
Result<SnapshotId> CommitStreamCut(LocalStore& store, const Keyset& keyset,
                                   const StreamCutOptions& options);

}  // namespace ferry::snapshot
