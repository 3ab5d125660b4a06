// The AVX512-BF16 linear kernel against a float32 reference computed from the same bf16 values.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "worker/model/cpu_gemm.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <cmath>
#include <mutex>
#include <set>
#include <thread>

#include "worker/model/cpu_parallel.h"

namespace r1::model {
namespace {

TEST(CpuGemmTest, MatchesFloatReferenceOnAwkwardShapes) {
  if (!CpuGemmAvailable()) GTEST_SKIP() << "this CPU has no AVX512-BF16; Linear falls back to at::linear";
  at::manual_seed(0);
  // K not a multiple of 32 (masked tail) nor of 128 (the one-row path's 4-way unroll), N not a
  // multiple of 4 (row tail), M = 1 (one-row path) and across the 4-row groups.
  for (int64_t K : {32, 48, 200, 1536}) {
    for (int64_t N : {1, 7, 64, 130}) {
      for (int64_t M : {1, 2, 3, 4, 5, 9, 31, 32}) {
        at::Tensor w = at::randn({N, K}).to(at::kBFloat16);
        at::Tensor b = at::randn({N}).to(at::kBFloat16);
        at::Tensor x = at::randn({M, K}).to(at::kBFloat16);
        at::Tensor ref = at::linear(x.to(at::kFloat), w.to(at::kFloat), b.to(at::kFloat));
        at::Tensor got = Linear(x, w, b);
        ASSERT_EQ(got.scalar_type(), at::kBFloat16);
        ASSERT_EQ(got.sizes(), ref.sizes());
        // Only the final rounding to bf16 (8 significant bits) separates the two.
        at::Tensor err = (got.to(at::kFloat) - ref).abs();
        at::Tensor allowed = ref.abs() * (1.0 / 128) + 1e-3;
        EXPECT_TRUE((err <= allowed).all().item<bool>())
            << "M " << M << " N " << N << " K " << K << " max err " << err.max().item<float>();
        at::Tensor no_bias = Linear(x, w);
        at::Tensor ref_nb = at::linear(x.to(at::kFloat), w.to(at::kFloat));
        EXPECT_TRUE(((no_bias.to(at::kFloat) - ref_nb).abs() <= ref_nb.abs() / 128 + 1e-3).all().item<bool>());
      }
    }
  }
}

TEST(CpuGemmTest, FallsBackForOtherDtypesAndLayouts) {
  at::Tensor w = at::randn({8, 16}), x = at::randn({3, 16});
  EXPECT_TRUE(at::allclose(Linear(x, w), at::linear(x, w)));  // float32: at::linear itself
  at::Tensor wt = at::randn({16, 8}).to(at::kBFloat16).t();   // not contiguous
  at::Tensor xb = x.to(at::kBFloat16);
  EXPECT_TRUE(at::allclose(Linear(xb, wt).to(at::kFloat), at::linear(xb, wt).to(at::kFloat), 1e-2, 1e-2));
}

TEST(CpuGemmTest, LargeOutputSpreadOverThreadsMatches) {
  if (!CpuGemmAvailable()) GTEST_SKIP() << "this CPU has no AVX512-BF16";
  at::manual_seed(1);
  // Many 128 KiB chunks of rows, taken by every thread from the shared counter.
  at::Tensor w = at::randn({3000, 1000}).to(at::kBFloat16);
  for (int64_t M : {1, 3, 16}) {
    at::Tensor x = at::randn({M, 1000}).to(at::kBFloat16);
    at::Tensor ref = at::linear(x.to(at::kFloat), w.to(at::kFloat));
    at::Tensor got = Linear(x, w).to(at::kFloat);
    EXPECT_TRUE(((got - ref).abs() <= ref.abs() / 128 + 1e-3).all().item<bool>()) << "M " << M;
  }
}

TEST(CpuGemmTest, GateUpMatchesUnfusedSwiGlu) {
  if (!CpuGemmAvailable()) GTEST_SKIP() << "this CPU has no AVX512-BF16";
  at::manual_seed(2);
  for (int64_t K : {48, 1536}) {
    for (int64_t N : {7, 600}) {
      at::Tensor wg = (at::randn({N, K}) / std::sqrt(K)).to(at::kBFloat16);
      at::Tensor wu = (at::randn({N, K}) / std::sqrt(K)).to(at::kBFloat16);
      for (int64_t M : {1, 5, 32, 40}) {  // 40: past the kernel's rows, the unfused fallback
        at::Tensor x = at::randn({M, K}).to(at::kBFloat16);
        at::Tensor xf = x.to(at::kFloat);
        at::Tensor ref = at::silu(at::linear(xf, wg.to(at::kFloat))) * at::linear(xf, wu.to(at::kFloat));
        at::Tensor got = GateUp(x, wg, wu);
        ASSERT_EQ(got.scalar_type(), at::kBFloat16);
        ASSERT_EQ(got.sizes(), ref.sizes());
        // g, silu(g), u and the product are each rounded to bf16 (as the unfused ops do).
        at::Tensor err = (got.to(at::kFloat) - ref).abs();
        EXPECT_TRUE((err <= ref.abs() * (4.0 / 128) + 2e-2).all().item<bool>())
            << "M " << M << " N " << N << " K " << K << " max err " << err.max().item<float>();
      }
    }
  }
}

TEST(CpuParallelTest, RunsEveryThreadIndexOnceOnDistinctThreads) {
  const int saved = at::get_num_threads();
  at::set_num_threads(2);
  std::mutex mu;
  std::multiset<int> seen;
  std::set<std::thread::id> ids;
  int reported = 0;
  ParallelRun([&](int t, int n) {
    std::lock_guard<std::mutex> lock(mu);
    seen.insert(t);
    ids.insert(std::this_thread::get_id());
    reported = n;
  });
  if (ParallelAvailable()) {
    // Two real threads (at::parallel_for would run serially in a file built without -fopenmp).
    EXPECT_EQ(reported, 2);
    EXPECT_EQ(seen, (std::multiset<int>{0, 1}));
    EXPECT_EQ(ids.size(), 2u);
  } else {
    EXPECT_EQ(seen, (std::multiset<int>{0}));
  }
  // Inside a team, a nested call runs serially on the calling thread.
  std::atomic<int> nested{0};
  ParallelRun([&](int, int) { ParallelRun([&](int t, int n) { nested += (t == 0 && n == 1); }); });
  EXPECT_EQ(nested.load(), ParallelAvailable() ? 2 : 1);
  at::set_num_threads(saved);
}

}  // namespace
}  // namespace r1::model
