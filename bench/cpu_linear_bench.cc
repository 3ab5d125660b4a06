// Speed of one quantized linear layer at decode (one activation row) on the CPU: the 1.5B's
// shapes, lm_head included, as int8 (cpu_int8.h) and int4 (cpu_int4.h). A decode step's
// linear layer reads every weight byte once, so each figure is GB/s of weight bytes read,
// beside the read bandwidth measured in the same run (bench/read_bandwidth.h). Shapes and kinds
// are measured in alternating rounds; figures are medians.
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
  std::string* kinds = flags.String("kinds", "int8,int4", "int8, int4 or both");
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
  const bool int8 = kinds->find("int8") != std::string::npos, int4 = kinds->find("int4") != std::string::npos;
  at::manual_seed(0);
  for (const Shape& s : shapes) {
    const int64_t copies = std::max<int64_t>(1, *min_mb * 1000000 / (s.n * s.k));
    std::vector<r1::model::Int8Rows> q8;
    std::vector<r1::model::Int4Groups> q4;
    for (int64_t i = 0; i < copies; ++i) {
      at::Tensor w = at::randn({s.n, s.k}) * 0.02;
      if (int8) q8.push_back(r1::model::QuantizeInt8Rows(w));
      if (int4 && std::string(s.name) != "lm_head") q4.push_back(r1::model::QuantizeInt4Groups(w, *group));
    }
    auto next = std::make_shared<size_t>(0);
    if (!q8.empty())
      cases.push_back({s.name, "int8", s.n, s.k, [q8, next](const at::Tensor& x) {
                         const auto& w = q8[(*next)++ % q8.size()];
                         return r1::model::LinearInt8(x, w.q, w.scale);
                       }, static_cast<double>(q8[0].q.nbytes() + q8[0].scale.nbytes())});
    if (!q4.empty())
      cases.push_back({s.name, "int4", s.n, s.k, [q4, next](const at::Tensor& x) {
                         return r1::model::LinearInt4(x, q4[(*next)++ % q4.size()]);
                       }, static_cast<double>(q4[0].q.nbytes() + q4[0].scale.nbytes() + q4[0].zero.nbytes())});
  }
  const double bw = r1::bench::ReadBandwidthGBs(nthreads, 5);
  std::printf("threads %d; read bandwidth at start (best of 5): %.1f GB/s; int4 group %ld; %ld activation row(s)\n",
              nthreads, bw, static_cast<long>(*group), static_cast<long>(M));
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
    std::printf("%-8s %-5s [%6ld x %5ld] %7.2f MB  %8.3f ms  %5.1f GB/s  (%3.0f%% of the median bandwidth)\n",
                c.name.c_str(), c.kind.c_str(), static_cast<long>(c.n), static_cast<long>(c.k), c.bytes / 1e6,
                s * 1e3, c.bytes / s / 1e9, 100 * c.bytes / s / 1e9 / bw_med);
  }
  return 0;
}
