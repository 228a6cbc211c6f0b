// ferryctl restore and verify, from a hub (HubChunkSource: chunks over HTTP,
// decrypted and checked here) or from a local store (--store).
#pragma once

#include <string>

#include "ctl/hub_commands.h"

namespace ferry::ctl {

struct RestoreArgs {
  HubArgs hub;               // used when `store` is empty
  HubSnapshotFilter filter;  // agent/dataset for "latest" at a hub
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
  HubArgs hub;
  HubSnapshotFilter filter;
  std::string store;
  std::string keyset;
  std::string snapshot;
  std::string passphrase_file;
  bool json = false;
  size_t workers = 0;
};
int Verify(const VerifyArgs& args);

}  // namespace ferry::ctl
