// Pre/post hooks: a dataset's commands run around its capture (freeze an
// application, take a filesystem snapshot, thaw). A hook is an argv run
// without a shell, with stdin from /dev/null and its output on the agent's
// stderr, in its own process group; one that outlives its timeout is killed
// (SIGTERM to the group, then SIGKILL after 2 s).
//
// Errors: kDeadlineExceeded (timed out), kAborted (non-zero exit or killed
// by a signal), kInternal (could not start); every message names the command.
// Thread-safety: thread-safe.
#pragma once

#include <map>
#include <string>

#include "core/status.h"
#include "edge-agent/agent_config.h"

namespace ferry::agent {

// Runs `hook` to completion. `env` is added to the agent's environment
// (FERRY_DATASET, FERRY_POLICY, FERRY_HOOK=pre|post, FERRY_DATASET_PATH).
Status RunHook(const Hook& hook, const std::map<std::string, std::string>& env);

}  // namespace ferry::agent
