#include "ctl/local_commands.h"

#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <iostream>

#include "core/env.h"
#include "core/log.h"
#include "ctl/format.h"
#include "ctl/passphrase.h"
#include "snapshot/keyset.h"
#include "snapshot/local_store.h"
#include "snapshot/restorer.h"
#include "snapshot/volume_capture.h"

namespace ferry::ctl {

namespace json = boost::json;
using snapshot::Keyset;
using snapshot::LocalStore;

Result<std::unique_ptr<Keyset>> LoadKeyset(const std::string& path) {
  Result<std::unique_ptr<Keyset>> ks = Keyset::Load(*Env::Default(), path);
  if (!ks.ok() && ks.status().code() == StatusCode::kNotFound) {
    return NotFoundError("keyset file " + path + " does not exist");
  }
  return ks;
}

// Loads a tenant keyset and unlocks it with the passphrase.
Result<std::unique_ptr<Keyset>> LoadUnlockedKeyset(const std::string& path,
                                                   const std::string& passphrase_file) {
  ASSIGN_OR_RETURN(std::unique_ptr<Keyset> ks, LoadKeyset(path));
  if (ks->kind() != Keyset::Kind::kTenant) {
    return FailedPreconditionError(path +
                                   " is an agent key file: it can add snapshots but not read "
                                   "them; restore and verify need the tenant keyset");
  }
  ASSIGN_OR_RETURN(std::string pass, ReadPassphrase(passphrase_file, /*confirm=*/false));
  Status s = ks->Unlock(pass);
  WipeString(pass);
  if (s.code() == StatusCode::kPermissionDenied) {
    return PermissionDeniedError(s.message() +
                                 ": give the passphrase chosen at `ferryctl keys init` with "
                                 "FERRY_PASSPHRASE, --passphrase-file or at the prompt");
  }
  RETURN_IF_ERROR(s);
  return ks;
}

Result<std::unique_ptr<LocalStore>> OpenStore(const std::string& dir, LocalStore::Mode mode) {
  snapshot::LocalStoreOptions options;
  options.pin_reads = true;  // one command, one consistent view, fast lookups
  return LocalStore::Open(dir, mode, options);
}

namespace {

json::object ManifestJson(const snapshot::SnapshotId& id, const snapshot::pb::Manifest& m) {
  json::object o;
  o["id"] = HexEncode(id);
  o["time"] = IsoTime(m.created_unix_ns());
  o["created_unix_ns"] = m.created_unix_ns();
  o["parent"] =
      m.parent().empty() ? json::value(nullptr) : json::value(HexEncode(AsBytes(m.parent())));
  o["hostname"] = m.hostname();
  o["ferry_version"] = m.ferry_version();
  o["keyset_id"] = HexEncode(AsBytes(m.keyset_id()));
  json::object labels;
  for (const auto& [k, v] : m.labels()) labels[k] = v;
  o["labels"] = std::move(labels);
  json::array datasets;
  for (const auto& d : m.datasets()) {
    json::object dj;
    dj["name"] = d.name();
    dj["kind"] = d.kind() == snapshot::pb::DATASET_KIND_STREAM ? "stream" : "volume";
    if (d.has_stream()) {
      dj["stream"] = json::object{{"start_offset", d.stream().start_offset()},
                                  {"end_offset", d.stream().end_offset()}};
    }
    dj["files"] = d.stats().files();
    dj["directories"] = d.stats().directories();
    dj["symlinks"] = d.stats().symlinks();
    dj["bytes"] = d.stats().bytes();
    dj["inconsistent"] = d.stats().inconsistent();
    dj["skipped"] = d.stats().skipped();
    datasets.push_back(std::move(dj));
  }
  o["datasets"] = std::move(datasets);
  json::object refs;
  refs["chunks"] = m.refs().count();
  refs["sealed_bytes"] = m.refs().sealed_bytes();
  o["refs"] = std::move(refs);
  return o;
}

}  // namespace

int KeysInit(const KeysInitArgs& args) {
  Env& env = *Env::Default();
  Result<bool> exists = env.FileExists(args.out);
  if (!exists.ok()) return Fail("keys init", exists.status());
  if (*exists) {
    return Fail("keys init", AlreadyExistsError(args.out + " already exists; refusing to "
                                                           "overwrite a keyset"));
  }
  Result<std::string> pass = ReadPassphrase(args.passphrase_file, /*confirm=*/true);
  if (!pass.ok()) return Fail("keys init", pass.status());
  sodium::Argon2Params params;
  params.memlimit = args.argon2_memory_mib << 20;
  params.opslimit = args.argon2_ops;
  std::unique_ptr<Keyset> ks = Keyset::Generate();
  Result<Bytes> bytes = ks->SerializeTenant(*pass, params);
  WipeString(*pass);
  if (!bytes.ok()) return Fail("keys init", bytes.status());
  if (Status s = WriteFileAtomic(env, args.out, *bytes, 0600); !s.ok()) {
    return Fail("keys init", s);
  }
  std::cerr << "wrote tenant keyset " << args.out << " (id " << HexEncode(ks->id())
            << ")\nkeep it and its passphrase safe: without both, no snapshot can be restored.\n"
            << "give devices the write-only agent key file instead: ferryctl keys export-agent "
               "--keyset "
            << args.out << " --out agent.key\n";
  return kExitOk;
}

int KeysExportAgent(const ExportAgentArgs& args) {
  Result<std::unique_ptr<Keyset>> ks = LoadKeyset(args.keyset);
  if (!ks.ok()) return Fail("keys export-agent", ks.status());
  if ((*ks)->kind() != Keyset::Kind::kTenant) {
    return Fail("keys export-agent",
                InvalidArgumentError(args.keyset + " is already an agent key file"));
  }
  Env& env = *Env::Default();
  Result<bool> exists = env.FileExists(args.out);
  if (!exists.ok()) return Fail("keys export-agent", exists.status());
  if (*exists) {
    return Fail("keys export-agent", AlreadyExistsError(args.out + " already exists"));
  }
  if (Status s = WriteFileAtomic(env, args.out, (*ks)->SerializeAgent(), 0600); !s.ok()) {
    return Fail("keys export-agent", s);
  }
  std::cerr << "wrote agent key file " << args.out << " for keyset " << HexEncode((*ks)->id())
            << ": it can add snapshots, and cannot read any\n";
  return kExitOk;
}

int SnapshotCreate(const SnapshotCreateArgs& args) {
  Result<std::unique_ptr<Keyset>> ks = LoadKeyset(args.keyset);
  if (!ks.ok()) return Fail("snapshot create", ks.status());
  snapshot::CaptureOptions options;
  options.dataset_name = args.dataset_name;
  options.workers = args.workers;
  options.use_file_cache = !args.no_cache;
  options.delta = args.delta;
  for (const std::string& label : args.labels) {
    const size_t eq = label.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "ferryctl: snapshot create: --label must be key=value, got '" << label << "'\n";
      return kExitUsage;
    }
    options.labels[label.substr(0, eq)] = label.substr(eq + 1);
  }
  options.on_warning = [](const std::string& w) { std::cerr << "warning: " << w << "\n"; };
  Result<std::unique_ptr<LocalStore>> store = LocalStore::OpenOrCreate(args.store);
  if (!store.ok()) return Fail("snapshot create: store " + args.store, store.status());
  Result<snapshot::CaptureReport> r = snapshot::CaptureVolume(args.path, **ks, **store, options);
  if (!r.ok()) return Fail("snapshot create " + args.path, r.status());
  const snapshot::CaptureReport& rep = *r;
  const std::string id = HexEncode(rep.id);
  if (args.json) {
    json::object o;
    o["id"] = id;
    o["dataset"] = rep.dataset_name;
    o["files"] = rep.files;
    o["directories"] = rep.directories;
    o["symlinks"] = rep.symlinks;
    o["hardlinks"] = rep.hardlinks;
    o["bytes"] = rep.bytes_logical;
    o["bytes_read"] = rep.bytes_read;
    o["bytes_data"] = rep.bytes_data;
    o["bytes_new"] = rep.bytes_new;
    o["bytes_stored"] = rep.bytes_stored;
    o["chunks"] = rep.chunks;
    o["chunks_new"] = rep.chunks_new;
    o["chunks_delta"] = rep.chunks_delta;
    o["bytes_delta"] = rep.bytes_delta;
    o["cache_hits"] = rep.cache_hits;
    o["seconds"] = rep.seconds;
    json::array inc, skip;
    for (const auto& p : rep.inconsistent) inc.push_back(json::string(p));
    for (const auto& p : rep.skipped) skip.push_back(json::string(p));
    o["inconsistent"] = std::move(inc);
    o["skipped"] = std::move(skip);
    std::cout << json::serialize(o) << "\n";
  } else {
    std::cerr << "snapshot " << id.substr(0, 12) << " of '" << rep.dataset_name
              << "': " << Count(rep.files) << " files, " << Count(rep.directories)
              << " directories, " << HumanBytes(rep.bytes_logical) << " in " << Seconds(rep.seconds)
              << "\n"
              << "  read " << HumanBytes(rep.bytes_read) << " (" << Count(rep.cache_hits)
              << " files unchanged), new " << HumanBytes(rep.bytes_new) << ", stored "
              << HumanBytes(rep.bytes_stored);
    if (rep.chunks_delta > 0) {
      std::cerr << " (" << Count(rep.chunks_delta) << " changed chunks as deltas of "
                << HumanBytes(rep.bytes_delta) << ")";
    }
    std::cerr << "\n"
              << "  dedup " << Ratio(rep.bytes_data, rep.bytes_new) << ", compression "
              << Ratio(rep.bytes_new, rep.bytes_stored) << "\n";
    if (!rep.inconsistent.empty() || !rep.skipped.empty()) {
      std::cerr << "  " << rep.inconsistent.size() << " files changed while read (kept, flagged "
                << "inconsistent), " << rep.skipped.size() << " entries skipped\n";
    }
    std::cout << id << "\n";
  }
  return rep.inconsistent.empty() && rep.skipped.empty() ? kExitOk : kExitIncomplete;
}

