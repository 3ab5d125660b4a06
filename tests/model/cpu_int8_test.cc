// The int8 linear kernel and its quantizer against ATen: the quantization written out in ATen
// ops, the int32 sums as an int64 matmul of the same int8 values, the epilogue as ATen's
// float32 multiply and add. Exact: nothing may differ but nothing.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "worker/model/cpu_int8.h"

namespace r1::model {
namespace {

// QuantizeInt8Rows in ATen ops: scale = amax / 127 (1 for zero rows), q = round(x / scale).
Int8Rows AtenQuantize(const at::Tensor& x) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor amax = xf.abs().amax(1);
  at::Tensor scale = at::where(amax > 0, amax / 127.f, at::ones_like(amax));
  at::Tensor q = (xf / scale.unsqueeze(1)).round().clamp(-127, 127).to(at::kChar);
  return {q, scale};
}

// LinearInt8's definition in ATen ops.
at::Tensor AtenLinearInt8(const at::Tensor& x, const Int8Rows& w, const at::Tensor& b) {
  Int8Rows xq = AtenQuantize(x);
  at::Tensor acc = at::mm(xq.q.to(at::kLong), w.q.to(at::kLong).t());  // exact integer sums
  at::Tensor y = acc.to(at::kFloat) * (xq.scale.unsqueeze(1) * w.scale.unsqueeze(0));
  if (b.defined()) y = y + b.to(at::kFloat);
  return y.to(x.scalar_type());
}

TEST(CpuInt8Test, QuantizeMatchesAtenIncludingZeroRowsAndTies) {
  at::manual_seed(1);
  at::Tensor w = at::randn({37, 301});
  w[3].zero_();  // an all-zero row: scale 1, q 0
  // Exact halves after division: 127 * 0.5 / 127 ... rows whose values land on .5 steps.
  w[5] = at::arange(-150, 151, at::kFloat).div(2);
  for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
    at::Tensor src = w.to(dt);
    Int8Rows got = QuantizeInt8Rows(src);
    Int8Rows ref = AtenQuantize(src);
    ASSERT_TRUE(at::equal(got.scale, ref.scale)) << dt;
    ASSERT_TRUE(at::equal(got.q, ref.q)) << dt;
    EXPECT_EQ(got.scale[3].item<float>(), 1.f);
    EXPECT_EQ(got.q.abs().max().item<int8_t>(), 127);
  }
}

// Each kernel: the AVX2 one wherever the int8 path loads, the AVX512-VNNI one where the CPU has
// it (skipped, with the reason, where not).
class CpuInt8KernelTest : public ::testing::TestWithParam<Int8Isa> {
 protected:
  void SetUp() override {
    if (!Int8KernelAvailable()) GTEST_SKIP() << "this CPU has no AVX2: the int8 path refuses to load";
    if (!Int8IsaAvailable(GetParam()))
      GTEST_SKIP() << "this CPU has no " << Int8IsaName(GetParam()) << " (the AVX2 kernel's tests still run)";
  }
};

TEST_P(CpuInt8KernelTest, LinearEqualsAtenOnAwkwardShapes) {
  const Int8Isa isa = GetParam();
  at::manual_seed(2);
  // K across the 4-byte, 32- and 64-byte tails and the model's sizes (449 and 1601: decode's
  // 256-byte prefetched steps, then 64-byte steps, then a masked tail); N across the 4- and 8-row
  // tiles and the GEMM's 64-row chunks; M across the 2-row tiles, the decode sizes, the GEMM's
  // 16-row groups (16, 17, 47, 49: whole, plus one, the 3-group tile minus and plus one) and a
  // prefill that spans several blocks of x.
  for (int64_t K : {1, 3, 31, 32, 33, 65, 96, 449, 1536, 1601, 8960}) {
    for (int64_t N : {1, 5, 8, 13, 67}) {
      for (int64_t M : {1, 2, 3, 15, 16, 17, 47, 49, 130}) {
        if (K == 8960 && M == 130 && N == 67) continue;  // the int64 reference is slow there
        at::Tensor w = at::randn({N, K}) * 0.05;
        w[0].zero_();
        Int8Rows wq = QuantizeInt8Rows(w);
        at::Tensor b = at::randn({N});
        for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
          at::Tensor x = at::randn({M, K}).to(dt);
          if (M > 2) x[1].zero_();  // a zero activation row
          for (bool bias : {false, true}) {
            at::Tensor bb = bias ? b.to(dt) : at::Tensor();
            at::Tensor got = LinearInt8(x, wq.q, wq.scale, bb, isa);
            at::Tensor ref = AtenLinearInt8(x, wq, bb);
            ASSERT_EQ(got.scalar_type(), dt);
            ASSERT_TRUE(at::equal(got, ref)) << Int8IsaName(isa) << " M " << M << " N " << N << " K " << K << " "
                                             << dt << " bias " << bias << ": max diff "
                                             << (got.to(at::kFloat) - ref.to(at::kFloat)).abs().max().item<float>();
          }
        }
      }
    }
  }
}

