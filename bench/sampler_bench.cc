// sampler_bench: the CPU sampler (SampleBatch: logits to the host, per-row C++) against the
// device sampler (SampleBatchOnDevice: ATen ops where the logits are) on CPU tensors, for the
// vocabulary of DeepSeek-R1-Distill-Qwen (151,936). Prints ms per call by batch size and mode.
//   sampler_bench [--vocab N] [--batches 1,16,64,256] [--device cpu|cuda]
#include <ATen/ATen.h>

#include <chrono>
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
  Mode modes[3];
  modes[0].name = "greedy";
  modes[1].name = "temperature 0.7";
  modes[1].o.temperature = 0.7f;
  modes[2].name = "t 0.7, top-p 0.95";
  modes[2].o.temperature = 0.7f;
  modes[2].o.top_p = 0.95f;
  std::printf("%-18s %6s %12s %12s\n", "mode", "batch", "cpu ms", "device ms");
  for (const std::string& b : r1::SplitCommaList(*batches)) {
    const int64_t n = std::stoll(b);
    at::Tensor logits = at::randn({n, *vocab}).mul_(3).to(dev);
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
      double cpu = MsPerCall([&] {
        r1::engine::SampleBatch(logits, opts, states);
        clear();
      });
      double on_dev = MsPerCall([&] {
        r1::engine::SampleBatchOnDevice(logits, opts, states);
        clear();
      });
      std::printf("%-18s %6lld %12.2f %12.2f\n", m.name, static_cast<long long>(n), cpu, on_dev);
    }
  }
  return 0;
}
