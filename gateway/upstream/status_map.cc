#include "gateway/upstream/status_map.h"

#include <cctype>

namespace r1::gw {

absl::StatusCode ToAbsl(grpc::StatusCode code) {
  // grpc::StatusCode and absl::StatusCode both follow google.rpc.Code.
  return static_cast<absl::StatusCode>(static_cast<int>(code));
}

HttpErrorKind HttpForStatus(absl::StatusCode code) {
  switch (code) {
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

HttpErrorKind HttpForStatus(grpc::StatusCode code) { return HttpForStatus(ToAbsl(code)); }

std::string CodeLabel(absl::StatusCode code) {
  std::string s = absl::StatusCodeToString(code);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string CodeLabel(grpc::StatusCode code) { return CodeLabel(ToAbsl(code)); }

}  // namespace r1::gw
