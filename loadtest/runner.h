// Runs load levels: warm-up, then measured requests, closed loop (a fixed number in flight)
// or open loop (Poisson arrivals at a rate, at most `concurrency` in flight; arrivals that
// find no free slot wait in the client and are counted).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "loadtest/backend.h"
#include "loadtest/options.h"

namespace r1::loadtest {

struct Level {
  int64_t concurrency = 1;
  double rate = 0;  // 0 = closed loop
};

struct LevelResult {
  Level level;
  std::vector<RequestResult> results;
  double wall_s = 0;           // first send to last completion
  // The sending window: from the first send to the end of --duration (or to the last
  // completion when the level runs a number of requests). Tokens that arrive in it measure the
  // steady state, before the level drains.
  SteadyClock::time_point window_start, window_end;
  int64_t client_queued = 0;   // open loop: arrivals that waited for a free slot
};

// What the live progress line shows.
struct Progress {
  Level level;
  bool warmup = false;
  int64_t done = 0, in_flight = 0, failed = 0, target = 0;  // target 0 with --duration
  int64_t output_tokens = 0;
  double elapsed_s = 0, duration_s = 0;
};
using ProgressFn = std::function<void(const Progress&)>;

// Runs each level in turn against `target` (parsed from options.target). `progress`, when
// set, is called about twice a second from the calling thread.
absl::StatusOr<std::vector<LevelResult>> RunLoadTest(const Options& options,
                                                     const std::vector<Level>& levels,
                                                     const ProgressFn& progress = nullptr);

}  // namespace r1::loadtest
