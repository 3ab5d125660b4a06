// What one load-test request is, what came of it, and the interface both transports
// (HTTP/SSE to the gateway, gRPC to a worker) implement.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace r1::loadtest {

using SteadyClock = std::chrono::steady_clock;

struct RequestSpec {
  uint64_t index = 0;
  std::string prompt;
  int64_t prompt_words = 0;
  int64_t max_tokens = 0;
};

struct RequestResult {
  bool ok = false;
  // Why it failed: "connect", "timeout", "disconnected", "http_503", "grpc_unavailable",
  // "stream_error", "bad_response", ... Empty when ok.
  std::string error_kind;
  std::string error_detail;
  SteadyClock::time_point start, first_token, end;
  bool got_token = false;
  // Gaps between tokens, in seconds (a message carrying k tokens gives k gaps of 1/k of its
  // delay each).
  std::vector<double> itl_s;
  // Output tokens: the server's usage count when it sent one, else the tokens counted.
  int64_t output_tokens = 0;
  int64_t counted_tokens = 0;
  int64_t prompt_tokens = -1;  // -1 when the server did not say
  int64_t prompt_words = 0;    // of the request's generated prompt (RequestSpec::prompt_words)

  // Records a message carrying `tokens` new tokens that arrived at `t`.
  void OnTokens(SteadyClock::time_point t, int64_t tokens) {
    if (tokens <= 0) return;
    if (!got_token) {
      got_token = true;
      first_token = t;
    } else {
      double gap = std::chrono::duration<double>(t - last_token).count();
      for (int64_t i = 0; i < tokens; ++i) itl_s.push_back(gap / static_cast<double>(tokens));
    }
    last_token = t;
    counted_tokens += tokens;
  }
  void Fail(std::string kind, std::string detail) {
    ok = false;
    error_kind = std::move(kind);
    error_detail = std::move(detail);
  }

  SteadyClock::time_point last_token;
};

using DoneCallback = std::function<void(RequestResult)>;

class Backend {
 public:
  virtual ~Backend() = default;
  // Starts one request; `done` runs exactly once, on any thread, when it ends.
  virtual void Start(const RequestSpec& spec, DoneCallback done) = 0;
};

// Where to send load: "http://HOST:PORT" (the gateway) or "grpc://HOST:PORT" (a worker).
struct Target {
  std::string scheme;  // "http" or "grpc"
  std::string host;
  std::string port;
  std::string base_path;  // for http: anything after HOST:PORT, without a trailing '/'
};
absl::StatusOr<Target> ParseTarget(const std::string& text);

}  // namespace r1::loadtest
