// Everything one load-test run is configured by (filled from r1-loadtest's flags).
#pragma once

#include <cstdint>
#include <string>

#include "loadtest/distribution.h"

namespace r1::loadtest {

struct Options {
  std::string target = "http://127.0.0.1:8080";
  // "chat" (POST /v1/chat/completions) or "completions" (POST /v1/completions). HTTP only.
  std::string endpoint = "chat";
  std::string model;    // the "model" field; empty: the first of the target's /v1/models, else "default"
  std::string api_key;  // sent as "Authorization: Bearer KEY"
  int64_t concurrency = 8;  // most requests in flight
  double rate = 0;          // requests per second, Poisson arrivals; 0 = closed loop
  int64_t requests = 100;   // measured requests (when duration_s == 0)
  double duration_s = 0;    // when > 0: send for this long instead of a request count
  int64_t warmup = 0;       // requests run (and not measured) before each level
  LengthDist prompt_len = LengthDist::Fixed(64);
  LengthDist output_len = LengthDist::Fixed(64);
  uint64_t seed = 1;
  double timeout_s = 300;  // per request
  bool ignore_eos = true;  // ask for exactly max_tokens tokens
  bool keep_alive = false; // HTTP: reuse connections between requests
  double temperature = 0;
  int64_t threads = 2;     // I/O threads
  int64_t grpc_channels = 4;
  bool progress = false;   // live progress line on stderr
};

}  // namespace r1::loadtest
