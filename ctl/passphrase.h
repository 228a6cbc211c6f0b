// Where ferryctl gets a keyset passphrase: --passphrase-file, then
// FERRY_PASSPHRASE, then a prompt on the terminal (echo off).
#pragma once

#include <string>

#include "core/status.h"

namespace ferry::ctl {

// `confirm`: ask twice on a terminal (new keysets). kInvalidArgument when no
// source is available or the passphrase is empty.
Result<std::string> ReadPassphrase(const std::string& passphrase_file, bool confirm);

// Overwrites a string holding a secret.
void WipeString(std::string& s);

}  // namespace ferry::ctl
