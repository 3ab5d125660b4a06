// sampler_bench: the CPU sampler (SampleBatch: logits to the host, per-row C++) against the
// device sampler (SampleBatchOnDevice: ATen ops where the logits are), for the vocabulary of
// DeepSeek-R1-Distill-Qwen (151,936). Prints ms per call by batch size, mode and logit scale
// (randn times the scale: 1 is as wide as the random-weight model's rows, 8 is peaked). On CUDA
// the top-p rows run the sort-free kernel; the last column is the same call with the sort.
//   sampler_bench [--vocab N] [--batches 1,16,64,256] [--scales 1,3] [--device cpu|cuda] [--cpu 0]
#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "common/flags.h"
#include "worker/engine/device_sampler.h"
#include "worker/engine/sampler.h"

namespace {

using r1::engine::SamplerState;
using r1::engine::SamplingOptions;

template <class F>
double MsPerCall(F f) {
  f();  // warm-up
  int n = 0;
  auto t0 = std::chrono::steady_clock::now();
  double ms = 0;
  do {
    f();
    ++n;
    ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  } while (ms < 1000 && n < 50);
  return ms / n;
}

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("sampler_bench", "CPU sampler vs device sampler, ms per batch.");
  int64_t* vocab = flags.Int("vocab", 151936, "vocabulary size");
  std::string* batches = flags.String("batches", "1,16,64,256", "batch sizes");
  std::string* device = flags.String("device", "cpu", "where the logits live: cpu or cuda");
  std::string* scales = flags.String("scales", "3", "logits are randn times each of these");
  bool* with_cpu = flags.Bool("cpu", true, "also time the CPU sampler");
  flags.ParseOrExit(argc, argv);
  if (*vocab <= 0) flags.Fail("--vocab must be > 0");
  at::Device dev(at::kCPU);
  try {
    dev = at::Device(*device);
  } catch (const std::exception&) {
    flags.Fail("--device: not a device: " + *device);
  }
  struct Mode {
    const char* name;
    SamplingOptions o;
  };
  Mode modes[4];
  modes[0].name = "greedy";
  modes[1].name = "temperature 0.7";
  modes[1].o.temperature = 0.7f;
  modes[2].name = "t 0.7, top-p 0.95";
  modes[2].o.temperature = 0.7f;
  modes[2].o.top_p = 0.95f;
  modes[3].name = "t 0.6, top-p 0.95";  // the R1 distills' generation_config
  modes[3].o.temperature = 0.6f;
  modes[3].o.top_p = 0.95f;
  const bool cuda = dev.is_cuda();
  std::printf("%-18s %5s %6s %12s %12s %s\n", "mode", "scale", "batch", "cpu ms", "device ms",
              cuda ? "  device ms, sorted top-p" : "");
  for (const std::string& sc : r1::SplitCommaList(*scales))
  for (const std::string& b : r1::SplitCommaList(*batches)) {
    const int64_t n = std::stoll(b);
    const double scale = std::stod(sc);
    at::Tensor logits = at::randn({n, *vocab}).mul_(scale).to(dev);
    for (const Mode& m : modes) {
      std::vector<std::unique_ptr<SamplerState>> owned;
      std::vector<SamplerState*> states;
      for (int64_t i = 0; i < n; ++i) {
        owned.push_back(std::make_unique<SamplerState>(i));
        states.push_back(owned.back().get());
      }
      std::vector<const SamplingOptions*> opts(static_cast<size_t>(n), &m.o);
      auto clear = [&] {
        for (SamplerState* s : states) s->output.clear();
      };
      double cpu = std::nan("");
      if (*with_cpu) {
        cpu = MsPerCall([&] {
          r1::engine::SampleBatch(logits, opts, states);
          clear();
        });
      }
      auto on_device = [&] {
        return MsPerCall([&] {
          r1::engine::SampleBatchOnDevice(logits, opts, states);
          clear();
        });
      };
      const double on_dev = on_device();
      std::printf("%-18s %5s %6lld %12.2f %12.3f", m.name, sc.c_str(), static_cast<long long>(n),
                  cpu, on_dev);
      if (cuda) {
        r1::engine::SetTopPKernel(false);
        std::printf(" %12.3f", on_device());
        r1::engine::SetTopPKernel(true);
      }
      std::printf("\n");
    }
  }
  return 0;
}
