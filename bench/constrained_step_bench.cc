// constrained_step_bench: the decode step at batch --batch with every sequence constrained by a
// structured output, against the same step unconstrained, in one run (issue 14's goal: within
// 10% on the GPU). It drives the engine's own step path, as the engine thread does: scheduler
// -> step executor (each constrained row's grammar mask, the model call, the runner's sampler:
// on CUDA the device sampler with its bitmask upload, on the CPU the C++ sampler) -> output
// processor (the grammar matchers accept the tokens).
//
//   constrained_step_bench --model DIR [--device cpu|cuda] [--batch 64] [--steps 32] [--reps 3]
//       [--shares 0,0.5,1] [--temperatures 0,0.6] [--top-p 0.95] [--overlap both]
//       [--top-p-sort both]
//
// Constrained rows take the structured outputs of tests/grammar/cases.json in turn (row i the
// case i % 15), compiled once before timing over the model's tokenizer (so the model directory
// needs tokenizer.json: r1-mkmodel --tokenizer). The prompts open no thought, so every row is
// constrained from its first token. A row whose answer is complete (it sampled end-of-sequence)
// starts the next answer with a fresh matcher, and no row ever ends, so the batch stays full.
// Each mode (share of constrained rows x temperature x when the masks are made) gets its own
// batch: prefill and --warmup-steps untimed, then --steps timed decode steps; --reps rounds go
// through the modes in turn, so drift spreads over all of them. Figures: the median of every
// timed step's wall time (plan to accepted tokens) and of its parts, and each mode's ratio to
// the unconstrained mode of the same temperature and overlap. --top-p-sort both runs each
// sampled mode twice, with the device sampler's sort-free top-p kernel and with its sort.
#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/numbers.h"
#include "bench/median.h"
#include "common/flags.h"
#include "common/log.h"
#include "worker/engine/block_allocator.h"
#include "worker/engine/device_sampler.h"
#include "worker/engine/model_runner.h"
#include "worker/engine/output_processor.h"
#include "worker/engine/request_state.h"
#include "worker/engine/scheduler.h"
#include "worker/engine/step_executor.h"
#include "worker/grammar/compiler.h"
#include "worker/grammar/grammar_flags.h"
#include "worker/grammar/test_cases.h"
#include "worker/tokenizer/tokenizer.h"

namespace {

using namespace r1::engine;
using SteadyClock = std::chrono::steady_clock;

double MsSince(SteadyClock::time_point t) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t).count();
}
using r1::bench::Median;

struct Mode {
  double share = 0;  // constrained rows / batch
  double temperature = 0;
  bool during_model = true;  // masks made while the device computes (the engine's way)
  bool sorted = false;       // top-p by the device sampler's sort, not its kernel
};

struct Times {
  std::vector<double> step, constraint, model, sample, accept;
};

// A sink that drops the deltas: the bench reads the requests' state directly.
class NullSink : public RequestSink {
 public:
  void OnDelta(Delta) override {}
  bool Cancelled() const override { return false; }
};

class Bench {
 public:
  Bench(ModelRunner* runner, std::vector<r1::grammar::GrammarCompiler::GrammarPtr> grammars,
        int64_t batch, int64_t prompt_len, double top_p)
      : runner_(runner), grammars_(std::move(grammars)), batch_(batch), prompt_len_(prompt_len),
        top_p_(top_p), eos_(runner->config().eos_token_ids),
        vocab_(runner->config().vocab_size) {}

