// The AVX512-BF16 linear kernel against a float32 reference computed from the same bf16 values.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "worker/model/cpu_gemm.h"

namespace r1::model {
namespace {

TEST(CpuGemmTest, MatchesFloatReferenceOnAwkwardShapes) {
  if (!CpuGemmAvailable()) GTEST_SKIP() << "this CPU has no AVX512-BF16; Linear falls back to at::linear";
  at::manual_seed(0);
  // K not a multiple of 32 (masked tail), N not a multiple of 4 (row tail), M across the 4-row
  // groups and the 64-row blocks.
  for (int64_t K : {32, 48, 1536}) {
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

}  // namespace
}  // namespace r1::model
