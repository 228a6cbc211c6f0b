#include "core/status.h"

#include <cerrno>
#include <cstring>

namespace ferry {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kCancelled:
      return "CANCELLED";
    case StatusCode::kUnknown:
      return "UNKNOWN";
    case StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case StatusCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case StatusCode::kNotFound:
      return "NOT_FOUND";
    case StatusCode::kAlreadyExists:
      return "ALREADY_EXISTS";
    case StatusCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case StatusCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case StatusCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case StatusCode::kAborted:
      return "ABORTED";
    case StatusCode::kOutOfRange:
      return "OUT_OF_RANGE";
    case StatusCode::kUnimplemented:
      return "UNIMPLEMENTED";
    case StatusCode::kInternal:
      return "INTERNAL";
    case StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case StatusCode::kDataLoss:
      return "DATA_LOSS";
    case StatusCode::kUnauthenticated:
      return "UNAUTHENTICATED";
  }
  return "UNKNOWN";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(StatusCodeName(code_));
  out += ": ";
  out += message_;
  return out;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string msg(context);
  msg += ": ";
  msg += message_;
  return Status(code_, std::move(msg));
}

#define FERRY_DEFINE_ERROR(fn, code) \
  Status fn(std::string message) { return Status(StatusCode::code, std::move(message)); }
FERRY_DEFINE_ERROR(InvalidArgumentError, kInvalidArgument)
FERRY_DEFINE_ERROR(NotFoundError, kNotFound)
FERRY_DEFINE_ERROR(AlreadyExistsError, kAlreadyExists)
FERRY_DEFINE_ERROR(PermissionDeniedError, kPermissionDenied)
FERRY_DEFINE_ERROR(ResourceExhaustedError, kResourceExhausted)
FERRY_DEFINE_ERROR(FailedPreconditionError, kFailedPrecondition)
FERRY_DEFINE_ERROR(AbortedError, kAborted)
FERRY_DEFINE_ERROR(OutOfRangeError, kOutOfRange)
FERRY_DEFINE_ERROR(UnimplementedError, kUnimplemented)
FERRY_DEFINE_ERROR(InternalError, kInternal)
FERRY_DEFINE_ERROR(UnavailableError, kUnavailable)
FERRY_DEFINE_ERROR(DataLossError, kDataLoss)
FERRY_DEFINE_ERROR(UnauthenticatedError, kUnauthenticated)
FERRY_DEFINE_ERROR(CancelledError, kCancelled)
FERRY_DEFINE_ERROR(DeadlineExceededError, kDeadlineExceeded)
#undef FERRY_DEFINE_ERROR

Status ErrnoToStatus(int err, std::string_view what) {
  StatusCode code;
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      code = StatusCode::kNotFound;
      break;
    case EEXIST:
    case ENOTEMPTY:
      code = StatusCode::kAlreadyExists;
      break;
    case EACCES:
    case EPERM:
    case EROFS:
      code = StatusCode::kPermissionDenied;
      break;
    case ENOSPC:
    case EDQUOT:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case EFBIG:
      code = StatusCode::kResourceExhausted;
      break;
    case EINVAL:
    case ENAMETOOLONG:
    case ELOOP:
    case EISDIR:
      code = StatusCode::kInvalidArgument;
      break;
    case EAGAIN:
    case EINTR:
    case EBUSY:
    case ETIMEDOUT:
    case ECONNREFUSED:
    case ECONNRESET:
      code = StatusCode::kUnavailable;
      break;
    case EIO:
      code = StatusCode::kDataLoss;
      break;
    default:
      code = StatusCode::kUnknown;
      break;
  }
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(err);
  return Status(code, std::move(msg));
}

}  // namespace ferry
