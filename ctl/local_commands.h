// ferryctl commands that work on a local store and keyset files.
//
// Every command returns its process exit code (ctl/exit_codes.h). Errors are
// printed to stderr as "ferryctl: <what failed>: <why>".
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ctl/exit_codes.h"
#include "snapshot/keyset.h"
#include "snapshot/local_store.h"

namespace ferry::ctl {

struct KeysInitArgs {
  std::string out;
  std::string passphrase_file;
  uint64_t argon2_memory_mib = sodium::Argon2Params{}.memlimit >> 20;  // docs/adr/0005
  uint64_t argon2_ops = sodium::Argon2Params{}.opslimit;
};
int KeysInit(const KeysInitArgs& args);

struct ExportAgentArgs {
  std::string keyset;
  std::string out;
};
int KeysExportAgent(const ExportAgentArgs& args);

struct SnapshotCreateArgs {
  std::string store;
  std::string keyset;
  std::string path;
  std::vector<std::string> labels;  // k=v
  std::string dataset_name;
  bool json = false;
  bool no_cache = false;
  bool delta = false;
  size_t workers = 0;
};
int SnapshotCreate(const SnapshotCreateArgs& args);

struct SnapshotListArgs {
  std::string store;
  bool json = false;
};
int SnapshotList(const SnapshotListArgs& args);

struct SnapshotShowArgs {
  std::string store;
  std::string snapshot;
  bool json = false;
};
int SnapshotShow(const SnapshotShowArgs& args);

// Shared with restore_commands.cc.
// A keyset or agent key file (kNotFound naming the file when absent).
Result<std::unique_ptr<snapshot::Keyset>> LoadKeyset(const std::string& path);
// A tenant keyset unlocked with the passphrase (ReadPassphrase's sources).
Result<std::unique_ptr<snapshot::Keyset>> LoadUnlockedKeyset(const std::string& path,
                                                             const std::string& passphrase_file);
// A local store opened for one command (pinned reads).
Result<std::unique_ptr<snapshot::LocalStore>> OpenStore(const std::string& dir,
                                                        snapshot::LocalStore::Mode mode);

}  // namespace ferry::ctl
