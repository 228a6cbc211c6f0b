#include "ctl/exit_codes.h"

#include <iostream>

namespace ferry::ctl {

int ExitCodeFor(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk:
      return kExitOk;
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return kExitUsage;
    case StatusCode::kNotFound:
      return kExitNotFound;
    case StatusCode::kUnauthenticated:
    case StatusCode::kPermissionDenied:
      return kExitRefused;
    case StatusCode::kUnavailable:
    case StatusCode::kDeadlineExceeded:
      return kExitUnavailable;
    case StatusCode::kDataLoss:
      return kExitDamaged;
    default:
      return kExitError;
  }
}

int Fail(const std::string& what, const Status& s) {
  std::cerr << "ferryctl: " << what << ": " << s.message() << "\n";
  return ExitCodeFor(s);
}

}  // namespace ferry::ctl