  // One mode's batch: prefill and warm-up untimed, then `steps` timed decode steps.
  absl::Status Run(const Mode& mode, int64_t warmup, int64_t steps, uint64_t seed, Times* t) {
    BlockAllocator allocator(static_cast<int32_t>(runner_->num_blocks()));
    Scheduler scheduler(SchedulerConfig{static_cast<int32_t>(batch_),
                                        static_cast<int32_t>(std::max<int64_t>(2048, batch_)),
                                        runner_->block_size(), 256},
                        &allocator);
    StepExecutor executor(runner_, r1::SystemClock::Get(), mode.during_model);
    OutputProcessor outputs(OutputConfig{eos_, INT32_MAX, nullptr});
    auto sink = std::make_shared<NullSink>();
    const int64_t constrained = static_cast<int64_t>(mode.share * static_cast<double>(batch_) + 0.5);
    std::vector<std::unique_ptr<RequestState>> reqs;
    for (int64_t i = 0; i < batch_; ++i) {
      EngineRequest r;
      r.request_id = std::to_string(i);
      for (int64_t j = 0; j < prompt_len_; ++j)
        r.prompt.push_back(static_cast<int32_t>(1000 + (i * 131 + j * 17 + seed * 7) % 50000));
      r.sampling.temperature = static_cast<float>(mode.temperature);
      if (mode.temperature > 0) r.sampling.top_p = static_cast<float>(top_p_);
      // Constrained rows spread over the batch (row i constrained when its share says so).
      if ((i + 1) * constrained / batch_ > i * constrained / batch_)
        r.grammar = grammars_[static_cast<size_t>(i) % grammars_.size()];
      r.sink = sink;
      auto req = std::make_unique<RequestState>(std::move(r), seed * 1000 + static_cast<uint64_t>(i), nullptr);
      req->id = static_cast<uint64_t>(i + 1);
      req->constraints = TokenConstraints(req->req, ReasoningOptions{}, eos_, vocab_);
      scheduler.Add(req.get());
      reqs.push_back(std::move(req));
    }
    int64_t decodes = 0;
    while (decodes < warmup + steps) {
      const auto t0 = SteadyClock::now();
      StepPlan plan = scheduler.Schedule();
      if (plan.chunks.empty()) return absl::InternalError("the scheduler planned nothing");
      if (!plan.preempted.empty()) {
        return absl::ResourceExhaustedError("a sequence was preempted: the KV cache is too small "
                                            "for the batch (raise --kv-cache-memory)");
      }
      const bool decode = plan.num_tokens == static_cast<int32_t>(plan.chunks.size()) &&
                          static_cast<int64_t>(plan.chunks.size()) == batch_;
      executor.Launch(plan);
      StepOutput out = executor.Finish();
      if (!out.status.ok()) return out.status;
      scheduler.Commit(plan);
      const auto ta = SteadyClock::now();
      for (size_t i = 0; i < out.sampled.size(); ++i) {
        RequestState* req = out.sampled[i];
        Delta d = outputs.OnToken(req, out.samples[i], r1::SystemClock::Get()->Now());
        if (req->constraints.refused() > 0)
          return absl::InternalError(req->req.request_id + ": the grammar refused a sampled token");
        // An answer ended: the next one starts (the sequence goes on, the batch stays full).
        if (d.finish != FinishReason::kNone && req->req.grammar)
          req->constraints = TokenConstraints(req->req, ReasoningOptions{}, eos_, vocab_);
      }
      const double accept_ms = MsSince(ta);
      if (!decode) continue;
      if (++decodes <= warmup) continue;
      t->step.push_back(MsSince(t0));
      t->constraint.push_back(out.constraint_ms);
      t->model.push_back(out.model_ms);
      t->sample.push_back(out.sample_ms);
      t->accept.push_back(accept_ms);
    }
    return absl::OkStatus();
  }

 private:
  ModelRunner* runner_;
  std::vector<r1::grammar::GrammarCompiler::GrammarPtr> grammars_;
  int64_t batch_, prompt_len_;
  double top_p_;
  std::vector<int32_t> eos_;
  int64_t vocab_;
};

