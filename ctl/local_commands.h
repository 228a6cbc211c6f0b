// ferryctl commands that work on a local store and keyset files.
//
// Every command returns its process exit code: 0 ok, 1 error, 3 when a
// snapshot completed but listed files it could not read consistently (or
// could not read at all). Errors are printed to stderr as
// "ferryctl: <what failed>: <why>".
#pragma once

#include <map>
#include <string>
#include <vector>

namespace ferry::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitIncomplete = 3;

struct KeysInitArgs {
  std::string out;
  std::string passphrase_file;
  uint64_t argon2_memory_mib = 64;  // RFC 9106 second recommended option (docs/adr/0004)
  uint64_t argon2_ops = 3;
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

struct RestoreArgs {
  std::string store;
  std::string keyset;
  std::string snapshot;
  std::string to;
  std::string path;
  std::string passphrase_file;
  bool force = false;
  bool allow_external_symlinks = false;
  bool json = false;
  size_t workers = 0;
};
int Restore(const RestoreArgs& args);

struct VerifyArgs {
  std::string store;
  std::string keyset;
  std::string snapshot;
  std::string passphrase_file;
  bool json = false;
  size_t workers = 0;
};
int Verify(const VerifyArgs& args);

}  // namespace ferry::ctl
