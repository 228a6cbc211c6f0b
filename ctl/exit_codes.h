// ferryctl's exit codes (also in `ferryctl --help` and docs/operator-guide.md)
// and how an error becomes one.
#pragma once

#include <string>

#include "core/status.h"

namespace ferry::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;        // anything not below
inline constexpr int kExitUsage = 2;        // bad flags, arguments or input files
inline constexpr int kExitIncomplete = 3;   // snapshot made, some files not read consistently
inline constexpr int kExitNotFound = 4;     // unknown snapshot, agent, policy, tenant, file
inline constexpr int kExitRefused = 5;      // token refused, permission denied, wrong passphrase,
                                            // pinned hub key mismatch
inline constexpr int kExitUnavailable = 6;  // hub unreachable or timed out: retry later
inline constexpr int kExitDamaged = 7;      // verify or restore found damaged or forged data

inline constexpr char kExitCodesHelp[] =
    "Exit codes: 0 ok, 1 error, 2 usage or bad input, 3 snapshot made but some files could not "
    "be read consistently, 4 not found, 5 refused (token, permission, passphrase, pinned hub "
    "key), 6 hub unreachable or timed out (retry), 7 damaged or forged data.";

// The exit code for an error of this kind.
int ExitCodeFor(const Status& s);

// Prints "ferryctl: <what>: <message>" to stderr and returns ExitCodeFor(s).
int Fail(const std::string& what, const Status& s);

}  // namespace ferry::ctl
