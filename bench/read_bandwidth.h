// Memory read bandwidth as our kernels see it, for the benches' bounds (bytes / bandwidth).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <numeric>
#include <vector>

#include "worker/model/cpu_parallel.h"
#include "worker/model/cpu_weights.h"

namespace r1::bench {

// The pages the buffer sits in. The served weights sit in a WeightArena (2 MiB pages when the
// kernel grants them), and so does the default buffer. On a 2-vCPU KVM guest the same loop over
// 4 KiB pages read 2-25% less, varying from process to process (20-21 GB/s against 24-28 in
// cpu_model_bench), which once put int8 decode at 107-113% of its "bound".
enum class Pages { kHuge, kSmall };

inline constexpr size_t kBandwidthBytes = size_t{1} << 30;

namespace detail {
// Distinct pages (a buffer of one repeated value could be deduplicated under a hypervisor and
// read from cache); small values, no denormals.
inline void FillRandom(float* b, size_t n) {
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    b[i] = static_cast<float>(x & 0xffff) * 1e-5f;
  }
}

struct HugeBuffer {
  std::shared_ptr<r1::model::WeightArena> arena;
  at::Tensor t;
};

inline const HugeBuffer& HugeBandwidthBuffer() {
  static const HugeBuffer b = [] {
    const int64_t n = static_cast<int64_t>(kBandwidthBytes / sizeof(float));
    HugeBuffer h{r1::model::WeightArena::Create(kBandwidthBytes), at::Tensor()};
    h.t = h.arena ? h.arena->Zeros({n}, at::kFloat) : at::empty({n}, at::kFloat);
    FillRandom(h.t.data_ptr<float>(), static_cast<size_t>(n));
    return h;
  }();
  return b;
}

inline const float* Buffer(Pages pages) {
  if (pages == Pages::kHuge) return HugeBandwidthBuffer().t.data_ptr<float>();
  static const std::vector<float> small = [] {
    std::vector<float> b(kBandwidthBytes / sizeof(float));
    FillRandom(b.data(), b.size());
    return b;
  }();
  return small.data();
}
}  // namespace detail

// Bytes of the default (kHuge) buffer that the kernel backs with 2 MiB pages: the benches
// print it so that a bound taken over 4 KiB pages is visible.
inline size_t BandwidthBufferHugeBytes() {
  const auto& b = detail::HugeBandwidthBuffer();
  return b.arena ? b.arena->HugeBytes() : 0;
}

// Read bandwidth: `threads` threads (the pool our kernels run on) sum a 1 GiB buffer, taking
// 256 KiB chunks from a shared counter; best of `reps` passes.
inline double ReadBandwidthGBs(int threads, int reps, Pages pages = Pages::kHuge) {
  const size_t n = kBandwidthBytes / sizeof(float);
  const float* buf = detail::Buffer(pages);
  double best = 0;
  std::vector<float> partial(64 * 16, 0.f);
  for (int rep = 0; rep < reps; ++rep) {
    auto t = std::chrono::steady_clock::now();
    std::atomic<size_t> next{0};
    const size_t chunk = size_t{1} << 16;  // floats: 256 KiB
    r1::model::ParallelRun(
        [&](int slot) {
          float s[16] = {0};
          for (size_t b; (b = next.fetch_add(chunk)) < n;)
            for (size_t i = b; i < b + chunk; i += 16)
              for (int j = 0; j < 16; ++j) s[j] += buf[i + static_cast<size_t>(j)];
          partial[static_cast<size_t>(slot) * 16] += std::accumulate(s, s + 16, 0.f);
        },
        threads);
    best = std::max(best, n * 4 / std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count() / 1e9);
  }
  volatile float sink = std::accumulate(partial.begin(), partial.end(), 0.f);
  (void)sink;
  return best;
}

}  // namespace r1::bench