int SnapshotList(const SnapshotListArgs& args) {
  Result<std::unique_ptr<LocalStore>> store = OpenStore(args.store, LocalStore::Mode::kReadOnly);
  if (!store.ok()) return Fail("snapshot list", store.status());
  Result<std::vector<snapshot::SnapshotSummary>> list = (*store)->ListSnapshots();
  if (!list.ok()) return Fail("snapshot list", list.status());
  if (args.json) {
    json::array a;
    for (const auto& s : *list) a.push_back(ManifestJson(s.id, s.body));
    std::cout << json::serialize(a) << "\n";
    return kExitOk;
  }
  std::printf("%-12s  %-20s  %-16s  %10s  %12s  %s\n", "ID", "TIME (UTC)", "DATASET", "FILES",
              "SIZE", "LABELS");
  for (const auto& s : *list) {
    std::string labels;
    for (const auto& [k, v] : s.body.labels()) labels += (labels.empty() ? "" : ",") + k + "=" + v;
    const auto& d = s.body.datasets(0);
    std::printf("%-12s  %-20s  %-16s  %10s  %12s  %s\n", HexEncode(s.id).substr(0, 12).c_str(),
                IsoTime(s.created_unix_ns).c_str(), d.name().c_str(),
                Count(d.stats().files()).c_str(), HumanBytes(d.stats().bytes()).c_str(),
                labels.c_str());
  }
  return kExitOk;
}

