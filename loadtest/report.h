// Turns a level's request results into the figures r1-loadtest prints: latency percentiles
// (time to first token, inter-token latency, end to end), throughput and errors by kind.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <boost/json/value.hpp>

#include "loadtest/options.h"
#include "loadtest/runner.h"
#include "loadtest/stats.h"

namespace r1::loadtest {

struct LevelReport {
  Level level;
  int64_t sent = 0, succeeded = 0, failed = 0;
  std::map<std::string, int64_t> errors;             // kind -> count
  std::map<std::string, std::string> error_samples;  // kind -> first message
  double wall_s = 0;
  double requests_per_s = 0;       // succeeded requests per second
  int64_t output_tokens = 0;       // of succeeded requests
  double output_tokens_per_s = 0;
  // Tokens (of every request, finished or not) that arrived within the sending window, per
  // second of it: the steady-state rate, without the drain at the end of a --duration level.
  double window_output_tokens_per_s = 0;
  int64_t prompt_tokens = 0;       // as reported by the server (0 when it does not say)
  // The mean context of the tokens counted in window_output_tokens_per_s: each token's keys,
  // its request's prompt tokens plus the output tokens before it. A request whose stream ended
  // without a usage count (cut by --timeout, failed) counts its prompt at the level's prompt
  // tokens per word; 0 when no request reported its prompt tokens. It names the decode batch's
  // context that the level ran at (the R1-shaped level's long outputs put it far above the
  // prompts').
  double window_mean_context_tokens = 0;
  int64_t client_queued = 0;
  // Over succeeded requests. TPOT (time per output token) is per request: from the first
  // to the last token, divided by the output tokens after the first (the server's count, so
  // it is right even when one chunk carries several tokens).
  Summary ttft_ms, itl_ms, tpot_ms, e2e_ms;
};

LevelReport MakeReport(const LevelResult& result);

// The human-readable report: a header, then one block per level.
std::string FormatText(const Options& options, const std::vector<LevelReport>& reports);
// {"target": ..., "endpoint": ..., "prompt_len": ..., "output_len": ..., "runs": [ {...} ]}
boost::json::value ToJson(const Options& options, const std::vector<LevelReport>& reports);

}  // namespace r1::loadtest
