#include "loadtest/report.h"

#include <cstdio>

#include <boost/json.hpp>

#include "absl/strings/str_format.h"

namespace r1::loadtest {
namespace json = boost::json;

LevelReport MakeReport(const LevelResult& result) {
  LevelReport r;
  r.level = result.level;
  const double window_s = std::chrono::duration<double>(result.window_end - result.window_start).count();
  // Prompt tokens per word over the requests that reported both, for those that did not.
  int64_t known_tokens = 0, known_words = 0;
  for (const RequestResult& q : result.results) {
    if (q.prompt_tokens > 0 && q.prompt_words > 0) {
      known_tokens += q.prompt_tokens;
      known_words += q.prompt_words;
    }
  }
  const double tokens_per_word =
      known_words > 0 ? static_cast<double>(known_tokens) / static_cast<double>(known_words) : 0.0;
  int64_t window_tokens = 0, context_tokens = 0;
  double context_sum = 0;
  for (const RequestResult& q : result.results) {
    if (!q.got_token) continue;
    const double prompt = q.prompt_tokens > 0 ? static_cast<double>(q.prompt_tokens)
                          : tokens_per_word > 0 ? tokens_per_word * static_cast<double>(q.prompt_words)
                                                : -1.0;
    // Token times: the first, then each gap after it; token i has prompt + i keys before it.
    auto count = [&](double t, size_t i) {
      if (t < 0 || t > window_s) return;
      ++window_tokens;
      if (prompt >= 0) {
        context_sum += prompt + static_cast<double>(i);
        ++context_tokens;
      }
    };
    double t = std::chrono::duration<double>(q.first_token - result.window_start).count();
    count(t, 0);
    for (size_t i = 0; i < q.itl_s.size(); ++i) {
      t += q.itl_s[i];
      count(t, i + 1);
    }
  }
  if (window_s > 0) r.window_output_tokens_per_s = static_cast<double>(window_tokens) / window_s;
  if (context_tokens > 0) r.window_mean_context_tokens = context_sum / static_cast<double>(context_tokens);
  r.wall_s = result.wall_s;
  r.client_queued = result.client_queued;
  std::vector<double> ttft, itl, tpot, e2e;
  for (const RequestResult& q : result.results) {
    ++r.sent;
    if (!q.ok) {
      ++r.failed;
      ++r.errors[q.error_kind];
      r.error_samples.emplace(q.error_kind, q.error_detail);
      continue;
    }
    ++r.succeeded;
    r.output_tokens += q.output_tokens;
    if (q.prompt_tokens > 0) r.prompt_tokens += q.prompt_tokens;
    if (q.got_token) {
      ttft.push_back(std::chrono::duration<double, std::milli>(q.first_token - q.start).count());
    }
    e2e.push_back(std::chrono::duration<double, std::milli>(q.end - q.start).count());
    for (double g : q.itl_s) itl.push_back(g * 1000.0);
    if (q.got_token && q.output_tokens > 1) {
      tpot.push_back(std::chrono::duration<double, std::milli>(q.last_token - q.first_token).count() /
                     static_cast<double>(q.output_tokens - 1));
    }
  }
  r.ttft_ms = Summarize(std::move(ttft));
  r.itl_ms = Summarize(std::move(itl));
  r.tpot_ms = Summarize(std::move(tpot));
  r.e2e_ms = Summarize(std::move(e2e));
  if (r.wall_s > 0) {
    r.requests_per_s = static_cast<double>(r.succeeded) / r.wall_s;
    r.output_tokens_per_s = static_cast<double>(r.output_tokens) / r.wall_s;
  }
  return r;
}

namespace {

std::string LevelName(const Level& l) {
  if (l.rate > 0) return absl::StrFormat("rate %.4g req/s (open loop, at most %d in flight)", l.rate, l.concurrency);
  return absl::StrFormat("concurrency %d (closed loop)", l.concurrency);
}

std::string Row(const char* name, const Summary& s) {
  return absl::StrFormat("  %-10s %9.1f %9.1f %9.1f %9.1f %9.1f %8d\n", name, s.p50, s.p90,
                         s.p99, s.mean, s.max, s.count);
}

json::object SummaryJson(const Summary& s) {
  return json::object{{"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"mean", s.mean},
                      {"min", s.min}, {"max", s.max}, {"count", s.count}};
}

}  // namespace

std::string FormatText(const Options& options, const std::vector<LevelReport>& reports) {
  std::string out = absl::StrFormat(
      "r1-loadtest  target %s%s  prompt %s words  output %s tokens\n", options.target,
      options.target.rfind("http", 0) == 0 ? " (" + options.endpoint + ")" : "",
      options.prompt_len.ToString(), options.output_len.ToString());
  for (const LevelReport& r : reports) {
    out += '\n';
    out += LevelName(r.level);
    out += '\n';
    out += absl::StrFormat("  requests   %d sent, %d ok, %d failed in %.2f s: %.2f req/s\n",
                           r.sent, r.succeeded, r.failed, r.wall_s, r.requests_per_s);
    out += absl::StrFormat("  tokens     %d output: %.1f tok/s", r.output_tokens,
                           r.output_tokens_per_s);
    if (r.prompt_tokens > 0) out += absl::StrFormat("; %d prompt", r.prompt_tokens);
    out += absl::StrFormat("; %.1f tok/s while sending", r.window_output_tokens_per_s);
    if (r.window_mean_context_tokens > 0)
      out += absl::StrFormat(" (mean context %.0f tokens)", r.window_mean_context_tokens);
    out += "\n";
    if (r.level.rate > 0) {
      out += absl::StrFormat("  queued     %d arrivals waited in the client for a free slot\n",
                             r.client_queued);
    }
    out += absl::StrFormat("  %-10s %9s %9s %9s %9s %9s %8s\n", "ms", "p50", "p90", "p99", "mean",
                           "max", "samples");
    out += Row("TTFT", r.ttft_ms);
    out += Row("ITL", r.itl_ms);
    out += Row("TPOT", r.tpot_ms);
    out += Row("E2E", r.e2e_ms);
    for (const auto& [kind, n] : r.errors) {
      out += absl::StrFormat("  error      %-22s %6d  e.g. %s\n", kind, n,
                             r.error_samples.at(kind).substr(0, 120));
    }
  }
  return out;
}

json::value ToJson(const Options& options, const std::vector<LevelReport>& reports) {
  json::array runs;
  for (const LevelReport& r : reports) {
    json::object errors;
    for (const auto& [kind, n] : r.errors) errors[kind] = n;
    runs.push_back(json::object{
        {"concurrency", r.level.concurrency},
        {"rate", r.level.rate},
        {"sent", r.sent},
        {"succeeded", r.succeeded},
        {"failed", r.failed},
        {"errors", std::move(errors)},
        {"duration_s", r.wall_s},
        {"requests_per_s", r.requests_per_s},
        {"output_tokens", r.output_tokens},
        {"output_tokens_per_s", r.output_tokens_per_s},
        {"window_output_tokens_per_s", r.window_output_tokens_per_s},
        {"window_mean_context_tokens", r.window_mean_context_tokens},
        {"prompt_tokens", r.prompt_tokens},
        {"client_queued", r.client_queued},
        {"ttft_ms", SummaryJson(r.ttft_ms)},
        {"itl_ms", SummaryJson(r.itl_ms)},
        {"tpot_ms", SummaryJson(r.tpot_ms)},
        {"e2e_ms", SummaryJson(r.e2e_ms)},
    });
  }
  return json::object{{"target", options.target},
                      {"endpoint", options.endpoint},
                      {"prompt_len", options.prompt_len.ToString()},
                      {"output_len", options.output_len.ToString()},
                      {"seed", options.seed},
                      {"runs", std::move(runs)}};
}

}  // namespace r1::loadtest