int SnapshotShow(const SnapshotShowArgs& args) {
  Result<std::unique_ptr<LocalStore>> store = OpenStore(args.store, LocalStore::Mode::kReadOnly);
  if (!store.ok()) return Fail("snapshot show", store.status());
  Result<snapshot::SnapshotId> id = (*store)->ResolveSnapshot(args.snapshot);
  if (!id.ok()) return Fail("snapshot show", id.status());
  Result<snapshot::ParsedManifest> m = (*store)->LoadManifest(*id);
  if (!m.ok()) return Fail("snapshot show", m.status());
  json::object o = ManifestJson(*id, m->body);
  o["signer"] = HexEncode(m->signer);
  if (args.json) {
    std::cout << json::serialize(o) << "\n";
    return kExitOk;
  }
  const auto& b = m->body;
  std::cout << "snapshot   " << HexEncode(*id) << "\n"
            << "time       " << IsoTime(b.created_unix_ns()) << "\n"
            << "parent     " << (b.parent().empty() ? "-" : HexEncode(AsBytes(b.parent()))) << "\n"
            << "host       " << b.hostname() << "\n"
            << "signed by  " << HexEncode(m->signer) << "\n"
            << "keyset     " << HexEncode(AsBytes(b.keyset_id())) << "\n";
  for (const auto& [k, v] : b.labels()) std::cout << "label      " << k << "=" << v << "\n";
  for (const auto& d : b.datasets()) {
    std::cout << "dataset    " << d.name() << " (volume): " << Count(d.stats().files())
              << " files, " << Count(d.stats().directories()) << " directories, "
              << Count(d.stats().symlinks()) << " symlinks, " << HumanBytes(d.stats().bytes())
              << "\n";
    if (d.stats().inconsistent() > 0 || d.stats().skipped() > 0) {
      std::cout << "           " << d.stats().inconsistent() << " inconsistent, "
                << d.stats().skipped() << " skipped\n";
    }
  }
  std::cout << "chunks     " << Count(b.refs().count()) << " ("
            << HumanBytes(b.refs().sealed_bytes()) << " sealed)\n";
  return kExitOk;
}

}  // namespace ferry::ctl
