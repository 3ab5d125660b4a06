// Speed of the CPU decode attention (worker/model/cpu_attention.h) at long context: one decode
// step's attention for every layer of a model shape (default: the 1.5B's 12 query heads, 2 KV
// heads of 128, 28 layers), each layer with its own bf16 cache of C tokens, so that a step reads
// C x 28,672 bytes from memory as the model's does. Figures: median ms a step, GB/s of K and V
// read, against the read bandwidth measured between rounds; beside it ATen's math on the
// gathered rows (index_select, bmm, float softmax, bmm: the eager path's ops) as the peer.
// Contexts and kernels are measured in alternating rounds.
//
// With --prefill-queries N: a prompt chunk of N queries after C cached tokens instead
// (PrefillAttention against the eager path's ATen ops: gather, bmm, causal mask, float softmax,
// bmm), in GFLOP/s (4 * head_dim multiply-adds' FLOPs per query head and key it sees), with the
// bound the chunk's FLOPs at the bf16 matmul rate measured between rounds (at::linear of a
// 512 x 1536 by 1536 x 8960 product, the 1.5B's MLP shape, which oneDNN runs near the cores'
// peak).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "bench/median.h"
#include "bench/read_bandwidth.h"
#include "common/flags.h"
#include "worker/model/cpu_attention.h"
#include "worker/model/cpu_weights.h"

