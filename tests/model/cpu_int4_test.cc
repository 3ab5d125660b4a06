// The int4 linear kernel, its quantizer and the AWQ conversion, each against ATen written out
// here from the layouts' definitions (cpu_int4.h, awq.h): the nibbles unpacked with shifts,
// the weights dequantized, the activations quantized as QuantizeInt8Rows does, and the product
// summed in float64. The kernel's integer sums are exact; what may differ is float32 rounding
// in the per-block scaling and the sums over blocks, bounded below.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "worker/model/awq.h"
#include "worker/model/cpu_int4.h"
#include "worker/model/cpu_int8.h"
#include "worker/model/int4_layout.h"

namespace r1::model {
namespace {

int64_t Padded(int64_t k) { return (k + 63) / 64 * 64; }

// Int4Groups::q's layout read back with shifts: byte j of 32-column block b holds column 32 b + j
// in its low nibble and 32 b + 16 + j in its high one. [N, K] int64.
at::Tensor AtenUnpack(const at::Tensor& packed, int64_t K) {
  at::Tensor v = packed.to(at::kLong).view({packed.size(0), -1, 1, 16});
  at::Tensor nibbles = at::cat({v.bitwise_and(15), v.bitwise_right_shift(4)}, 2);  // [N, blocks, 2, 16]
  return nibbles.reshape({packed.size(0), -1}).narrow(1, 0, K);
}

// W = scale * (q - zero), per group of columns, in float64 (exact for these values).
at::Tensor AtenDequantize(const Int4Groups& w) {
  at::Tensor q = AtenUnpack(w.q, w.k).to(at::kDouble);
  at::Tensor g = at::arange(w.k, at::kLong).div(w.group, "floor");
  at::Tensor scale = w.scale.to(at::kDouble).index_select(1, g), zero = w.zero.to(at::kDouble).index_select(1, g);
  return scale * (q - zero);
}

// QuantizeInt8Rows in ATen ops (as cpu_int8_test writes it).
std::pair<at::Tensor, at::Tensor> AtenQuantizeRows(const at::Tensor& x) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor amax = xf.abs().amax(1);
  at::Tensor scale = at::where(amax > 0, amax / 127.f, at::ones_like(amax));
  return {(xf / scale.unsqueeze(1)).round().clamp(-127, 127), scale};
}

// LinearInt4(x, wq, b in x's dtype, isa) against Σ_k xq * scale * (q - zero) in float64 (deq:
// AtenDequantize(wq)), times the activation scale, plus the bias as the kernel is given it:
// within float32 rounding of a few hundred block terms and their sum (1e-5 of their
// magnitudes), then x's dtype (bf16: half an ulp is 2^-9, so 1/256 of the value). A fatal
// failure names `where`.
void ExpectLinearInt4EqualsAten(const at::Tensor& x, const Int4Groups& wq, const at::Tensor& deq, const at::Tensor& b,
                                Int8Isa isa, const std::string& where) {
  const at::ScalarType dt = x.scalar_type();
  auto [xq, xs] = AtenQuantizeRows(x);
  const at::Tensor bd = b.to(dt).to(at::kDouble);  // the bias the kernel is given
  at::Tensor terms = xq.to(at::kDouble).unsqueeze(1) * deq.unsqueeze(0);  // [M, N, K]
  at::Tensor ref = terms.sum(2) * xs.to(at::kDouble).unsqueeze(1) + bd;
  at::Tensor mag = terms.abs().sum(2) * xs.to(at::kDouble).unsqueeze(1) + bd.abs();
  at::Tensor got = LinearInt4(x, wq, b.to(dt), isa);
  ASSERT_EQ(got.scalar_type(), dt) << where;
  const double eps = dt == at::kFloat ? 0 : 1.0 / 256;
  at::Tensor err = (got.to(at::kDouble) - ref).abs() - (mag * 1e-5 + ref.abs() * eps);
  ASSERT_LE(err.max().item<double>(), 0.0)
      << Int8IsaName(isa) << " " << where << " " << dt << ": max diff "
      << (got.to(at::kDouble) - ref).abs().max().item<double>();
}

TEST(CpuInt4Test, QuantizeMatchesAtenAndKeepsZeroAndConstants) {
  at::manual_seed(1);
  for (int64_t group : {32, 64, 128}) {
    for (int64_t K : {48, 72, 128, 200}) {
      at::Tensor w = at::randn({9, K}) * 0.1;
      w[2].zero_();                    // zeros: exact
      w[3].fill_(0.25);                // a constant row: every group exact
      w[4] = w[4].abs() + 0.01;        // all positive: zero point 0
      for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
        at::Tensor src = w.to(dt);
        Int4Groups got = QuantizeInt4Groups(src, group);
        const int64_t G = Int4NumGroups(K, group);
        ASSERT_EQ(got.q.sizes(), at::IntArrayRef({9, Padded(K) / 2}));
        ASSERT_EQ(got.scale.sizes(), at::IntArrayRef({9, G}));
        // The definition in ATen ops, group by group.
        at::Tensor wf = src.to(at::kFloat);
        for (int64_t g = 0; g * group < K; ++g) {
          at::Tensor part = wf.narrow(1, g * group, std::min(group, K - g * group));
          at::Tensor lo = part.amin(1).clamp_max(0), hi = part.amax(1).clamp_min(0);
          at::Tensor scale = at::where(hi > lo, (hi - lo) / 15.f, at::ones_like(hi));
          at::Tensor zero = (-lo / scale).round().clamp(0, 15);
          at::Tensor q = ((part / scale.unsqueeze(1)).round() + zero.unsqueeze(1)).clamp(0, 15);
          ASSERT_TRUE(at::equal(got.scale.select(1, g), scale)) << "group " << g;
          ASSERT_TRUE(at::equal(got.zero.select(1, g).to(at::kFloat), zero)) << "group " << g;
          ASSERT_TRUE(at::equal(AtenUnpack(got.q, K).narrow(1, g * group, part.size(1)).to(at::kFloat), q));
        }
        // Groups past K (group 32 with K % 64 in (0, 32]) are scale 0, zero 0.
        for (int64_t g = (K + group - 1) / group; g < G; ++g)
          EXPECT_EQ(got.scale.select(1, g).abs().sum().item<float>(), 0.f);
        at::Tensor deq = AtenDequantize(got);
        EXPECT_EQ(deq[2].abs().max().item<double>(), 0.0);
        EXPECT_TRUE(at::allclose(deq[3], at::full({K}, 0.25, at::kDouble), 0, 1e-7));
        // Round to nearest: within half a step of the source.
        at::Tensor step = got.scale.to(at::kDouble).index_select(1, at::arange(K, at::kLong).div(group, "floor"));
        EXPECT_TRUE((deq - wf.to(at::kDouble)).abs().le(step * 0.5 + 1e-7).all().item<bool>());
      }
    }
  }
}

