// The scheduler under KV pressure, simulated: a closed loop of --streams R1-shaped requests
// (prompts uniform, outputs lognormal, as bench/gpu/serve_r1.sh sends them) through the real
// Scheduler and BlockAllocator, with no model. Each step's time comes from a cost model fitted
// to the H200 decode grid and prefill figures of docs/gpu.md (1.5B shape, bf16):
//   step ms = 2.0 + 0.0047 x decode rows + 7.7e-6 x keys the decode rows read
//             + 0.009 x prefill tokens
// so a policy that recomputes less, or keeps more rows decoding, shows as more output tokens a
// second. It runs each --headroom value (the scheduler's admit_headroom_tokens) on the same
// request stream and prints, per value: output tok/s over the window, preemptions, the prefill
// tokens spent recomputing preempted sequences, the mean running batch, and TTFT p50/p99 (model
// time from arrival to first token). The GPU serving benchmark is the check on the model.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "worker/engine/block_allocator.h"
#include "worker/engine/scheduler.h"

namespace {

using r1::engine::BlockAllocator;
using r1::engine::ScheduledChunk;
using r1::engine::Scheduler;
using r1::engine::SchedulerConfig;
using r1::engine::Sequence;
using r1::engine::StepPlan;

struct Request {
  int32_t prompt = 0, output = 0;
};

struct Live {
  std::unique_ptr<Sequence> seq;
  int32_t target = 0;   // output tokens to generate
  double arrival = 0;   // model ms
  bool first = false;   // its first token came
  int32_t computed = 0;  // the most tokens it ever had cached (below it: recompute)
};

struct Result {
  double tok_s = 0, mean_batch = 0, ttft_p50 = 0, ttft_p99 = 0;
  int64_t preemptions = 0, recompute_tokens = 0, done = 0;
};

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

Result Simulate(const std::vector<Request>& reqs, int32_t headroom, int64_t blocks, int32_t block_size,
                int32_t max_running, int32_t budget, int streams, double window_ms) {
  BlockAllocator alloc(blocks);
  SchedulerConfig cfg;
  cfg.max_running = max_running;
  cfg.token_budget = budget;
  cfg.block_size = block_size;
  cfg.admit_headroom_tokens = headroom;
  Scheduler sched(cfg, &alloc);
  std::vector<std::unique_ptr<Live>> live;
  std::unordered_map<const Sequence*, Live*> by_seq;
  size_t next = 0;
  double now = 0;
  auto submit = [&] {
    const Request& r = reqs[next++ % reqs.size()];
    auto l = std::make_unique<Live>();
    l->seq = std::make_unique<Sequence>();
    l->seq->id = next;
    l->seq->tokens.assign(static_cast<size_t>(r.prompt), static_cast<int32_t>(next % 100000));
    l->seq->num_prompt = r.prompt;
    l->target = r.output;
    l->arrival = now;
    sched.Add(l->seq.get());
    by_seq[l->seq.get()] = l.get();
    live.push_back(std::move(l));
  };
  for (int i = 0; i < streams; ++i) submit();
  Result res;
  std::vector<double> ttft;
  int64_t out_tokens = 0, steps = 0, rows = 0;
  while (now < window_ms) {
    StepPlan plan = sched.Schedule();
    res.preemptions += static_cast<int64_t>(plan.preempted.size());
    double decode_rows = 0, decode_keys = 0, prefill = 0;
    for (const ScheduledChunk& c : plan.chunks) {
      if (c.num_new == 1 && c.seq->num_cached + 1 == c.seq->num_tokens() && c.seq->num_output() > 0) {
        decode_rows += 1;
        decode_keys += c.seq->num_tokens();
      } else {
        prefill += c.num_new;
      }
    }
    now += 2.0 + 0.0047 * decode_rows + 7.7e-6 * decode_keys + 0.009 * prefill;
    sched.Commit(plan);
    ++steps;
    rows += static_cast<int64_t>(plan.chunks.size());
    for (const ScheduledChunk& c : plan.chunks) {
      Live* l = by_seq[c.seq];
      // Tokens below the sequence's high-water mark were computed before: a preempted
      // sequence's prefill recomputes them.
      const int32_t end = c.seq->num_cached, begin = end - c.num_new;
      res.recompute_tokens += c.num_new - std::max(0, end - std::max(begin, l->computed));
      l->computed = std::max(l->computed, end);
      if (!c.sample) continue;
      c.seq->tokens.push_back(1);
      ++out_tokens;
      if (!l->first) {
        l->first = true;
        ttft.push_back(now - l->arrival);
      }
    }
    // Finished sequences leave; each stream sends its next request at once.
    for (size_t i = 0; i < live.size();) {
      if (live[i]->seq->num_output() >= live[i]->target) {
        sched.Remove(live[i]->seq.get());
        by_seq.erase(live[i]->seq.get());
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
        ++res.done;
        submit();
      } else {
        ++i;
      }
    }
  }
  res.tok_s = static_cast<double>(out_tokens) / (now / 1e3);
  res.mean_batch = static_cast<double>(rows) / static_cast<double>(steps);
  res.ttft_p50 = Percentile(ttft, 0.5);
  res.ttft_p99 = Percentile(ttft, 0.99);
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("scheduler_sim",
                  "The scheduler under KV pressure, simulated with a cost model (no model, no device): "
                  "output tok/s, preemptions and TTFT for each --headroom value on the same requests.");
  int64_t* blocks = flags.Int("blocks", 18724, "KV cache blocks (18,724: an 8 GiB bf16 cache of the 1.5B)");
  int64_t* block_size = flags.Int("block-size", 16, "tokens a block");
  int64_t* streams = flags.Int("streams", 256, "concurrent streams (closed loop)");
  int64_t* max_running = flags.Int("max-running", 256, "the scheduler's max_running");
  int64_t* budget = flags.Int("token-budget", 2048, "tokens a step (the CUDA prefill chunk)");
  double* seconds = flags.Double("seconds", 120, "model seconds to simulate");
  std::string* headrooms = flags.String("headroom", "0,16,64,256,1024", "admit_headroom_tokens values to compare");
  int64_t* seed = flags.Int("seed", 1, "request stream seed");
  flags.ParseOrExit(argc, argv);

  std::mt19937_64 rng(static_cast<uint64_t>(*seed));
  std::uniform_int_distribution<int32_t> prompt(64, 1024);
  std::lognormal_distribution<double> output(std::log(2000.0), 1.0);
  std::vector<Request> reqs(20000);
  for (Request& r : reqs) {
    r.prompt = prompt(rng);
    r.output = static_cast<int32_t>(std::clamp(output(rng), 64.0, 16384.0));
  }
  std::printf("%ld streams, %ld blocks of %ld tokens (%ld tokens), prompts uniform 64-1024, outputs lognormal "
              "(median 2,000, sigma 1, 64-16,384), %g model seconds\n",
              *streams, *blocks, *block_size, *blocks * *block_size, *seconds);
  for (absl::string_view h : absl::StrSplit(*headrooms, ',')) {
    int32_t v = 0;
    if (!absl::SimpleAtoi(h, &v) || v < 0) flags.Fail("--headroom: not a list of token counts >= 0: " + *headrooms);
    Result r = Simulate(reqs, v, *blocks, static_cast<int32_t>(*block_size), static_cast<int32_t>(*max_running),
                        static_cast<int32_t>(*budget), static_cast<int>(*streams), *seconds * 1e3);
    std::printf("RESULT scheduler_sim headroom %d tok_s %.0f preemptions %ld recompute_tokens %ld mean_rows %.1f "
                "ttft_p50_ms %.0f ttft_p99_ms %.0f done %ld\n",
                v, r.tok_s, r.preemptions, r.recompute_tokens, r.mean_batch, r.ttft_p50, r.ttft_p99, r.done);
  }
  return 0;
}