namespace {

using Clock = std::chrono::steady_clock;

using r1::bench::Median;

// The eager path's attention of a prompt chunk (qwen2_eager.cc's Attend) on the gathered rows.
at::Tensor AtenPrefill(const at::Tensor& q, const at::Tensor& kc, const at::Tensor& vc, const at::Tensor& idx,
                       int64_t num_cached, double scale) {
  const int64_t n = q.size(0), heads = q.size(1), d = q.size(2), kvh = kc.size(1), g = heads / kvh;
  at::Tensor k = kc.index_select(0, idx), v = vc.index_select(0, idx);
  const int64_t ctx = k.size(0);
  at::Tensor qh = q.view({n, kvh, g, d}).permute({1, 2, 0, 3}).reshape({kvh, g * n, d});
  at::Tensor scores = at::bmm(qh, k.permute({1, 2, 0})).mul_(scale);
  at::Tensor mask = at::ones({n, n}, at::TensorOptions().dtype(at::kBool)).triu_(1);
  scores.view({kvh, g, n, ctx}).narrow(3, num_cached, n).masked_fill_(mask, -INFINITY);
  at::Tensor out = at::bmm(at::softmax(scores, -1), v.permute({1, 0, 2}));
  return out.view({kvh, g, n, d}).permute({2, 0, 1, 3}).reshape({n, heads, d});
}

// FLOP/s of bf16 at::linear in the 1.5B's MLP shape: the rate a prefill's matmuls run at here.
double MatmulGflops() {
  const at::Tensor x = at::randn({512, 1536}).to(at::kBFloat16), w = at::randn({8960, 1536}).to(at::kBFloat16);
  std::vector<double> t;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    at::linear(x, w);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * 512 * 1536 * 8960 / *std::min_element(t.begin(), t.end()) / 1e9;
}

// The eager path's decode attention on the gathered rows.
at::Tensor AtenAttention(const at::Tensor& q, const at::Tensor& kc, const at::Tensor& vc, const at::Tensor& idx,
                         double scale) {
  const int64_t heads = q.size(1), d = q.size(2), kvh = kc.size(1), g = heads / kvh;
  at::Tensor k = kc.index_select(0, idx), v = vc.index_select(0, idx);
  at::Tensor qh = q.view({1, kvh, g, d}).permute({1, 2, 0, 3}).reshape({kvh, g, d});
  at::Tensor scores = at::bmm(qh, k.permute({1, 2, 0})).mul_(scale);
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  return at::bmm(probs, v.permute({1, 0, 2}));
}

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("cpu_attention_bench",
                  "CPU attention at long context: a decode step's ms and GB/s of KV read, or with "
                  "--prefill-queries a prompt chunk's ms and GFLOP/s.");
  std::string* contexts = flags.String("contexts", "4096,16384", "comma-separated tokens of context");
  int64_t* heads = flags.Int("heads", 12, "query heads");
  int64_t* kv_heads = flags.Int("kv-heads", 2, "KV heads");
  int64_t* head_dim = flags.Int("head-dim", 128, "head size (a multiple of 32)");
  int64_t* layers = flags.Int("layers", 28, "layers: one cache each, all read every step");
  int64_t* rounds = flags.Int("rounds", 5, "rounds (each runs every context and kernel)");
  int64_t* steps = flags.Int("steps", 4, "steps per context and kernel per round");
  bool* aten = flags.Bool("aten", true, "also time ATen's ops on the gathered rows (the peer)");
  int64_t* threads = flags.Int("threads", 0, "threads; 0: one per core");
  int64_t* prefill_queries = flags.Int("prefill-queries", 0,
                                       "time a prompt chunk of this many queries after each context instead of a "
                                       "decode step (0: decode)");
  flags.ParseOrExit(argc, argv);
  const int nthreads = *threads > 0 ? static_cast<int>(*threads) : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(nthreads);
  std::vector<int64_t> ctxs;
  for (const std::string& c : r1::SplitCommaList(*contexts)) {
    int64_t v = 0;
    // A prompt chunk may come first (no cached tokens); a decode step needs one key.
    if (!absl::SimpleAtoi(c, &v) || v < (*prefill_queries > 0 ? 0 : 1))
      flags.Fail("--contexts: '" + c + "' is not a " + (*prefill_queries > 0 ? "non-negative" : "positive") +
                 " integer");
    ctxs.push_back(v);
  }
  if (ctxs.empty() || *heads < 1 || *kv_heads < 1 || *heads % *kv_heads != 0 || *head_dim % 32 != 0 || *layers < 1 ||
      *rounds < 1 || *steps < 1 || *prefill_queries < 0)
    flags.Fail("--heads must be a multiple of --kv-heads, --head-dim of 32; the counts >= 1");
  const int64_t H = *heads, KVH = *kv_heads, D = *head_dim, L = *layers, N = *prefill_queries;
  const int64_t max_ctx = *std::max_element(ctxs.begin(), ctxs.end()) + N;
  at::manual_seed(0);
  // One cache per layer, slots in order (a sequence's blocks as the allocator hands them out).
  // In a WeightArena (2 MiB pages), as the model's CPU KvCache holds them.
  std::vector<at::Tensor> kc, vc;
  const size_t layer_bytes = static_cast<size_t>(max_ctx * KVH * D) * 2;
  auto arena = r1::model::WeightArena::Create(2 * static_cast<size_t>(L) * (layer_bytes + 4096));
  auto keep = [&arena](const at::Tensor& t) { return arena ? arena->Copy(t, at::kBFloat16) : t.to(at::kBFloat16); };
  for (int64_t l = 0; l < L; ++l) {
    kc.push_back(keep(at::randn({max_ctx, KVH, D})));
    vc.push_back(keep(at::randn({max_ctx, KVH, D})));
  }
  const at::Tensor q = at::randn({N > 0 ? N : 1, H, D}).to(at::kBFloat16);
  if (N > 0 ? !r1::model::PrefillAttentionApplies(q, kc[0]) : !r1::model::DecodeAttentionApplies(q, kc[0])) {
    std::printf("skipped: the decode attention kernel needs AVX512-BF16, which this CPU does not have\n");
    return 0;
  }
  const double scale = 1 / std::sqrt(static_cast<double>(D));
  struct Result {
    int64_t ctx;
    bool aten;
    bool amx;  // the kernel on AMX tiles (where the CPU has them)
    std::vector<double> seconds;
  };
  std::vector<Result> results;
  const bool amx = r1::model::DecodeAttentionAmx();
  for (int64_t c : ctxs) {
    results.push_back({c, false, false, {}});
    if (amx) results.push_back({c, false, true, {}});
    if (*aten) results.push_back({c, true, false, {}});
  }
  std::vector<double> bws{r1::bench::ReadBandwidthGBs(nthreads, 5)}, gflops;
  if (N > 0) gflops.push_back(MatmulGflops());
  for (int64_t r = 0; r < *rounds; ++r) {
    for (Result& res : results) {
      const int64_t keys = res.ctx + N;  // prefill: the chunk's own keys after the cached ones
      std::vector<int64_t> slots(static_cast<size_t>(N > 0 ? keys : res.ctx));
      for (size_t i = 0; i < slots.size(); ++i) slots[i] = static_cast<int64_t>(i);
      const at::Tensor idx = at::arange(static_cast<int64_t>(slots.size()), at::kLong);
      for (int64_t s = 0; s < *steps; ++s) {
        const auto t = Clock::now();
        for (int64_t l = 0; l < L; ++l) {
          if (N > 0 && res.aten) AtenPrefill(q, kc[l], vc[l], idx, res.ctx, scale);
          else if (N > 0) r1::model::PrefillAttention(q, kc[l], vc[l], slots, res.ctx, scale, res.amx);
          else if (res.aten) AtenAttention(q, kc[l], vc[l], idx, scale);
          else r1::model::DecodeAttention(q, kc[l], vc[l], slots, scale, res.amx);
        }
        res.seconds.push_back(std::chrono::duration<double>(Clock::now() - t).count());
      }
    }
    if (N > 0) gflops.push_back(MatmulGflops());
    else bws.push_back(r1::bench::ReadBandwidthGBs(nthreads, 2));
  }
  if (N > 0) {
    const double rate = Median(gflops);
    std::printf("threads %d; %ld query heads, %ld KV heads of %ld, %ld layers; a chunk of %ld queries; bf16 matmul "
                "rate, median of the samples between rounds: %.0f GFLOP/s (range %.0f-%.0f)\n",
                nthreads, static_cast<long>(H), static_cast<long>(KVH), static_cast<long>(D), static_cast<long>(L),
                static_cast<long>(N), rate, *std::min_element(gflops.begin(), gflops.end()),
                *std::max_element(gflops.begin(), gflops.end()));
    for (const Result& res : results) {
      // Each query sees the cached keys and the chunk's up to itself.
      const double flops = 4.0 * D * H * L * (static_cast<double>(N) * res.ctx + N * (N + 1) / 2.0);
      const double s = Median(res.seconds);
      std::printf("context %6ld + %ld  %-6s  %9.2f ms a chunk  %7.1f GFLOP/s  (%3.0f%% of the matmul rate; bound "
                  "%.2f ms)\n",
                  static_cast<long>(res.ctx), static_cast<long>(N), res.aten ? "aten" : res.amx ? "amx" : "kernel", s * 1e3,
                  flops / s / 1e9, 100 * flops / s / 1e9 / rate, flops / rate / 1e6);
    }
    return 0;
  }
  const double bw = Median(bws);
  std::printf("threads %d; %ld query heads, %ld KV heads of %ld, %ld layers; read bandwidth, median of the samples "
              "between rounds: %.1f GB/s (range %.1f-%.1f)\n",
              nthreads, static_cast<long>(H), static_cast<long>(KVH), static_cast<long>(D), static_cast<long>(L), bw,
              *std::min_element(bws.begin(), bws.end()), *std::max_element(bws.begin(), bws.end()));
  for (const Result& res : results) {
    const double bytes = 2.0 * res.ctx * KVH * D * 2 * L, s = Median(res.seconds);
    std::printf("context %6ld  %-6s  %8.2f ms a step  %6.3f GB of K and V  %5.1f GB/s  (%3.0f%% of the median "
                "bandwidth; bound %.2f ms)\n",
                static_cast<long>(res.ctx), res.aten ? "aten" : res.amx ? "amx" : "kernel", s * 1e3, bytes / 1e9,
                bytes / s / 1e9,
                100 * bytes / s / 1e9 / bw, bytes / bw / 1e6);
  }
  return 0;
}
