// Speed of one quantized linear layer on the CPU: the 1.5B's shapes, lm_head included, as int8
// (cpu_int8.h) and int4 (cpu_int4.h), each with the best kernel for this CPU, or the AVX2 one
// ("int8-avx2", "int4-avx2"). At decode (--m 1) a linear layer reads every weight byte once, so the figure
// is GB/s of weight bytes read, beside the read bandwidth measured in the same run
// (bench/read_bandwidth.h); with many rows (prefill, --m 512) it is compute-bound: GOP/s, two
// operations a multiply-add. Shapes and kinds are measured in alternating rounds; figures are
// medians.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/read_bandwidth.h"
#include "common/flags.h"
#include "worker/model/cpu_int4.h"
#include "worker/model/cpu_int8.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Case {
  std::string name, kind;
  int64_t n, k;
  std::function<at::Tensor(const at::Tensor&)> run;
  double bytes = 0;
  std::vector<double> seconds;
};

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("cpu_linear_bench", "GB/s of one int8 or int4 linear layer at batch 1, the 1.5B's shapes.");
  int64_t* threads = flags.Int("threads", 0, "threads; 0: one per core");
  int64_t* rounds = flags.Int("rounds", 5, "rounds (each runs every case)");
  int64_t* reps = flags.Int("reps", 20, "calls per case per round (lm_head: a quarter)");
  int64_t* group = flags.Int("group", 128, "int4 group size");
  int64_t* batch = flags.Int("m", 1, "activation rows");
  std::string* only = flags.String("shapes", "qkv,o,gate/up,down,lm_head",
                                   "comma-separated shapes to measure (prefill computes lm_head for one row only)");
  std::string* kinds = flags.String(
      "kinds", "int8,int4",
      "comma-separated: int8 and int4 (the best kernels on this CPU), int8-avx2 and int4-avx2 (the AVX2 ones)");
  // A decode step reads each layer's weights from memory: cycle through copies of each shape
  // that together overflow the last-level cache, as a model's layers do.
  int64_t* min_mb = flags.Int("min-mb", 256, "copies of each shape's weights, at least this many MB in all");
  flags.ParseOrExit(argc, argv);
  const int nthreads = *threads > 0 ? static_cast<int>(*threads) : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(nthreads);
  const int64_t M = *batch;

  struct Shape {
    const char* name;
    int64_t n, k;
  } shapes[] = {{"qkv", 2048, 1536}, {"o", 1536, 1536}, {"gate/up", 8960, 1536}, {"down", 1536, 8960}, {"lm_head", 151936, 1536}};
  std::vector<Case> cases;
  bool int8 = false, int8_avx2 = false, int4 = false, int4_avx2 = false;
  for (const std::string& k : r1::SplitCommaList(*kinds)) {
    if (k == "int8") int8 = true;
    else if (k == "int8-avx2") int8_avx2 = true;
    else if (k == "int4") int4 = true;
    else if (k == "int4-avx2") int4_avx2 = true;
    else flags.Fail("--kinds: '" + k + "' is not int8, int8-avx2, int4 or int4-avx2");
  }
  if (M < 1) flags.Fail("--m must be >= 1");
  if ((int8 || int8_avx2) && !r1::model::Int8KernelAvailable()) flags.Fail("--kinds int8: this CPU has no AVX2");
  if ((int4 || int4_avx2) && !r1::model::Int4KernelAvailable()) flags.Fail("--kinds int4: this CPU has no AVX2 and FMA");
  const r1::model::Int8Isa best = r1::model::BestInt8Isa();
  at::manual_seed(0);
  const std::vector<std::string> wanted = r1::SplitCommaList(*only);
  for (const std::string& name : wanted)
    if (std::none_of(std::begin(shapes), std::end(shapes), [&](const Shape& s) { return name == s.name; }))
      flags.Fail("--shapes: '" + name + "' is not qkv, o, gate/up, down or lm_head");
  for (const Shape& s : shapes) {
    if (std::find(wanted.begin(), wanted.end(), s.name) == wanted.end()) continue;
    const int64_t copies = std::max<int64_t>(1, *min_mb * 1000000 / (s.n * s.k));
    std::vector<r1::model::Int8Rows> q8;
    std::vector<r1::model::Int4Groups> q4;
    // In huge pages, as the model's loader lays quantized weights out (WeightArena): 4 KiB pages
    // read slower, and the figure would not be the served layer's.
    const bool with4 = (int4 || int4_avx2) && std::string(s.name) != "lm_head";
    const size_t per_copy = static_cast<size_t>(s.n * s.k) * ((int8 || int8_avx2) + with4) +
                            static_cast<size_t>(s.n) * 4 * 4 + (size_t{3} << 12) * 4;
    auto arena = r1::model::WeightArena::Create(per_copy * static_cast<size_t>(copies));
    auto keep = [&arena](const at::Tensor& t) { return arena ? arena->Copy(t, t.scalar_type()) : t; };
    for (int64_t i = 0; i < copies; ++i) {
      at::Tensor w = at::randn({s.n, s.k}) * 0.02;
      if (int8 || int8_avx2) {
        r1::model::Int8Rows r = r1::model::QuantizeInt8Rows(w);
        q8.push_back({keep(r.q), keep(r.scale)});
      }
      if (with4) {
        r1::model::Int4Groups g = r1::model::QuantizeInt4Groups(w, *group);
        g.q = keep(g.q), g.scale = keep(g.scale), g.zero = keep(g.zero);
        q4.push_back(std::move(g));
      }
    }
    auto next = std::make_shared<size_t>(0);
    for (bool avx2 : {false, true}) {
      if (q8.empty() || (avx2 ? !int8_avx2 : !int8)) continue;
      const r1::model::Int8Isa isa = avx2 ? r1::model::Int8Isa::kAvx2 : best;
      cases.push_back({s.name, avx2 ? "int8-avx2" : "int8", s.n, s.k, [q8, next, isa](const at::Tensor& x) {
                         const auto& w = q8[(*next)++ % q8.size()];
                         return r1::model::LinearInt8(x, w.q, w.scale, at::Tensor(), isa);
                       }, static_cast<double>(q8[0].q.nbytes() + q8[0].scale.nbytes()), {}});
    }
    for (bool avx2 : {false, true}) {
      if (q4.empty() || (avx2 ? !int4_avx2 : !int4)) continue;
      const r1::model::Int8Isa isa = avx2 ? r1::model::Int8Isa::kAvx2 : best;
      cases.push_back({s.name, avx2 ? "int4-avx2" : "int4", s.n, s.k, [q4, next, isa](const at::Tensor& x) {
                         return r1::model::LinearInt4(x, q4[(*next)++ % q4.size()], at::Tensor(), isa);
                       }, static_cast<double>(q4[0].q.nbytes() + q4[0].scale.nbytes() + q4[0].zero.nbytes()), {}});
    }
  }
  const double bw = r1::bench::ReadBandwidthGBs(nthreads, 5);
  const double bw_small = r1::bench::ReadBandwidthGBs(nthreads, 5, r1::bench::Pages::kSmall);
  std::printf("threads %d; read bandwidth at start (best of 5): %.1f GB/s over a buffer laid out as the weights are "
              "(%.0f%% in 2 MiB pages), %.1f GB/s over 4 KiB pages; int4 group %ld; %ld activation row(s); "
              "int8 kernel: %s\n",
              nthreads, bw, 100.0 * r1::bench::BandwidthBufferHugeBytes() / r1::bench::kBandwidthBytes, bw_small,
              static_cast<long>(*group), static_cast<long>(M), r1::model::Int8IsaName(best));
  std::vector<double> bws{bw};
  for (int64_t r = 0; r < *rounds; ++r) {
    for (Case& c : cases) {
      at::Tensor x = at::randn({M, c.k});
      c.run(x);  // warm: the weights' pages and the pool
      const int64_t n = c.name == "lm_head" ? std::max<int64_t>(1, *reps / 4) : *reps;
      auto t = Clock::now();
      for (int64_t i = 0; i < n; ++i) c.run(x);
      c.seconds.push_back(std::chrono::duration<double>(Clock::now() - t).count() / n);
    }
    bws.push_back(r1::bench::ReadBandwidthGBs(nthreads, 2));
  }
  std::sort(bws.begin(), bws.end());
  const double bw_med = bws[bws.size() / 2];
  std::printf("read bandwidth, median of the samples between rounds: %.1f GB/s (range %.1f-%.1f)\n", bw_med,
              bws.front(), bws.back());
  for (Case& c : cases) {
    std::sort(c.seconds.begin(), c.seconds.end());
    const double s = c.seconds[c.seconds.size() / 2];
    std::printf("%-8s %-9s [%6ld x %5ld] %7.2f MB  %8.3f ms  %5.1f GB/s  (%3.0f%% of the median bandwidth)  %6.1f GOP/s\n",
                c.name.c_str(), c.kind.c_str(), static_cast<long>(c.n), static_cast<long>(c.k), c.bytes / 1e6,
                s * 1e3, c.bytes / s / 1e9, 100 * c.bytes / s / 1e9 / bw_med, 2.0 * M * c.n * c.k / s / 1e9);
  }
  return 0;
}
