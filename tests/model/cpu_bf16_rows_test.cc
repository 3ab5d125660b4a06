// RmsNormBf16 and RopeBf16 against the ATen ops the eager path otherwise runs.
#include "worker/model/cpu_bf16_rows.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "worker/model/forward_path.h"

namespace r1::model {
namespace {

// The eager path's ATen RoPE (qwen2_eager.cc), written out.
at::Tensor AtenRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);
}

TEST(CpuBf16RowsTest, RopeIsBitIdenticalToAtenOnStridedRows) {
  at::manual_seed(3);
  for (int64_t T : {1, 3, 17}) {
    for (int64_t D : {64, 128}) {
      // q and k as the step takes them: views into one qkv row block.
      const int64_t nh = 12, kvh = 2;
      at::Tensor qkv = (at::randn({T, (nh + 2 * kvh) * D}) * 3).to(at::kBFloat16);
      at::Tensor pos = at::arange(T, at::kFloat).add_(4000);
      at::Tensor inv = at::pow(10000.0, -at::arange(0, D, 2, at::kFloat) / D);
      at::Tensor freqs = pos.unsqueeze(1) * inv.unsqueeze(0);
      at::Tensor cos = freqs.cos().to(at::kBFloat16).unsqueeze(1), sin = freqs.sin().to(at::kBFloat16).unsqueeze(1);
      for (auto [first, heads] : {std::pair<int64_t, int64_t>{0, nh}, {nh, kvh}}) {
        at::Tensor x = qkv.narrow(1, first * D, heads * D).view({T, heads, D});
        ASSERT_TRUE(RopeBf16Applies(x, cos, sin));
        at::Tensor ours = RopeBf16(x, cos, sin), ref = AtenRope(x, cos, sin);
        ASSERT_EQ(ours.sizes(), ref.sizes());
        EXPECT_TRUE(ours.is_contiguous());
        EXPECT_TRUE(at::equal(ours, ref)) << "T " << T << " D " << D << " heads " << heads
                                          << ": max diff " << (ours.to(at::kFloat) - ref.to(at::kFloat)).abs().max().item<float>();
      }
    }
  }
}

// One bf16 ulp of |ref| (7 stored mantissa bits), at least the smallest normal's.
at::Tensor Ulp(const at::Tensor& ref) {
  at::Tensor a = ref.to(at::kFloat).abs().clamp_min(1e-30);
  return at::pow(2.0, at::floor(at::log2(a)) - 7);
}

TEST(CpuBf16RowsTest, RmsNormIsAtenToOneUlpAndMostlyExact) {
  at::manual_seed(4);
  int64_t total = 0, differ = 0;
  for (int64_t T : {1, 2, 33}) {
    for (int64_t H : {1536, 1000, 24}) {
      // A residual stream's spread: most values small, a few large.
      at::Tensor base = at::randn({T, H + 8}) * at::exp(at::randn({T, H + 8}));
      at::Tensor x = base.to(at::kBFloat16).narrow(1, 3, H);  // rows strided by H + 8
      at::Tensor w = (at::randn({H}) * 0.2 + 1).to(at::kBFloat16);
      ASSERT_TRUE(RmsNormBf16Applies(x, w));
      at::Tensor ours = RmsNormBf16(x, w, 1e-6), ref = RmsNorm(x, w, 1e-6);
      ASSERT_EQ(ours.scalar_type(), at::kBFloat16);
      at::Tensor diff = (ours.to(at::kFloat) - ref.to(at::kFloat)).abs();
      EXPECT_TRUE(diff.le(Ulp(ref)).all().item<bool>())
          << "T " << T << " H " << H << ": max diff " << diff.max().item<float>();
      total += ours.numel();
      differ += diff.gt(0).sum().item<int64_t>();
    }
  }
  // The scale's last float bit moves an output's rounding only near a bf16 tie.
  EXPECT_LE(differ * 100, total) << differ << " of " << total << " outputs differ from ATen's";
}

TEST(CpuBf16RowsTest, OtherTensorsAreLeftToAten) {
  at::Tensor x = at::randn({2, 64});
  at::Tensor w = at::ones({64});
  EXPECT_FALSE(RmsNormBf16Applies(x, w));                                           // float32
  EXPECT_FALSE(RmsNormBf16Applies(x.to(at::kBFloat16), w));                         // weight float32
  EXPECT_FALSE(RmsNormBf16Applies(x.to(at::kBFloat16).t(), w.to(at::kBFloat16)));   // strided H
  EXPECT_TRUE(RmsNormBf16Applies(x.to(at::kBFloat16), w.to(at::kBFloat16)));
  at::Tensor q = at::randn({2, 3, 64}).to(at::kBFloat16);
  at::Tensor cs = at::randn({2, 1, 32}).to(at::kBFloat16);
  EXPECT_TRUE(RopeBf16Applies(q, cs, cs));
  EXPECT_FALSE(RopeBf16Applies(q.to(at::kFloat), cs, cs));
  EXPECT_FALSE(RopeBf16Applies(q, cs.to(at::kFloat), cs));
  EXPECT_FALSE(RopeBf16Applies(q, at::randn({2, 1, 16}).to(at::kBFloat16), cs));
}

}  // namespace
}  // namespace r1::model
