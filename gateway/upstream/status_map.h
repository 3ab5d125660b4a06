// The one place where status codes (absl and gRPC share the canonical numbering) become
// HTTP status codes and OpenAI error types, and where retryable upstream failures are named.
#pragma once

#include <string>

namespace r1::gw {

struct HttpErrorKind {
  unsigned http_status;
  const char* type;  // OpenAI error "type"
};

// `code` is an absl::StatusCode or grpc::StatusCode value.
HttpErrorKind HttpForStatusCode(int code);

// Upstream failures worth another attempt (before the first token): UNAVAILABLE (connection
// failure, worker dying or draining) and RESOURCE_EXHAUSTED (queue full).
bool IsRetryableCode(int code);

// Short lowercase name for metrics labels ("unavailable", "resource_exhausted", ...).
std::string CodeLabel(int code);

}  // namespace r1::gw
