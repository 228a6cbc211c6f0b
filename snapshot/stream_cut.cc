#include "snapshot/stream_cut.h"

#include "core/env.h"
#include "snapshot/manifest_commit.h"
#include "snapshot/ref_set.h"

namespace ferry::snapshot {

Result<SnapshotId> CommitStreamCut(LocalStore& store, const Keyset& keyset,
                                   const StreamCutOptions& options) {
  if (options.dataset_name.empty()) return InvalidArgumentError("a stream cut needs a name");
  if (options.start_offset > options.end_offset) {
    return InvalidArgumentError("stream cut of " + options.dataset_name + " starts at " +
                                std::to_string(options.start_offset) + ", past its end " +
                                std::to_string(options.end_offset));
  }
  pb::Manifest m;
  m.set_format_version(kManifestFormatVersion);
  m.set_created_unix_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count());
  ASSIGN_OR_RETURN(std::vector<SnapshotSummary> existing, store.ListSnapshots());
  for (auto it = existing.rbegin(); it != existing.rend(); ++it) {
    if (it->body.datasets_size() > 0 && it->body.datasets(0).name() == options.dataset_name) {
      m.set_parent(it->id.data(), it->id.size());
      break;
    }
  }
  for (const auto& [k, v] : options.labels) (*m.mutable_labels())[k] = v;
  pb::Dataset* ds = m.add_datasets();
  ds->set_name(options.dataset_name);
  ds->set_kind(pb::DATASET_KIND_STREAM);
  ds->mutable_stream()->set_start_offset(options.start_offset);
  ds->mutable_stream()->set_end_offset(options.end_offset);
  // An empty reference set: the cut names no chunks.
  const std::string refs_path = NewRefsPath(store);
  RefSetBuilder refs(*Env::Default(), store.tmp_dir());
  ASSIGN_OR_RETURN(RefSetSummaryInfo info, refs.Finish(refs_path));
  SetManifestOrigin(m, keyset, info);
  ASSIGN_OR_RETURN(ParsedManifest parsed, SignAndCommit(store, keyset, m, refs_path));
  return parsed.id;
}

}  // namespace ferry::snapshot