TEST(CpuInt4Test, PackAndUnpackAreInverse) {
  at::Tensor q = at::randint(0, 16, {5, 100}, at::kLong).to(at::kByte);
  at::Tensor packed = PackInt4(q);
  ASSERT_EQ(packed.sizes(), at::IntArrayRef({5, 64}));
  EXPECT_TRUE(at::equal(AtenUnpack(packed, 100).to(at::kByte), q));
  EXPECT_TRUE(at::equal(UnpackInt4(packed, 100), q));
}

// Each kernel: the AVX2 one wherever int4 loads; with kAvx512Vnni, 16 rows of x or more run
// the VNNI GEMM (skipped, with the reason, on CPUs without it).
class CpuInt4KernelTest : public ::testing::TestWithParam<Int8Isa> {
 protected:
  void SetUp() override {
    if (!Int4KernelAvailable()) GTEST_SKIP() << "this CPU has no AVX2 and FMA: int4 refuses to load";
    if (!Int8IsaAvailable(GetParam()))
      GTEST_SKIP() << "this CPU has no " << Int8IsaName(GetParam()) << " (the AVX2 kernel's tests still run)";
  }
};

TEST_P(CpuInt4KernelTest, LinearEqualsAtenOnDequantizedWeights) {
  const Int8Isa isa = GetParam();
  at::manual_seed(2);
  // K across the 64-column chunks, partial groups and the model's sizes; N across the GEMM's
  // 4-row tiles; M across the 4-row blocks of x and the GEMM's groups of 16 rows (16, 17, and
  // 49: its 3-group tile plus one); every group size.
  for (int64_t group : {32, 64, 128}) {
    for (int64_t K : {1, 32, 48, 64, 72, 200, 1536, 8960}) {
      for (int64_t N : {1, 7, 33}) {
        for (int64_t M : {1, 2, 3, 4, 5, 9, 16, 17, 49}) {
          if (K == 8960 && M == 49 && N == 33) continue;  // the float64 reference is slow there
          at::Tensor w = at::randn({N, K}) * 0.05;
          w[0].zero_();
          Int4Groups wq = QuantizeInt4Groups(w, group);
          at::Tensor b = at::randn({N});
          at::Tensor deq = AtenDequantize(wq);
          for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
            at::Tensor x = at::randn({M, K}).to(dt);
            if (M > 2) x[1].zero_();
            ExpectLinearInt4EqualsAten(x, wq, deq, b, isa,
                                       "M " + std::to_string(M) + " N " + std::to_string(N) + " K " +
                                           std::to_string(K) + " group " + std::to_string(group));
            if (HasFatalFailure()) return;
          }
        }
      }
    }
  }
}

