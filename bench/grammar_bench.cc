// Structured-output engine speed over the real Qwen vocabulary: vocabulary preparation,
// compile time per schema, and the time of every FillNextTokenBitmask along random walks
// (random_walk.h) of each case of tests/grammar/cases.json.
//   grammar_bench [--tokenizer FILE] [--cases FILE] [--walks N] [--max-tokens N] [--grammar-...]
// Figures: medians and means of wall time per call, on one thread; the first walk of a case
// (cold caches) is reported apart from the rest (warm: the grammar is shared by all requests
// with that schema, so its caches are warm after the first). Hit rates and the cost of a miss
// come from the grammar's own counters.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "common/flags.h"
#include "worker/grammar/compiler.h"
#include "worker/grammar/grammar_flags.h"
#include "worker/grammar/random_walk.h"
#include "worker/grammar/test_cases.h"
#include "worker/tokenizer/tokenizer.h"

namespace {

namespace json = boost::json;
using namespace r1::grammar;
using Clock = std::chrono::steady_clock;

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

double CpuNow() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct Summary {
  size_t n = 0;
  double mean = 0, median = 0, p99 = 0, max = 0;
};

Summary Summarize(std::vector<double> v) {
  Summary s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  s.median = v[v.size() / 2];
  s.p99 = v[std::min(v.size() - 1, v.size() * 99 / 100)];
  s.max = v.back();
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("grammar_bench", "Structured outputs: compile time and mask time per token.");
  std::string* tok_path = flags.String("tokenizer", ".cache/tokenizer/tokenizer.json", "tokenizer.json");
  std::string* cases_path = flags.String("cases", "tests/grammar/cases.json", "schemas to walk");
  int64_t* vocab_size = flags.Int("vocab-size", 151936, "the model's vocabulary size");
  int64_t* walks = flags.Int("walks", 100, "random walks per case");
  int64_t* max_tokens = flags.Int("max-tokens", 150, "random tokens before a walk heads for the end");
  int64_t* compile_reps = flags.Int("compile-reps", 5, "compilations per case (median reported)");
  int64_t* seed = flags.Int("seed", 1, "random seed");
  GrammarFlags gflags = AddGrammarFlags(flags);
  flags.ParseOrExit(argc, argv);
  auto options = CompilerOptionsFromFlags(gflags);
  if (!options.ok()) flags.Fail(std::string(options.status().message()));
  if (*walks < 2 || *compile_reps < 1) flags.Fail("--walks must be >= 2, --compile-reps >= 1");

  auto tok = r1::tokenizer::Tokenizer::FromPath(*tok_path);
  if (!tok.ok()) flags.Fail(std::string(tok.status().message()));
  auto t0 = Clock::now();
  auto vocab = TokenVocabulary::FromTokenizer(**tok, *vocab_size);
  if (!vocab.ok()) flags.Fail(std::string(vocab.status().message()));
  std::printf("vocabulary: %zu grammar tokens, tries of %zu and %zu nodes (tokens of at most %zu "
              "bytes, longer ones), prepared in %.1f ms\n",
              (*vocab)->num_grammar_tokens(), (*vocab)->short_trie().size(),
              (*vocab)->long_trie().size(), TokenVocabulary::kShortTokenBytes,
              Micros(Clock::now() - t0) / 1e3);

  auto doc = LoadTestCases(*cases_path);
  if (!doc.ok()) flags.Fail(std::string(doc.status().message()));

  std::printf("\n%-18s %9s %7s %7s | %28s | %28s | %s\n", "case", "compile", "states", "classes",
              "first walk: calls mean med", "warm walks: calls mean med p99",
              "misses (context-free, long tokens, stack): n, mean cost; cache MiB");
  std::vector<double> all_warm, all_cold, compile_ms;
  std::mt19937_64 rng(static_cast<uint64_t>(*seed));
  const double cpu0 = CpuNow();
  const auto wall0 = Clock::now();
  double load0 = 0;
  getloadavg(&load0, 1);
  for (const auto& c : doc->at("cases").as_array()) {
    const json::object& tc = c.as_object();
    // Compile time: a fresh compiler each time (no cache); the median of the repetitions.
    std::vector<double> ct;
    GrammarCompiler::GrammarPtr g;
    for (int64_t r = 0; r < *compile_reps; ++r) {
      CompilerOptions o = *options;
      o.cache_entries = 0;
      GrammarCompiler compiler(*vocab, o);
      const auto c0 = Clock::now();
      auto compiled = CompileTestCase(compiler, tc);
      ct.push_back(Micros(Clock::now() - c0) / 1e3);
      if (!compiled.ok()) flags.Fail(std::string(tc.at("name").as_string()) + ": " +
                                     std::string(compiled.status().message()));
      g = *compiled;
    }
    const double compile = Summarize(ct).median;
    compile_ms.push_back(compile);

    std::vector<double> cold, warm;
    for (int64_t w = 0; w < *walks; ++w) {
      GrammarMatcher m(g, {151643});
      WalkOptions opt;
      opt.max_tokens = static_cast<int>(*max_tokens);
      std::vector<double>& out = w == 0 ? cold : warm;
      opt.fill = [&out](const GrammarMatcher& mm, uint32_t* bits) {
        const auto f0 = Clock::now();
        mm.FillNextTokenBitmask(bits);
        out.push_back(Micros(Clock::now() - f0));
      };
      RandomWalk(m, 151643, rng, opt);
    }
    const MaskStats st = g->stats();
    auto misses = [](const MaskStats::Counts& c) { return static_cast<unsigned long long>(c.misses); };
    const Summary sc = Summarize(cold), sw = Summarize(warm);
    auto mean_cost = [](uint64_t ns, uint64_t n) { return n ? ns / 1e3 / n : 0.0; };
    std::printf("%-18s %6.2f ms %7zu %7d | %6zu %8.1f us %7.1f us | %6zu %6.1f us %5.1f us %6.0f us | "
                "cf %llu (%.0f us), long %llu (%.0f us), stack %llu of %llu (%.0f us); %.1f MiB, "
                "%llu evicted\n",
                std::string(tc.at("name").as_string()).c_str(), compile, g->num_states(),
                g->num_mask_classes(), sc.n, sc.mean, sc.median, sw.n, sw.mean, sw.median, sw.p99,
                misses(st.context_free), mean_cost(st.context_free.miss_ns, st.context_free.misses),
                misses(st.long_tokens), mean_cost(st.long_tokens.miss_ns, st.long_tokens.misses),
                misses(st.stack), static_cast<unsigned long long>(st.stack.misses + st.stack.hits),
                mean_cost(st.stack.miss_ns, st.stack.misses), st.cached_bytes / 1048576.0,
                static_cast<unsigned long long>(st.evictions));
    all_cold.insert(all_cold.end(), cold.begin(), cold.end());
    all_warm.insert(all_warm.end(), warm.begin(), warm.end());
  }
  const Summary sw = Summarize(all_warm), sc = Summarize(all_cold), sm = Summarize(compile_ms);
  std::vector<double> all = all_cold;
  all.insert(all.end(), all_warm.begin(), all_warm.end());
  const Summary sa = Summarize(all);
  std::printf("\nmask per call, all cases: all walks mean %.1f us median %.1f us (%zu calls); "
              "first walks mean %.1f us; warm walks mean %.1f us median %.1f us p99 %.1f us\n",
              sa.mean, sa.median, sa.n, sc.mean, sw.mean, sw.median, sw.p99);
  std::printf("compile: median %.2f ms, max %.2f ms over %zu cases\n", sm.median, sm.max, sm.n);
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  std::printf("thread CPU time of the compile and walk phase: %.2f s of %.2f s wall; load average "
              "%.2f at the end (%.2f at the start)\n",
              CpuNow() - cpu0, Micros(Clock::now() - wall0) / 1e6, load[0], load0);
  return 0;
}
