// Memory read bandwidth as our kernels see it, for the benches' bounds (bytes / bandwidth).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <vector>

#include "worker/model/cpu_parallel.h"

namespace r1::bench {

// Read bandwidth: `threads` threads (the pool our kernels run on) sum a 1 GiB buffer, taking
// 256 KiB chunks from a shared counter; best of `reps` passes.
inline constexpr size_t kBandwidthBytes = size_t{1} << 30;
inline double ReadBandwidthGBs(int threads, int reps) {
  const size_t n = kBandwidthBytes / sizeof(float);
  // Distinct pages (a buffer of one repeated value could be deduplicated under a hypervisor and
  // read from cache); small values, no denormals.
  static const std::vector<float> buf = [n] {
    std::vector<float> b(n);
    uint64_t x = 88172645463325252ull;
    for (float& f : b) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      f = static_cast<float>(x & 0xffff) * 1e-5f;
    }
    return b;
  }();
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
