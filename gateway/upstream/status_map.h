// The one place where status codes become HTTP status codes, OpenAI error types and metric
// labels. Parse errors arrive as absl::StatusCode, worker failures as grpc::StatusCode; the
// gRPC overloads convert through ToAbsl, the only place that relies on the two enums sharing
// the canonical numbering.
#pragma once

#include <string>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace r1::gw {

struct HttpErrorKind {
  unsigned http_status;
  const char* type;  // OpenAI error "type"
};

absl::StatusCode ToAbsl(grpc::StatusCode code);

HttpErrorKind HttpForStatus(absl::StatusCode code);
HttpErrorKind HttpForStatus(grpc::StatusCode code);

// Short lowercase name for metrics labels and error codes ("unavailable", ...).
std::string CodeLabel(absl::StatusCode code);
std::string CodeLabel(grpc::StatusCode code);

}  // namespace r1::gw
