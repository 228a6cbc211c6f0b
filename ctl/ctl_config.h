// CtlConfig: ferryctl's named hubs ("contexts", as kubectl has them), kept in
// ~/.config/ferry/config.yaml (docs/format/ctl-config.md):
//
//   apiVersion: ferry/v1
//   kind: Config
//   currentHub: prod
//   hubs:
//     - name: prod
//       url: http://hub.example:7070
//       token: fry_...            # an API token (the file is mode 0600)
//       fingerprint: fry1:...     # the hub's pinned link key, optional
//       tenant: acme              # the default tenant, optional
//
// Which hub a command talks to: --hub (a context name or a URL), else
// FERRY_HUB (same), else the current context. The token: --token, else
// FERRY_TOKEN, else the context's. The tenant: --tenant, else FERRY_TENANT,
// else the context's. Errors name the file, the key and the line.
//
// Thread-safety: thread-compatible.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace ferry::ctl {

struct HubContext {
  std::string name;
  std::string url;
  std::string token;
  std::string fingerprint;
  std::string tenant;
};

struct CtlConfig {
  std::string path;  // where it was read from / is written to
  std::string current_hub;
  std::vector<HubContext> hubs;

  // $FERRY_CONFIG, else $XDG_CONFIG_HOME/ferry/config.yaml, else
  // $HOME/.config/ferry/config.yaml.
  static std::string DefaultPath();
  // A missing file is an empty config (no hubs).
  static Result<CtlConfig> Load(const std::string& path);
  // Writes atomically with mode 0600, creating the folder (0700) if needed.
  Status Save() const;

  const HubContext* Find(const std::string& name) const;
  // Adds or replaces the context of that name.
  void Upsert(HubContext context);
};

// What the command line and the environment say (empty = not given).
struct HubSelection {
  std::string hub;     // --hub
  std::string token;   // --token
  std::string tenant;  // --tenant
};

struct ResolvedHub {
  std::string context;  // the context's name, "" when given as a URL
  std::string url;
  std::string token;
  std::string fingerprint;
  std::string tenant;
};

// Applies the precedence above. kInvalidArgument with what to run when no
// hub is known; kNotFound for an unknown context name.
Result<ResolvedHub> ResolveHub(const CtlConfig& config, const HubSelection& flags);

// Checks a context name: 1-63 of a-z, 0-9, '-', '_', '.'.
Status CheckContextName(const std::string& name);

}  // namespace ferry::ctl
