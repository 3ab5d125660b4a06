// How the next token is chosen: the one set of sampling options, from the gateway's parsed
// request to the worker's sampler. Torch-free and gRPC-free; the proto's SamplingParams is
// converted to and from it only at the gRPC boundary (gateway: the attempt's request; worker:
// service/validate.cc).
#pragma once

#include <cstdint>
#include <optional>

namespace r1 {

struct SamplingOptions {
  float temperature = 0.f;         // 0: greedy
  float top_p = 1.f;               // 1 (or 0): off
  int32_t top_k = 0;               // 0: off
  float min_p = 0.f;               // 0: off
  float repetition_penalty = 1.f;  // 1 (or 0): off; applies to prompt and output tokens
  float presence_penalty = 0.f;    // applies to output tokens
  float frequency_penalty = 0.f;   // applies to output tokens
  std::optional<uint64_t> seed;    // makes sampling repeatable; unset: a random stream
  bool logprobs = false;           // report the chosen token's log-probability
  int32_t top_logprobs = 0;        // and this many alternatives, 0..20

  bool greedy() const { return temperature <= 0.f; }
  bool penalised() const {
    return (repetition_penalty > 0.f && repetition_penalty != 1.f) || presence_penalty != 0.f ||
           frequency_penalty != 0.f;
  }
};

}  // namespace r1
