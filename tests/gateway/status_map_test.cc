#include <gtest/gtest.h>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "gateway/upstream/status_map.h"

namespace r1::gw {
namespace {

TEST(StatusMap, GrpcCodesToHttp) {
  EXPECT_EQ(HttpForStatusCode(grpc::StatusCode::INVALID_ARGUMENT).http_status, 400u);
  EXPECT_EQ(HttpForStatusCode(grpc::StatusCode::RESOURCE_EXHAUSTED).http_status, 429u);
  EXPECT_EQ(HttpForStatusCode(grpc::StatusCode::UNAVAILABLE).http_status, 503u);
  EXPECT_EQ(HttpForStatusCode(grpc::StatusCode::DEADLINE_EXCEEDED).http_status, 504u);
  EXPECT_EQ(HttpForStatusCode(grpc::StatusCode::INTERNAL).http_status, 500u);
  // A worker refusing the gateway's credentials is not the client's fault.
  EXPECT_EQ(HttpForStatusCode(grpc::StatusCode::UNAUTHENTICATED).http_status, 502u);
  EXPECT_EQ(HttpForStatusCode(grpc::StatusCode::PERMISSION_DENIED).http_status, 502u);
  EXPECT_STREQ(HttpForStatusCode(grpc::StatusCode::INVALID_ARGUMENT).type, "invalid_request_error");
  // absl codes share the numbering.
  EXPECT_EQ(HttpForStatusCode(static_cast<int>(absl::StatusCode::kInvalidArgument)).http_status, 400u);
}

TEST(StatusMap, Retryable) {
  EXPECT_TRUE(IsRetryableCode(grpc::StatusCode::UNAVAILABLE));
  EXPECT_TRUE(IsRetryableCode(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_FALSE(IsRetryableCode(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_FALSE(IsRetryableCode(grpc::StatusCode::INTERNAL));
  EXPECT_EQ(CodeLabel(grpc::StatusCode::RESOURCE_EXHAUSTED), "resource_exhausted");
}

}  // namespace
}  // namespace r1::gw
