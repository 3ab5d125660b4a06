#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "loadtest/backend.h"

namespace r1::loadtest {

absl::StatusOr<Target> ParseTarget(const std::string& text) {
  Target t;
  std::string rest;
  for (const char* scheme : {"http", "grpc"}) {
    std::string prefix = std::string(scheme) + "://";
    if (absl::StartsWith(text, prefix)) {
      t.scheme = scheme;
      rest = text.substr(prefix.size());
    }
  }
  if (t.scheme.empty()) {
    return absl::InvalidArgumentError("bad --target '" + text +
                                      "' (want http://HOST:PORT or grpc://HOST:PORT)");
  }
  size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    t.base_path = rest.substr(slash);
    rest.resize(slash);
    while (!t.base_path.empty() && t.base_path.back() == '/') t.base_path.pop_back();
    if (t.scheme == "grpc" && !t.base_path.empty()) {
      return absl::InvalidArgumentError("bad --target '" + text + "' (grpc:// takes no path)");
    }
  }
  size_t colon = rest.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(rest.substr(colon + 1), &port) || port <= 0 || port > 65535) {
    return absl::InvalidArgumentError("bad --target '" + text + "' (want HOST:PORT after " +
                                      t.scheme + "://)");
  }
  t.host = rest.substr(0, colon);
  if (t.host.size() > 2 && t.host.front() == '[' && t.host.back() == ']') {
    t.host = t.host.substr(1, t.host.size() - 2);
  }
  t.port = std::to_string(port);
  return t;
}

}  // namespace r1::loadtest