std::vector<double> ParseList(const r1::Flags& flags, const std::string& name, const std::string& text,
                              double lo, double hi) {
  std::vector<double> out;
  for (const std::string& s : r1::SplitCommaList(text)) {
    double v = 0;
    if (!absl::SimpleAtod(s, &v) || v < lo || v > hi) {
      flags.Fail("--" + name + ": '" + s + "' is not a number in [" + std::to_string(lo) + ", " +
                 std::to_string(hi) + "]");
    }
    out.push_back(v);
  }
  if (out.empty()) flags.Fail("--" + name + " is empty");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("constrained_step_bench",
                  "Decode step time with every sequence constrained vs unconstrained, one run.");
  std::string* model = flags.String("model", "", "checkpoint directory with tokenizer.json (required)");
  std::string* device = flags.String("device", "cpu", "cpu, cuda or cuda:N");
  std::string* dtype = flags.String("dtype", "auto", "auto (bfloat16 on CUDA and on CPUs with AVX512-BF16, else float32), bfloat16, float16 or float32");
  int64_t* threads = flags.Int("threads", 0, "CPU threads (model and masks); 0: one per core");
  int64_t* kv_memory = flags.Int("kv-cache-memory", 0, "KV cache bytes; 0: as r1-worker");
  int64_t* batch = flags.Int("batch", 64, "sequences in the batch");
  int64_t* prompt_len = flags.Int("prompt-len", 128, "prompt tokens per sequence");
  int64_t* warmup = flags.Int("warmup-steps", 4, "untimed decode steps per mode and round");
  int64_t* steps = flags.Int("steps", 32, "timed decode steps per mode and round");
  int64_t* reps = flags.Int("reps", 3, "rounds through the modes");
  std::string* shares = flags.String("shares", "0,0.5,1", "shares of constrained rows (0 first: the baseline)");
  std::string* temps = flags.String("temperatures", "0,0.6", "temperatures (0: greedy)");
  double* top_p = flags.Double("top-p", 0.95, "top_p of the rows with a temperature");
  std::string* overlap = flags.String("overlap", "on",
      "on: masks made while the model computes (the engine's way); off: before the model call; both");
  std::string* top_p_sort = flags.String("top-p-sort", "off",
      "off: top-p rows by the device sampler's sort-free kernel (CUDA); on: by its sort; both");
  std::string* cases = flags.String("cases", "tests/grammar/cases.json", "the structured outputs");
  r1::grammar::GrammarFlags gflags = r1::grammar::AddGrammarFlags(flags);
  flags.ParseOrExit(argc, argv);
  if (model->empty()) flags.Fail("--model is required");
  if (*batch <= 0 || *prompt_len <= 0 || *steps <= 0 || *reps <= 0 || *warmup < 0)
    flags.Fail("--batch, --prompt-len, --steps and --reps must be > 0, --warmup-steps >= 0");
  std::vector<double> share_list = ParseList(flags, "shares", *shares, 0, 1);
  std::vector<double> temp_list = ParseList(flags, "temperatures", *temps, 0, 2);
  std::vector<bool> overlaps;
  if (*overlap == "on" || *overlap == "both") overlaps.push_back(true);
  if (*overlap == "off" || *overlap == "both") overlaps.push_back(false);
  if (overlaps.empty()) flags.Fail("--overlap: '" + *overlap + "' is not on, off or both");
  std::vector<bool> sorts;
  if (*top_p_sort == "off" || *top_p_sort == "both") sorts.push_back(false);
  if (*top_p_sort == "on" || *top_p_sort == "both") sorts.push_back(true);
  if (sorts.empty()) flags.Fail("--top-p-sort: '" + *top_p_sort + "' is not on, off or both");
  auto copts = r1::grammar::CompilerOptionsFromFlags(gflags);
  if (!copts.ok()) flags.Fail(std::string(copts.status().message()));
  r1::SetLogLevel(r1::LogLevel::kWarning);

  RunnerOptions ro;
  ro.model_dir = *model;
  ro.load.device = *device;
  ro.load.dtype = *dtype;
  ro.load.num_threads = static_cast<int32_t>(*threads);
  ro.kv_cache_memory = *kv_memory;
  auto runner = ModelRunner::Create(ro);
  if (!runner.ok()) flags.Fail(std::string(runner.status().message()));
  const int64_t vocab_size = (*runner)->config().vocab_size;
  auto tok = r1::tokenizer::Tokenizer::FromPath(*model);
  if (!tok.ok()) flags.Fail(std::string(tok.status().message()));
  auto vocab = r1::grammar::TokenVocabulary::FromTokenizer(**tok, vocab_size);
  if (!vocab.ok()) flags.Fail(std::string(vocab.status().message()));
  r1::grammar::GrammarCompiler compiler(*vocab, *copts);
  auto doc = r1::grammar::LoadTestCases(*cases);
  if (!doc.ok()) flags.Fail(std::string(doc.status().message()));
  std::vector<r1::grammar::GrammarCompiler::GrammarPtr> grammars;
  for (const auto& c : doc->at("cases").as_array()) {
    auto g = r1::grammar::CompileTestCase(compiler, c.as_object());
    if (!g.ok()) flags.Fail(std::string(g.status().message()));
    grammars.push_back(*g);
  }
  if ((*runner)->traits().computes_async) {
    // The device path's lazy set-up (graphs up to the batch) before any timing.
    if (absl::Status w = (*runner)->WarmUp(*batch, 2048, 1024); !w.ok())
      std::fprintf(stderr, "warm-up stopped early: %s\n", std::string(w.message()).c_str());
  }

  std::vector<Mode> modes;
  for (bool ov : overlaps)
    for (double t : temp_list)
      for (bool sorted : sorts) {
        if (t == 0 && sorted) continue;  // greedy rows never sort
        for (double s : share_list) modes.push_back({s, t, ov, sorted});
      }
  std::map<std::tuple<double, double, bool, bool>, Times> times;
  Bench bench(runner->get(), grammars, *batch, *prompt_len, *top_p);
  for (int64_t r = 0; r < *reps; ++r) {
    for (const Mode& m : modes) {
      r1::engine::SetTopPKernel(!m.sorted);
      absl::Status s = bench.Run(m, *warmup, *steps, static_cast<uint64_t>(r + 1),
                                 &times[{m.share, m.temperature, m.during_model, m.sorted}]);
      if (!s.ok()) {
        std::fprintf(stderr, "constrained_step_bench: %s\n", std::string(s.message()).c_str());
        return 1;
      }
    }
  }
  std::printf("%s on %s, batch %lld, prompt %lld, %zu structured outputs (%s), %lld reps x %lld "
              "steps per mode; top_p %.2f with a temperature\n",
              model->c_str(), (*runner)->device_name().c_str(), static_cast<long long>(*batch),
              static_cast<long long>(*prompt_len), grammars.size(), cases->c_str(),
              static_cast<long long>(*reps), static_cast<long long>(*steps), *top_p);
  std::printf("%-8s %-6s %-6s %-6s | %9s %7s | %10s %9s %9s %9s (median ms)\n", "masks", "temp",
              "top-p", "share", "step ms", "ratio", "constraint", "model", "sample", "accept");
  for (const Mode& m : modes) {
    const Times& t = times[{m.share, m.temperature, m.during_model, m.sorted}];
    const Times& base = times[{share_list.front(), m.temperature, m.during_model, m.sorted}];
    const double step = Median(t.step), ratio = step / Median(base.step);
    // On CUDA the device sampler's two top-p paths; on the CPU the C++ sampler (SampleBatch),
    // which --top-p-sort does not change.
    const bool cuda = (*runner)->device_name().rfind("cuda", 0) == 0;
    const char* top_p_way = m.temperature == 0 ? "-" : !cuda ? "host" : m.sorted ? "sort" : "kernel";
    std::printf("%-8s %-6.2f %-6s %-6.2f | %9.3f %7.3f | %10.3f %9.3f %9.3f %9.3f\n",
                m.during_model ? "overlap" : "before", m.temperature, top_p_way, m.share, step, ratio,
                Median(t.constraint), Median(t.model), Median(t.sample), Median(t.accept));
    std::printf("RESULT constrained_step device=%s batch=%lld masks=%s temperature=%.2f top_p=%s share=%.2f "
                "step_ms=%.3f ratio=%.3f constraint_ms=%.3f model_ms=%.3f sample_ms=%.3f accept_ms=%.3f\n",
                (*runner)->device_name().c_str(), static_cast<long long>(*batch),
                m.during_model ? "overlap" : "before", m.temperature, top_p_way, m.share, step, ratio,
                Median(t.constraint), Median(t.model), Median(t.sample), Median(t.accept));
  }
  return 0;
}