// One row of x (decode; the VNNI kernel's own loop, four 64-byte steps an iteration): K across
// that unroll's remainders (576: 4 steps and a half; 704: 5 and a half; 2048: 16; 2112: 16 and
// a half) and the zero-point pass's 16 groups at a time (2048 / 128 = 16 groups, 2112 / 128 =
// 17, 8960 / 32 = 280), N odd; weights with arbitrary scales and zero points (AWQ's: any zero
// in [0, 15], not only those the quantizer picks), bias, float32 and bf16 activations.
TEST_P(CpuInt4KernelTest, OneRowEqualsAtenWithAnyZeroPoints) {
  const Int8Isa isa = GetParam();
  at::manual_seed(5);
  for (int64_t group : {32, 64, 128}) {
    for (int64_t K : {576, 704, 2048, 2112, 8960}) {
      for (int64_t N : {1, 7, 33}) {
        const int64_t G = Int4NumGroups(K, group);
        Int4Groups wq{PackInt4(at::randint(0, 16, {N, K}, at::kByte)), at::rand({N, G}).mul_(0.01).add_(1e-4),
                      at::randint(0, 16, {N, G}, at::kByte), K, group};
        wq.zero.select(1, 0).fill_(15);  // the extremes of the zero point
        if (G > 1) wq.zero.select(1, 1).fill_(0);
        at::Tensor b = at::randn({N});
        at::Tensor deq = AtenDequantize(wq);
        for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
          ExpectLinearInt4EqualsAten(at::randn({1, K}).to(dt), wq, deq, b, isa,
                                     "N " + std::to_string(N) + " K " + std::to_string(K) + " group " +
                                         std::to_string(group));
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST_P(CpuInt4KernelTest, ExtremesDoNotSaturate) {
  // Nibbles of 15 against activations of +-127: the int16 pair sums peak at 2 * 2 * 15 * 127.
  // 2 rows of x take the AVX2 kernel, 18 (with kAvx512Vnni) the GEMM, 1 the decode loop.
  const int64_t K = 4096;
  Int4Groups w{PackInt4(at::full({2, K}, 15, at::kByte)), at::ones({2, K / 128}), at::zeros({2, K / 128}, at::kByte), K, 128};
  w.zero[1].fill_(15);  // row 1: q - zero = 0 everywhere
  for (int64_t M : {2, 18}) {
    at::Tensor x = at::full({M, K}, -3.f);
    x[1].fill_(5.f);
    at::Tensor got = LinearInt4(x, w, at::Tensor(), GetParam());
    // Every sum is an integer below 2^24, exact in float32: one rounding, the activation scale's.
    EXPECT_EQ(got[0][0].item<float>(), (3.f / 127.f) * (-127.f * 15.f * K)) << "M " << M;
    EXPECT_EQ(got[1][0].item<float>(), (5.f / 127.f) * (127.f * 15.f * K)) << "M " << M;
    if (M > 2) {
      EXPECT_EQ(got[M - 1][0].item<float>(), (3.f / 127.f) * (-127.f * 15.f * K)) << "M " << M;
    }
    EXPECT_EQ(got[0][1].item<float>(), 0.f) << "M " << M;
  }
  // One row of x (the decode loop): the same sums, each exact in float32.
  for (float v : {-3.f, 5.f}) {
    at::Tensor got = LinearInt4(at::full({1, K}, v), w, at::Tensor(), GetParam());
    EXPECT_EQ(got[0][0].item<float>(), (std::abs(v) / 127.f) * ((v < 0 ? -127.f : 127.f) * 15.f * K)) << v;
    EXPECT_EQ(got[0][1].item<float>(), 0.f) << v;
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, CpuInt4KernelTest, ::testing::Values(Int8Isa::kAvx2, Int8Isa::kAvx512Vnni),
                         [](const ::testing::TestParamInfo<Int8Isa>& info) {
                           return info.param == Int8Isa::kAvx2 ? std::string("Avx2") : std::string("Avx512Vnni");
                         });

// AutoAWQ's GEMM packing, written out: nibble i of each int32 holds column order[i] of its
// eight, order = (0, 2, 4, 6, 1, 3, 5, 7) (AutoAWQ's AWQ_ORDER, which its unpacking undoes).
TEST(AwqTest, PackingFollowsAutoAwqOrderAndConvertsExactly) {
  const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  at::manual_seed(3);
  const int64_t K = 256, N = 24, group = 128;
  at::Tensor iw = at::randint(0, 16, {K, N}, at::kLong);  // AWQ's [K, N] integer weights
  at::Tensor iz = at::randint(0, 16, {K / group, N}, at::kLong);
  at::Tensor scales = at::rand({K / group, N}).add_(0.01).to(at::kHalf);
  auto pack = [&](const at::Tensor& v) {
    at::Tensor out = at::zeros({v.size(0), v.size(1) / 8}, at::kLong);
    for (int i = 0; i < 8; ++i)
      out.bitwise_or_(v.index_select(1, at::arange(order[i], v.size(1), 8, at::kLong)).bitwise_left_shift(4 * i));
    return at::where(out >= (int64_t{1} << 31), out - (int64_t{1} << 32), out).to(at::kInt);
  };
  at::Tensor qweight = pack(iw), qzeros = pack(iz);
  EXPECT_TRUE(at::equal(UnpackAwqColumns(qweight).to(at::kLong), iw));
  EXPECT_TRUE(at::equal(PackAwqColumns(iw.to(at::kByte)), qweight));
  Int4Groups w = Int4FromAwq(qweight, qzeros, scales, group);
  // AWQ's dequantization, (iw - iz) * scales per group, transposed to [N, K].
  at::Tensor rows = at::arange(K, at::kLong).div(group, "floor");
  at::Tensor ref = ((iw - iz.index_select(0, rows)).to(at::kDouble) *
                    scales.to(at::kDouble).index_select(0, rows)).t();
  EXPECT_TRUE(at::equal(AtenDequantize(w), ref));
  AwqTensors back = AwqFromInt4(w);
  EXPECT_TRUE(at::equal(back.qweight, qweight));
  EXPECT_TRUE(at::equal(back.qzeros, qzeros));
  EXPECT_TRUE(at::equal(back.scales, scales.to(at::kFloat)));
}

TEST(CpuInt4Test, RejectsMismatchedOperands) {
  Int4Groups w = QuantizeInt4Groups(at::randn({4, 64}), 64);
  EXPECT_THROW(LinearInt4(at::zeros({2, 63}), w), c10::Error);
  Int4Groups bad = w;
  bad.group = 48;
  EXPECT_THROW(LinearInt4(at::zeros({2, 64}), bad), c10::Error);
  EXPECT_THROW(QuantizeInt4Groups(at::zeros({8}), 32), c10::Error);
  EXPECT_THROW(QuantizeInt4Groups(at::zeros({8, 8}), 16), c10::Error);
}

// The CUDA int4 GEMV's layout (kernels.h) read the way the kernel reads it, written out here
// with plain loops: for each lane (c of a quad, row g of the tile) and each of a step's two
// loads, the eight k16 slices of the MMA: the weights' pairs from a 32-bit word after a shift
// of 0, 4, 8 or 12 and a mask of 0x000F000F; x staged as the kernel's put8 places it and read
// back as its four 16-byte reads; the group's scales and zero points from their records. The
// product summed from those pieces equals x times the dequantized weights (float64, exact for
// these values), so the layout and the kernel's reading of it agree with cpu_int4.h's.
TEST(Int4GemvLayoutTest, KernelsReadingOfTheLayoutIsTheProduct) {
  const int64_t N = 24, K = 768, M = 3, S = K / 256;
  at::manual_seed(7);
  at::Tensor qn = at::randint(0, 16, {N, K}, at::kByte);
  Int4Groups w{PackInt4(qn), at::rand({N, K / 128}) + 0.01, at::randint(0, 16, {N, K / 128}, at::kByte), K, 128};
  Int4Groups t = ToInt4GemvLayout(w);
  ASSERT_EQ(t.q.sizes(), (at::IntArrayRef{N, K / 2}));
  ASSERT_EQ(t.scale.sizes(), (at::IntArrayRef{N / 8, S, 8, 2}));
  ASSERT_EQ(t.zero.sizes(), (at::IntArrayRef{N / 8, S, 8, 2}));
  const uint8_t* q = t.q.data_ptr<uint8_t>();
  const float* scale = t.scale.data_ptr<float>();
  const uint8_t* zero = t.zero.data_ptr<uint8_t>();
  at::Tensor x = at::randint(-8, 8, {M, K}).to(at::kDouble);
  // put8: natural columns k .. k + 7 (k a multiple of 8) to their staged places.
  std::vector<int64_t> staged_col(K, -1);
  for (int64_t k = 0; k < K; k += 8) {
    const int64_t j = (k % 256) / 16, qd = (k % 16) / 4, d = (k - k % 256) + 32 * (j / 2) + 8 * qd + 4 * (j % 2);
    for (int e = 0; e < 4; ++e) staged_col[d + e] = k + e, staged_col[d + 8 + e] = k + 4 + e;
  }
  for (int64_t col : staged_col) ASSERT_GE(col, 0);
  at::Tensor got = at::zeros({M, N}, at::kDouble);
  auto acc = got.accessor<double, 2>();
  auto xv = x.accessor<double, 2>();
  auto qv = qn.accessor<uint8_t, 2>();
  for (int64_t n = 0; n < N; ++n) {
    const int64_t tile = n / 8, g = n % 8;
    for (int64_t s = 0; s < S; ++s)
      for (int l = 0; l < 2; ++l) {
        const int64_t rec = (tile * S + s) * 8;
        for (int c = 0; c < 4; ++c) {
          // This lane's weights are row g = n % 8; its zero point from the record of row g.
          const int z = zero[(rec + g) * 2 + l];
          // The scale the lane holding output n applies: output 2 c' + j' of the tile.
          const float sc = scale[(rec + g) * 2 + l];
          for (int sl = 0; sl < 8; ++sl) {
            const uint8_t* word = q + n * (K / 2) + 128 * s + 64 * l + 16 * c + 4 * (sl / 2);
            const uint32_t v = word[0] | word[1] << 8 | word[2] << 16 | static_cast<uint32_t>(word[3]) << 24;
            for (int half = 0; half < 2; ++half) {  // b0 (elements 0, 1) and b1 (2, 3)
              const uint32_t pair = (v >> (8 * (sl % 2) + 4 * half)) & 0x000F000Fu;
              for (int e2 = 0; e2 < 2; ++e2) {
                const int nib = static_cast<int>(e2 ? pair >> 16 : pair & 15);
                const int e = 2 * half + e2;
                const int64_t col = 256 * s + 16 * (8 * l + sl) + 4 * c + e;  // the MMA's k of this value
                ASSERT_EQ(nib, qv[n][col]) << "n " << n << " col " << col;
                // x: the lane's staged read for slice sl, element e.
                const int64_t st = 256 * s + 32 * (4 * l + sl / 2) + 8 * c + 4 * (sl % 2) + e;
                ASSERT_EQ(staged_col[st], col) << "staged " << st;
                for (int64_t m = 0; m < M; ++m) acc[m][n] += sc * xv[m][staged_col[st]] * (nib - z);
              }
            }
          }
        }
      }
  }
  // The scales as the lane of outputs 2c, 2c + 1 reads them (a float4 at record row 2c).
  for (int64_t n = 0; n < N; ++n)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t c = (n % 8) / 2, rec = ((n / 8) * S + s) * 8;
      const float* f4 = scale + (rec + 2 * c) * 2;
      for (int l = 0; l < 2; ++l) EXPECT_EQ(f4[2 * (n % 2) + l], w.scale[n][2 * s + l].item<float>());
    }
  at::Tensor want = at::matmul(x, AtenDequantize(w).t());
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-9 * (1 + want.abs().max().item<double>()));
  // Shapes the layout does not take are refused.
  EXPECT_THROW(ToInt4GemvLayout(Int4Groups{PackInt4(at::zeros({8, 128}, at::kByte)), at::ones({8, 1}),
                                           at::zeros({8, 1}, at::kByte), 128, 128}),
               c10::Error);
  EXPECT_THROW(ToInt4GemvLayout(QuantizeInt4Groups(at::randn({8, 256}), 64)), c10::Error);
  EXPECT_FALSE(Int4LayoutShapeOk(12, 256, 128));
}

}  // namespace
}  // namespace r1::model