TEST_P(CpuInt8KernelTest, ExtremesDoNotSaturate) {
  // Every product at +-127 * +-127: the int16 pair sums of vpmaddubsw peak at 32,258; with
  // VNNI's offset, (q + 128) * w reaches 254 * 127 a product, 290 million over K = 8960.
  for (int64_t M : {2, 20}) {
    for (int64_t K : {4096, 8960}) {
      at::Tensor wq = at::full({4, K}, 127, at::kChar);
      wq[1].fill_(-127);
      wq[2].copy_(at::arange(K, at::kLong).remainder(2).mul(254).sub(127).to(at::kChar));
      at::Tensor ws = at::ones({4});
      at::Tensor x = at::full({M, K}, -3.f);
      x[1].copy_(at::arange(K, at::kLong).remainder(3).sub(1).to(at::kFloat));
      if (M > 2) x[2].fill_(5.f);  // every x quantizes to +127
      at::Tensor got = LinearInt8(x, wq, ws, at::Tensor(), GetParam());
      at::Tensor ref = AtenLinearInt8(x, {wq, ws}, at::Tensor());
      ASSERT_TRUE(at::equal(got, ref)) << "M " << M << " K " << K;
      // Row 0: every x quantizes to -127, so the sum is -127 * 127 * K (far past int16).
      EXPECT_NEAR(got[0][0].item<float>() / (3.f / 127.f), -127.0 * 127.0 * K, 1e-5 * 127.0 * 127.0 * K);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, CpuInt8KernelTest,
                         ::testing::Values(Int8Isa::kAvx2, Int8Isa::kAvx512Vnni),
                         [](const ::testing::TestParamInfo<Int8Isa>& info) {
                           return info.param == Int8Isa::kAvx2 ? std::string("Avx2") : std::string("Avx512Vnni");
                         });

TEST(CpuInt8Test, BestKernelIsVnniWhereTheCpuHasIt) {
  EXPECT_EQ(BestInt8Isa() == Int8Isa::kAvx512Vnni, Int8IsaAvailable(Int8Isa::kAvx512Vnni));
  if (!Int8IsaAvailable(Int8Isa::kAvx512Vnni)) {
    EXPECT_THROW(LinearInt8(at::zeros({2, 8}), at::zeros({4, 8}, at::kChar), at::ones({4}), at::Tensor(),
                            Int8Isa::kAvx512Vnni),
                 c10::Error);
  }
}

TEST(CpuInt8Test, RejectsMismatchedOperands) {
  at::Tensor wq = at::zeros({4, 8}, at::kChar);
  EXPECT_THROW(LinearInt8(at::zeros({2, 9}), wq, at::ones({4})), c10::Error);
  EXPECT_THROW(LinearInt8(at::zeros({2, 8}), wq, at::ones({3})), c10::Error);
  EXPECT_THROW(LinearInt8(at::zeros({2, 8}), wq.to(at::kFloat), at::ones({4})), c10::Error);
  EXPECT_THROW(QuantizeInt8Rows(at::zeros({8}, at::kFloat)), c10::Error);
}

}  // namespace
}  // namespace r1::model
