// r1-loadtest: load generator for the r1serve gateway (OpenAI API over HTTP/SSE) and for
// workers (gRPC). Prints latency percentiles, throughput and errors by kind.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include <boost/json/serialize.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "loadtest/http_backend.h"
#include "loadtest/plot.h"
#include "loadtest/report.h"
#include "loadtest/runner.h"

namespace {

using r1::loadtest::Level;

template <typename T>
std::vector<T> ParseList(const r1::Flags& flags, const std::string& name, const std::string& text) {
  std::vector<T> out;
  for (const std::string& item : r1::SplitCommaList(text)) {
    T v{};
    bool ok;
    if constexpr (std::is_same_v<T, double>) {
      ok = absl::SimpleAtod(item, &v) && v >= 0;
    } else {
      ok = absl::SimpleAtoi(item, &v) && v >= 1;
    }
    if (!ok) flags.Fail("bad --" + name + " value '" + item + "'");
    out.push_back(v);
  }
  if (out.empty()) flags.Fail("--" + name + " is empty");
  return out;
}

void PrintProgress(const r1::loadtest::Progress& p) {
  std::string what = p.target > 0 ? absl::StrFormat("%d/%d", p.done, p.target)
                                  : absl::StrFormat("%d (%.0f/%.0f s)", p.done, p.elapsed_s,
                                                    p.duration_s);
  double tps = p.elapsed_s > 0 ? static_cast<double>(p.output_tokens) / p.elapsed_s : 0;
  std::string line = absl::StrFormat(
      "\r%s c=%d%s  done %s  in flight %d  failed %d  %.0f tok/s  %.1f s\x1b[K",
      p.warmup ? "[warm-up]" : "[load]", p.level.concurrency,
      p.level.rate > 0 ? absl::StrFormat(" rate=%.3g", p.level.rate) : "", what, p.in_flight,
      p.failed, tps, p.elapsed_s);
  fputs(line.c_str(), stderr);
  fflush(stderr);
}

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("r1-loadtest",
                  "Load generator for the r1serve gateway (http://HOST:PORT, OpenAI API with "
                  "streaming) or a worker (grpc://HOST:PORT, r1serve.v1.Inference/Generate).\n"
                  "Length distributions: N (fixed), uniform:MIN:MAX, or list:A,B,C.");
  std::string* target = flags.String("target", "http://127.0.0.1:8080",
                                     "http://HOST:PORT (gateway) or grpc://HOST:PORT (worker)");
  std::string* endpoint = flags.String("endpoint", "chat",
                                       "HTTP only: chat (/v1/chat/completions) or completions "
                                       "(/v1/completions)");
  std::string* model = flags.String("model", "", "the request's \"model\" field (HTTP); empty: "
                                                 "the first id of the target's GET /v1/models, else \"default\"");
  std::string* api_key = flags.String("api-key", "", "sent as Authorization: Bearer KEY");
  std::string* concurrency = flags.String(
      "concurrency", "8", "most requests in flight; a comma list (1,2,4,8) runs one level each");
  std::string* rate = flags.String(
      "rate", "0", "requests per second with Poisson arrivals (open loop); 0 = closed loop; a "
                   "comma list runs one level each");
  int64_t* requests = flags.Int("requests", 100, "measured requests per level");
  double* duration = flags.Double("duration", 0, "seconds per level; when > 0 it replaces "
                                                 "--requests");
  int64_t* warmup = flags.Int("warmup", 0, "requests sent before each level and not measured");
  std::string* prompt_len = flags.String("prompt-len", "64", "prompt length in words (about one "
                                                             "token each): a distribution");
  std::string* output_len = flags.String(
      "output-len", "64",
      "max_tokens: a distribution (N, uniform:A:B, list:A,B,..., lognormal:MEDIAN:SIGMA:MIN:MAX)");
  bool* ignore_eos = flags.Bool("ignore-eos", true, "ask for exactly max_tokens tokens "
                                                    "(\"ignore_eos\": true)");
  double* temperature = flags.Double("temperature", 0, "sampling temperature (0 = greedy)");
  int64_t* seed = flags.Int("seed", 1, "seed for lengths, prompts and arrival times");
  double* timeout = flags.Double("timeout", 300, "seconds before one request counts as timed out");
  int64_t* threads = flags.Int("threads", 2, "I/O threads for HTTP");
  bool* keep_alive = flags.Bool("keep-alive", false, "HTTP: reuse connections between requests "
                                                     "(else one connection per request)");
  int64_t* channels = flags.Int("grpc-channels", 4, "gRPC connections to spread requests over");
  bool* as_json = flags.Bool("json", false, "print the report as one JSON object on stdout");
  std::string* plot = flags.String("plot", "", "write a latency-versus-load plot (.png or .svg) "
                                               "with gnuplot");
  bool* progress = flags.Bool("progress", true, "a live progress line on stderr when it is a "
                                                "terminal");
  flags.ParseOrExit(argc, argv);

