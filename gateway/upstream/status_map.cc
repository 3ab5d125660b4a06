#include "gateway/upstream/status_map.h"

#include <cctype>

#include "absl/status/status.h"

namespace r1::gw {

HttpErrorKind HttpForStatusCode(int code) {
  switch (static_cast<absl::StatusCode>(code)) {
    case absl::StatusCode::kOk: return {200, ""};
    case absl::StatusCode::kCancelled: return {499, "invalid_request_error"};
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange: return {400, "invalid_request_error"};
    case absl::StatusCode::kNotFound: return {404, "invalid_request_error"};
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted: return {409, "invalid_request_error"};
    // Only a worker gives these, refusing the gateway's own credentials (--worker-tls-*,
    // --worker-token-file): the gateway's fault, not the client's, whose key was fine.
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated: return {502, "server_error"};
    case absl::StatusCode::kResourceExhausted: return {429, "rate_limit_error"};
    case absl::StatusCode::kUnimplemented: return {501, "server_error"};
    case absl::StatusCode::kUnavailable: return {503, "server_error"};
    case absl::StatusCode::kDeadlineExceeded: return {504, "server_error"};
    default: return {500, "server_error"};
  }
}

bool IsRetryableCode(int code) {
  auto c = static_cast<absl::StatusCode>(code);
  return c == absl::StatusCode::kUnavailable || c == absl::StatusCode::kResourceExhausted;
}

std::string CodeLabel(int code) {
  std::string s = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace r1::gw
