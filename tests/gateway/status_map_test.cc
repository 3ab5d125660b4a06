#include <gtest/gtest.h>

#include "gateway/upstream/status_map.h"

namespace r1::gw {
namespace {

TEST(StatusMap, GrpcCodesToHttp) {
  EXPECT_EQ(HttpForStatus(grpc::StatusCode::INVALID_ARGUMENT).http_status, 400u);
  EXPECT_EQ(HttpForStatus(grpc::StatusCode::RESOURCE_EXHAUSTED).http_status, 429u);
  EXPECT_EQ(HttpForStatus(grpc::StatusCode::UNAVAILABLE).http_status, 503u);
  EXPECT_EQ(HttpForStatus(grpc::StatusCode::DEADLINE_EXCEEDED).http_status, 504u);
  EXPECT_EQ(HttpForStatus(grpc::StatusCode::INTERNAL).http_status, 500u);
  // A worker refusing the gateway's credentials is not the client's fault.
  EXPECT_EQ(HttpForStatus(grpc::StatusCode::UNAUTHENTICATED).http_status, 502u);
  EXPECT_EQ(HttpForStatus(grpc::StatusCode::PERMISSION_DENIED).http_status, 502u);
  EXPECT_STREQ(HttpForStatus(grpc::StatusCode::INVALID_ARGUMENT).type, "invalid_request_error");
}

TEST(StatusMap, AbslCodesToHttp) {
  EXPECT_EQ(HttpForStatus(absl::StatusCode::kInvalidArgument).http_status, 400u);
  EXPECT_EQ(HttpForStatus(absl::StatusCode::kResourceExhausted).http_status, 429u);
  EXPECT_STREQ(HttpForStatus(absl::StatusCode::kUnavailable).type, "server_error");
}

TEST(StatusMap, EveryGrpcCodeMapsToItsAbslTwin) {
  // ToAbsl is the one place that relies on the shared numbering: check it code by code.
  const std::pair<grpc::StatusCode, absl::StatusCode> pairs[] = {
      {grpc::StatusCode::OK, absl::StatusCode::kOk},
      {grpc::StatusCode::CANCELLED, absl::StatusCode::kCancelled},
      {grpc::StatusCode::UNKNOWN, absl::StatusCode::kUnknown},
      {grpc::StatusCode::INVALID_ARGUMENT, absl::StatusCode::kInvalidArgument},
      {grpc::StatusCode::DEADLINE_EXCEEDED, absl::StatusCode::kDeadlineExceeded},
      {grpc::StatusCode::NOT_FOUND, absl::StatusCode::kNotFound},
      {grpc::StatusCode::ALREADY_EXISTS, absl::StatusCode::kAlreadyExists},
      {grpc::StatusCode::PERMISSION_DENIED, absl::StatusCode::kPermissionDenied},
      {grpc::StatusCode::RESOURCE_EXHAUSTED, absl::StatusCode::kResourceExhausted},
      {grpc::StatusCode::FAILED_PRECONDITION, absl::StatusCode::kFailedPrecondition},
      {grpc::StatusCode::ABORTED, absl::StatusCode::kAborted},
      {grpc::StatusCode::OUT_OF_RANGE, absl::StatusCode::kOutOfRange},
      {grpc::StatusCode::UNIMPLEMENTED, absl::StatusCode::kUnimplemented},
      {grpc::StatusCode::INTERNAL, absl::StatusCode::kInternal},
      {grpc::StatusCode::UNAVAILABLE, absl::StatusCode::kUnavailable},
      {grpc::StatusCode::DATA_LOSS, absl::StatusCode::kDataLoss},
      {grpc::StatusCode::UNAUTHENTICATED, absl::StatusCode::kUnauthenticated},
  };
  for (const auto& [g, a] : pairs) EXPECT_EQ(ToAbsl(g), a) << g;
}

TEST(StatusMap, Labels) {
  EXPECT_EQ(CodeLabel(grpc::StatusCode::RESOURCE_EXHAUSTED), "resource_exhausted");
  EXPECT_EQ(CodeLabel(grpc::StatusCode::DEADLINE_EXCEEDED), "deadline_exceeded");
  EXPECT_EQ(CodeLabel(absl::StatusCode::kInvalidArgument), "invalid_argument");
}

}  // namespace
}  // namespace r1::gw
