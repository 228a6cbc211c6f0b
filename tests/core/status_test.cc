#include "core/status.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace ferry {
namespace {

Result<int> Half(int v) {
  if (v % 2 != 0) return InvalidArgumentError("odd");
  return v / 2;
}

Result<int> Quarter(int v) {
  ASSIGN_OR_RETURN(int h, Half(v));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(StatusTest, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status s = DataLossError("pack x: bad trailer");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.ToString(), "DATA_LOSS: pack x: bad trailer");
  EXPECT_EQ(s.WithContext("verify").message(), "verify: pack x: bad trailer");
}

TEST(StatusTest, AssignOrReturnPropagatesTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST(StatusTest, ResultFromOkStatusIsAnInternalError) {
  Result<int> r{OkStatus()};
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

TEST(StatusTest, ErrnoMapsToRetryableOrFatalCodes) {
  EXPECT_EQ(ErrnoToStatus(ENOENT, "open").code(), StatusCode::kNotFound);
  EXPECT_EQ(ErrnoToStatus(ENOSPC, "write").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrnoToStatus(EIO, "fsync").code(), StatusCode::kDataLoss);
  EXPECT_EQ(ErrnoToStatus(EAGAIN, "read").code(), StatusCode::kUnavailable);
}

TEST(StatusTest, EveryCodeHasItsCanonicalName) {
  struct Case {
    StatusCode code;
    std::string_view name;
  };
  const Case cases[] = {
      {StatusCode::kOk, "OK"},
      {StatusCode::kCancelled, "CANCELLED"},
      {StatusCode::kUnknown, "UNKNOWN"},
      {StatusCode::kInvalidArgument, "INVALID_ARGUMENT"},
      {StatusCode::kDeadlineExceeded, "DEADLINE_EXCEEDED"},
      {StatusCode::kNotFound, "NOT_FOUND"},
      {StatusCode::kAlreadyExists, "ALREADY_EXISTS"},
      {StatusCode::kPermissionDenied, "PERMISSION_DENIED"},
      {StatusCode::kResourceExhausted, "RESOURCE_EXHAUSTED"},
      {StatusCode::kFailedPrecondition, "FAILED_PRECONDITION"},
      {StatusCode::kAborted, "ABORTED"},
      {StatusCode::kOutOfRange, "OUT_OF_RANGE"},
      {StatusCode::kUnimplemented, "UNIMPLEMENTED"},
      {StatusCode::kInternal, "INTERNAL"},
      {StatusCode::kUnavailable, "UNAVAILABLE"},
      {StatusCode::kDataLoss, "DATA_LOSS"},
      {StatusCode::kUnauthenticated, "UNAUTHENTICATED"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(StatusCodeName(c.code), c.name);
  }
  EXPECT_EQ(StatusCodeName(static_cast<StatusCode>(99)), "UNKNOWN");
}

TEST(StatusTest, NamedConstructorsUseTheirCode) {
  struct Case {
    Status status;
    StatusCode code;
  };
  const Case cases[] = {
      {InvalidArgumentError("m"), StatusCode::kInvalidArgument},
      {NotFoundError("m"), StatusCode::kNotFound},
      {AlreadyExistsError("m"), StatusCode::kAlreadyExists},
      {PermissionDeniedError("m"), StatusCode::kPermissionDenied},
      {ResourceExhaustedError("m"), StatusCode::kResourceExhausted},
      {FailedPreconditionError("m"), StatusCode::kFailedPrecondition},
      {AbortedError("m"), StatusCode::kAborted},
      {OutOfRangeError("m"), StatusCode::kOutOfRange},
      {UnimplementedError("m"), StatusCode::kUnimplemented},
      {InternalError("m"), StatusCode::kInternal},
      {UnavailableError("m"), StatusCode::kUnavailable},
      {DataLossError("m"), StatusCode::kDataLoss},
      {UnauthenticatedError("m"), StatusCode::kUnauthenticated},
      {CancelledError("m"), StatusCode::kCancelled},
      {DeadlineExceededError("m"), StatusCode::kDeadlineExceeded},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(StatusCodeName(c.code));
    EXPECT_EQ(c.status.code(), c.code);
    EXPECT_EQ(c.status.message(), "m");
    EXPECT_FALSE(c.status.ok());
  }
}

TEST(StatusTest, WithContextOnOkStaysOk) {
  Status s = OkStatus().WithContext("ignored");
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.message(), "");
}

Status FailIfNegative(int v) {
  if (v < 0) return OutOfRangeError("negative");
  return OkStatus();
}

Status CheckBoth(int a, int b) {
  RETURN_IF_ERROR(FailIfNegative(a));
  RETURN_IF_ERROR(Half(b));  // a Result works too
  return OkStatus();
}

TEST(StatusTest, ReturnIfErrorReturnsTheFirstFailure) {
  EXPECT_TRUE(CheckBoth(1, 2).ok());
  EXPECT_EQ(CheckBoth(-1, 3).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(CheckBoth(1, 3).code(), StatusCode::kInvalidArgument);
}

TEST(StatusTest, ErrnoMessageNamesTheOperation) {
  Status s = ErrnoToStatus(ENOENT, "open /x");
  EXPECT_EQ(s.message().rfind("open /x: ", 0), 0u) << s.message();
  EXPECT_EQ(ErrnoToStatus(EEXIST, "mkdir").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrnoToStatus(EACCES, "open").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoToStatus(EDQUOT, "write").code(), StatusCode::kResourceExhausted);
}

TEST(StatusTest, EqualityComparesCodeAndMessage) {
  EXPECT_EQ(DataLossError("a"), DataLossError("a"));
  EXPECT_FALSE(DataLossError("a") == DataLossError("b"));
  EXPECT_FALSE(DataLossError("a") == InternalError("a"));
  EXPECT_EQ(OkStatus(), Status());
}

}  // namespace
}  // namespace ferry

namespace ferry {
namespace {

Result<int> FailingForLifetimeTest() { return NotFoundError("gone"); }

Status ReturnsStatusOfATemporary() {
  RETURN_IF_ERROR(FailingForLifetimeTest().status());
  return OkStatus();
}

// RETURN_IF_ERROR(F().status()) must not keep a reference into the
// temporary Result (ASan: stack-use-after-scope before the fix).
TEST(ResultTest, StatusOfATemporaryOutlivesIt) {
  Status s = ReturnsStatusOfATemporary();
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "gone");
}

}  // namespace
}  // namespace ferry
