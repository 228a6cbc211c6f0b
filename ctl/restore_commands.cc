#include "ctl/restore_commands.h"

#include <boost/json.hpp>
#include <iostream>
#include <optional>

#include "core/env.h"

#include "ctl/format.h"
#include "ctl/hub_chunk_source.h"
#include "ctl/local_commands.h"
#include "ctl/stream_commands.h"
#include "snapshot/restorer.h"

namespace ferry::ctl {

namespace json = boost::json;

namespace {

// Fetching from a hub is latency-bound, not CPU-bound: more requests in
// flight than cores.
constexpr size_t kDefaultHubWorkers = 8;

// Where the snapshot comes from: a local store or a hub.
struct Source {
  std::unique_ptr<snapshot::Keyset> keyset;  // unlocked
  std::unique_ptr<snapshot::LocalStore> store;
  Result<HubCall> call = FailedPreconditionError("no hub");
  std::unique_ptr<HubChunkSource> hub;
  snapshot::SnapshotId id{};
  std::string where;  // for messages and the summary
  OutputFormat format = OutputFormat::kTable;
  uint64_t logical_bytes = 0;                       // the datasets' size: the progress line's total
  std::optional<snapshot::pb::Dataset> stream_cut;  // the snapshot is a stream's cut

  snapshot::ChunkSource& source() {
    return store ? static_cast<snapshot::ChunkSource&>(*store) : *hub;
  }
};

// Unlocks the keyset, opens the store or the hub, resolves the snapshot and
// reads its size.
Status OpenSource(const std::string& keyset, const std::string& passphrase_file,
                  const std::string& store_dir, const HubArgs& hub_args,
                  const HubSnapshotFilter& filter, const std::string& snapshot, bool json,
                  Source& out) {
  ASSIGN_OR_RETURN(out.keyset, LoadUnlockedKeyset(keyset, passphrase_file));
  if (!store_dir.empty()) {
    ASSIGN_OR_RETURN(out.format, ParseOutputFormat(json ? "json" : hub_args.output));
    ASSIGN_OR_RETURN(out.store, OpenStore(store_dir, snapshot::LocalStore::Mode::kReadOnly));
    ASSIGN_OR_RETURN(out.id, out.store->ResolveSnapshot(snapshot));
    out.where = store_dir;
  } else {
    HubArgs args = hub_args;
    if (json) args.output = "json";
    out.call = OpenHub(args);
    RETURN_IF_ERROR(out.call.status());
    out.format = out.call->format;
    ASSIGN_OR_RETURN(std::string tenant, out.call->Tenant());
    ASSIGN_OR_RETURN(std::string hex, ResolveHubSnapshot(*out.call, snapshot, filter));
    ASSIGN_OR_RETURN(Bytes raw, HexDecode(hex));
    if (raw.size() != out.id.size()) return DataLossError("the hub listed a malformed id " + hex);
    std::copy(raw.begin(), raw.end(), out.id.begin());
    out.hub = std::make_unique<HubChunkSource>(*out.call->client, tenant);
    out.where = out.call->client->url().text + " (tenant " + tenant + ")";
  }
  ASSIGN_OR_RETURN(snapshot::ParsedManifest m, out.source().LoadManifest(out.id));
  for (const auto& d : m.body.datasets()) out.logical_bytes += d.stats().bytes();
  if (m.body.datasets_size() > 0 &&
      m.body.datasets(0).kind() == snapshot::pb::DATASET_KIND_STREAM) {
    out.stream_cut = m.body.datasets(0);
  }
  return OkStatus();
}

// A stream cut restores as the stream's records [start, end) read from the
// hub, written to DIR/<stream>.jsonl as `ferryctl stream read -o json` prints
// them.
int RestoreStreamCut(const RestoreArgs& args, Source& src) {
  const snapshot::pb::Dataset& d = *src.stream_cut;
  const std::string short_id = HexEncode(src.id).substr(0, 12);
  const std::string what = "restore " + short_id;
  if (!src.hub) {
    return Fail(what, FailedPreconditionError(
                          "snapshot " + short_id + " is the cut of stream '" + d.name() +
                          "': its records are at the hub, not in a store; restore it with --hub"));
  }
  Result<std::string> tenant = src.call->Tenant();
  if (!tenant.ok()) return Fail(what, tenant.status());
  Result<json::value> info =
      src.call->client->Json("GET", "/v1/tenants/" + *tenant + "/snapshots/" + HexEncode(src.id));
  if (!info.ok()) return Fail(what, info.status());
  const json::value* agent = info->is_object() ? info->as_object().if_contains("agent") : nullptr;
  if (agent == nullptr || !agent->is_string()) {
    return Fail(what, DataLossError("the hub did not say which agent made snapshot " + short_id));
  }
  Env& env = *Env::Default();
  if (Status s = env.CreateDirs(args.to, 0755); !s.ok()) return Fail(what, s);
  const std::string path = args.to + "/" + d.name() + ".jsonl";
  Result<bool> exists = env.FileExists(path);
  if (exists.ok() && *exists && !args.force) {
    return Fail(what, AlreadyExistsError(path + " exists (--force replaces it)"));
  }
  HubStreamReader reader(*src.call->client, *tenant, std::string(agent->as_string()), d.name(),
                         *src.keyset);
  if (Status s = reader.Init(); !s.ok()) return Fail(what, s);
  Result<std::unique_ptr<WritableFile>> file = env.NewWritableFile(path + ".tmp");
  if (!file.ok()) return Fail(what, file.status());
  uint64_t at = d.stream().start_offset();
  const uint64_t end = d.stream().end_offset();
  uint64_t records = 0, bytes = 0;
  while (at < end) {
    Result<std::vector<snapshot::StreamRecord>> batch = reader.Read(at);
    if (!batch.ok()) return Fail(what, batch.status());
    if (batch->empty()) {
      return Fail(what, NotFoundError("the hub holds stream " + d.name() + " only up to offset " +
                                      std::to_string(at) + ", before the cut at " +
                                      std::to_string(end) + " (still replicating?)"));
    }
    std::string out;
    for (const snapshot::StreamRecord& r : *batch) {
      if (r.offset >= end) break;
      out += StreamRecordJson(r) + "\n";
      ++records;
      bytes += r.data.size();
      at = r.offset + 1;
    }
    if (Status s = (*file)->Append(AsBytes(out)); !s.ok()) return Fail(what, s);
  }
  if (Status s = (*file)->Sync(); !s.ok()) return Fail(what, s);
  if (Status s = (*file)->Close(); !s.ok()) return Fail(what, s);
  if (Status s = env.RenameFile(path + ".tmp", path); !s.ok()) return Fail(what, s);
  if (src.format != OutputFormat::kTable) {
    PrintValue(json::object{{"id", HexEncode(src.id)},
                            {"stream", d.name()},
                            {"start_offset", d.stream().start_offset()},
                            {"end_offset", end},
                            {"records", records},
                            {"bytes", bytes},
                            {"file", path}},
               src.format);
  } else {
    std::cerr << "restored " << short_id << " (stream " << d.name() << ", offsets "
              << d.stream().start_offset() << " to " << end << ") into " << path << ": "
              << Count(records) << " records, " << HumanBytes(bytes) << "\n";
  }
  return kExitOk;
}

}  // namespace

int Restore(const RestoreArgs& args) {
  Source src;
  if (Status s = OpenSource(args.keyset, args.passphrase_file, args.store, args.hub, args.filter,
                            args.snapshot, args.json, src);
      !s.ok()) {
    return Fail("restore", s);
  }
  if (src.stream_cut) return RestoreStreamCut(args, src);
  const std::string short_id = HexEncode(src.id).substr(0, 12);
  Progress progress("restore " + short_id, src.logical_bytes);
  snapshot::RestoreOptions options;
  options.sub_path = args.path;
  options.force = args.force;
  options.allow_external_symlinks = args.allow_external_symlinks;
  options.workers = args.workers != 0 ? args.workers : (src.hub ? kDefaultHubWorkers : 0);
  options.on_warning = [&progress](const std::string& w) {
    progress.Finish();
    std::cerr << "warning: " << w << "\n";
  };
  options.on_progress = [&progress](uint64_t bytes) { progress.Add(bytes); };
  Result<snapshot::RestoreReport> r =
      snapshot::RestoreSnapshot(src.source(), *src.keyset, src.id, args.to, options);
  progress.Finish();
  if (!r.ok()) return Fail("restore " + short_id + " from " + src.where, r.status());
  for (const auto& w : r->warnings) std::cerr << "warning: " << w << "\n";
  const uint64_t downloaded = src.hub ? src.hub->bytes_downloaded() : 0;
  if (src.format != OutputFormat::kTable) {
    json::object o;
    o["id"] = HexEncode(src.id);
    o["files"] = r->files;
    o["directories"] = r->directories;
    o["symlinks"] = r->symlinks;
    o["hardlinks"] = r->hardlinks;
    o["bytes"] = r->bytes;
    o["seconds"] = r->seconds;
    o["source"] = src.where;
    if (src.hub) o["bytes_downloaded"] = downloaded;
    json::array refused;
    for (const auto& x : r->refused) refused.push_back(json::string(x));
    o["refused"] = std::move(refused);
    PrintValue(o, src.format);
  } else {
    std::cerr << "restored " << short_id << " from " << src.where << " into " << args.to << ": "
              << Count(r->files) << " files, " << Count(r->directories) << " directories, "
              << Count(r->symlinks) << " symlinks, " << HumanBytes(r->bytes) << " in "
              << Seconds(r->seconds);
    if (src.hub) std::cerr << " (" << HumanBytes(downloaded) << " downloaded)";
    std::cerr << "\n";
  }
  if (!r->refused.empty()) {
    std::cerr << "ferryctl: restore: " << r->refused.size()
              << " entries were refused (see above); everything else was restored\n";
    return kExitError;
  }
  return kExitOk;
}

int Verify(const VerifyArgs& args) {
  Source src;
  if (Status s = OpenSource(args.keyset, args.passphrase_file, args.store, args.hub, args.filter,
                            args.snapshot, args.json, src);
      !s.ok()) {
    return Fail("verify", s);
  }
  const std::string short_id = HexEncode(src.id).substr(0, 12);
  Progress progress("verify " + short_id, src.logical_bytes);
  auto on_progress = [&progress](uint64_t bytes) { progress.Add(bytes); };
  Result<snapshot::VerifyReport> r =
      src.store
          ? snapshot::VerifySnapshot(*src.store, *src.keyset, src.id, args.workers, on_progress)
          : snapshot::VerifySnapshot(src.source(), *src.keyset, src.id,
                                     args.workers != 0 ? args.workers : kDefaultHubWorkers,
                                     on_progress);
  progress.Finish();
  if (!r.ok()) return Fail("verify " + short_id + " at " + src.where, r.status());
  if (src.format != OutputFormat::kTable) {
    json::object o;
    o["id"] = HexEncode(src.id);
    o["ok"] = true;
    o["files"] = r->files;
    o["directories"] = r->directories;
    o["chunks_read"] = r->chunks_read;
    o["bytes_read"] = r->bytes_read;
    o["refs_checked"] = r->refs_checked;
    o["packs_checked"] = r->packs_checked;
    o["seconds"] = r->seconds;
    o["source"] = src.where;
    PrintValue(o, src.format);
  } else {
    std::cout << "snapshot " << short_id << " at " << src.where
              << " is intact: " << Count(r->chunks_read) << " chunks (" << HumanBytes(r->bytes_read)
              << ") decrypted and checked, " << Count(r->files) << " files, "
              << Count(r->refs_checked) << " references present";
    if (!r->remote) {
      std::cout << ", " << Count(r->packs_checked) << " packs with intact indexes";
    } else {
      std::cout << " (pack checks run at the hub's side)";
    }
    std::cout << "\n";
  }
  return kExitOk;
}

}  // namespace ferry::ctl