  r1::loadtest::Options o;
  o.target = *target;
  auto parsed_target = r1::loadtest::ParseTarget(o.target);
  if (!parsed_target.ok()) flags.Fail(std::string(parsed_target.status().message()));
  if (*endpoint != "chat" && *endpoint != "completions") {
    flags.Fail("bad --endpoint '" + *endpoint + "' (want chat or completions)");
  }
  o.endpoint = *endpoint;
  o.model = *model;
  o.api_key = *api_key;
  if (*requests < 1) flags.Fail("--requests must be >= 1");
  if (*duration < 0) flags.Fail("--duration must be >= 0");
  if (*warmup < 0) flags.Fail("--warmup must be >= 0");
  if (*timeout <= 0) flags.Fail("--timeout must be > 0");
  if (*threads < 1 || *threads > 256) flags.Fail("--threads must be in [1, 256]");
  if (*channels < 1 || *channels > 256) flags.Fail("--grpc-channels must be in [1, 256]");
  if (*temperature < 0) flags.Fail("--temperature must be >= 0");
  o.requests = *requests;
  o.duration_s = *duration;
  o.warmup = *warmup;
  auto pl = r1::loadtest::LengthDist::Parse(*prompt_len);
  if (!pl.ok()) flags.Fail("--prompt-len: " + std::string(pl.status().message()));
  auto ol = r1::loadtest::LengthDist::Parse(*output_len);
  if (!ol.ok()) flags.Fail("--output-len: " + std::string(ol.status().message()));
  if (ol->Min() < 1) flags.Fail("--output-len must be >= 1");
  o.prompt_len = *pl;
  o.output_len = *ol;
  o.ignore_eos = *ignore_eos;
  o.temperature = *temperature;
  o.seed = static_cast<uint64_t>(*seed);
  o.timeout_s = *timeout;
  o.threads = *threads;
  o.keep_alive = *keep_alive;
  o.grpc_channels = *channels;

  std::vector<int64_t> conc = ParseList<int64_t>(flags, "concurrency", *concurrency);
  std::vector<double> rates = ParseList<double>(flags, "rate", *rate);
  if (conc.size() > 1 && rates.size() > 1) {
    flags.Fail("give a list to --concurrency or to --rate, not to both");
  }
  std::vector<Level> levels;
  for (int64_t c : conc) {
    for (double r : rates) levels.push_back(Level{c, r});
  }
  if (!plot->empty() && !r1::loadtest::HaveGnuplot()) {
    flags.Fail("--plot needs gnuplot on PATH (Debian: apt-get install gnuplot-nox)");
  }

  bool show_progress = *progress && isatty(STDERR_FILENO);
  r1::loadtest::ProgressFn fn;
  if (show_progress) fn = PrintProgress;
  if (o.model.empty() && parsed_target->scheme == "http") {
    // Servers refuse a model they do not serve (OpenAI, vLLM, r1-gateway): ask for theirs. A
    // target that lists none (or cannot be reached yet: the run reports that) gets "default".
    auto id = r1::loadtest::FirstModelId(*parsed_target, o.api_key);
    o.model = id.ok() ? *id : "default";
  }
  auto results = r1::loadtest::RunLoadTest(o, levels, fn);
  if (show_progress) fputs("\r\x1b[K", stderr);
  if (!results.ok()) {
    std::cerr << "r1-loadtest: " << results.status().message() << "\n";
    return 1;
  }
  std::vector<r1::loadtest::LevelReport> reports;
  int64_t succeeded = 0;
  for (const auto& r : *results) {
    reports.push_back(r1::loadtest::MakeReport(r));
    succeeded += reports.back().succeeded;
  }
  if (*as_json) {
    std::cout << boost::json::serialize(r1::loadtest::ToJson(o, reports)) << "\n";
  } else {
    std::cout << r1::loadtest::FormatText(o, reports);
  }
  std::cout.flush();
  if (!plot->empty()) {
    absl::Status s = r1::loadtest::WritePlot(*plot, reports);
    if (!s.ok()) {
      std::cerr << "r1-loadtest: " << s.message() << "\n";
      return 1;
    }
  }
  if (succeeded == 0) {
    std::cerr << "r1-loadtest: every request failed\n";
    return 1;
  }
  return 0;
}
