// Our CUDA kernels (worker/model/cuda/kernels.cu) against ATen references on random data.
// Built everywhere; skipped where libtorch or the machine has no CUDA.
//
// Tolerances, stated: float32 within 1e-5 (relative to the values' scale) for the elementwise
// kernels and 1e-5 for attention; bfloat16 within two bf16 rounding steps of the reference
// (2 x 2^-7 relative; RoPE 2^-5, a sum of two rounded products) for the elementwise kernels, and 1e-2 absolute for attention outputs (inputs
// in [-1, 1]; the kernel rounds once at the end, the reference after a bf16 matmul).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#if defined(R1_HAVE_CUDA)
#include <ATen/cuda/CUDAContext.h>

#include "worker/model/cuda/kernels.h"
#endif

namespace r1::model {
namespace {

class GpuKernelsTest : public ::testing::TestWithParam<at::ScalarType> {
 protected:
  void SetUp() override {
#if !defined(R1_HAVE_CUDA)
    GTEST_SKIP() << "built without CUDA";
#else
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
    at::manual_seed(1234);
#endif
  }
  at::TensorOptions Opts() const { return at::TensorOptions().dtype(GetParam()).device(at::kCUDA); }
  bool Bf16() const { return GetParam() == at::kBFloat16; }
};

#if defined(R1_HAVE_CUDA)
cuda::DType KD(at::ScalarType t) {
  return t == at::kBFloat16 ? cuda::DType::kBF16 : (t == at::kHalf ? cuda::DType::kF16 : cuda::DType::kF32);
}
cudaStream_t Stream() { return at::cuda::getCurrentCUDAStream(); }

// max |a - b| / max(1, max |b|): relative to the values' scale.
double RelDiff(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor fa = a.to(at::kFloat), fb = b.to(at::kFloat);
  return (fa - fb).abs().max().item<double>() / std::max(1.0, fb.abs().max().item<double>());
}

TEST_P(GpuKernelsTest, AddRmsNormMatchesQwen2RmsNorm) {
  const int64_t T = 37, H = 1536;
  const float eps = 1e-6f;
  at::Tensor x = at::randn({T, H}, Opts()), delta = at::randn({T, H}, Opts());
  at::Tensor w = at::rand({H}, Opts()) + 0.5;
  // Reference: residual add in the dtype, then Qwen2RMSNorm as transformers writes it.
  at::Tensor xr = x + delta;
  at::Tensor xf = xr.to(at::kFloat);
  at::Tensor want = w * (xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps)).to(GetParam());
  at::Tensor h = at::empty_like(x);
  ASSERT_EQ(cuda::AddRmsNorm(KD(GetParam()), x.data_ptr(), delta.data_ptr(), w.data_ptr(),
                             h.data_ptr(), T, H, eps, Stream()), 0);
  const double tol = Bf16() ? 2.0 / 128 : 1e-5;  // bf16: at most two rounding steps apart
  EXPECT_LT(RelDiff(x, xr), 1e-7) << "the residual stream after the add";
  EXPECT_LT(RelDiff(h, want), tol);
  // Without delta: the norm alone, x untouched.
  at::Tensor before = x.clone();
  ASSERT_EQ(cuda::AddRmsNorm(KD(GetParam()), x.data_ptr(), nullptr, w.data_ptr(), h.data_ptr(), T,
                             H, eps, Stream()), 0);
  xf = x.to(at::kFloat);
  want = w * (xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps)).to(GetParam());
  EXPECT_TRUE(at::equal(x, before));
  EXPECT_LT(RelDiff(h, want), tol);
}

TEST_P(GpuKernelsTest, RopeKvWriteMatchesRotateHalfAndWritesSlots) {
  const int64_t T = 9, nh = 12, kvh = 2, D = 128, ld = (nh + 2 * kvh) * D, slots_n = 64;
  at::Tensor qkv = at::randn({T, ld}, Opts());
  std::vector<int32_t> pos_h = {0, 1, 2, 17, 300, 4095, 5, 6, 31999};
  std::vector<int32_t> slot_h = {3, 9, 10, 40, 41, 0, 63, 12, 20};
  at::Tensor pos = at::tensor(pos_h, at::kInt).cuda(), slots = at::tensor(slot_h, at::kInt).cuda();
  at::Tensor inv_freq = at::pow(1e4, at::arange(0, D, 2, at::kLong).to(at::kFloat) / D).reciprocal().cuda();
  at::Tensor kc = at::zeros({slots_n, kvh, D}, Opts()), vc = at::zeros({slots_n, kvh, D}, Opts());
  // Reference: transformers' apply_rotary_pos_emb with cos/sin cast to the dtype.
  at::Tensor freqs = pos.to(at::kFloat).unsqueeze(1) * inv_freq.unsqueeze(0);
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  at::Tensor cos = emb.cos().to(GetParam()).unsqueeze(1), sin = emb.sin().to(GetParam()).unsqueeze(1);
  auto rope = [&](const at::Tensor& t) {
    at::Tensor x1 = t.narrow(-1, 0, D / 2), x2 = t.narrow(-1, D / 2, D / 2);
    return t * cos + at::cat({-x2, x1}, -1) * sin;
  };
  at::Tensor q_want = rope(qkv.narrow(1, 0, nh * D).view({T, nh, D}));
  at::Tensor k_want = rope(qkv.narrow(1, nh * D, kvh * D).view({T, kvh, D}));
  at::Tensor v_want = qkv.narrow(1, (nh + kvh) * D, kvh * D).view({T, kvh, D}).clone();
  ASSERT_EQ(cuda::RopeKvWrite(KD(GetParam()), qkv.data_ptr(), ld, pos.data_ptr<int32_t>(),
                              slots.data_ptr<int32_t>(), inv_freq.data_ptr<float>(), kc.data_ptr(),
                              vc.data_ptr(), T, nh, kvh, D, Stream()), 0);
  const double tol = Bf16() ? 1.0 / 32 : 1e-5;  // bf16: a sum of two rounded products
  EXPECT_LT(RelDiff(qkv.narrow(1, 0, nh * D).view({T, nh, D}), q_want), tol);
  EXPECT_LT(RelDiff(qkv.narrow(1, nh * D, kvh * D).view({T, kvh, D}), k_want), tol);
  at::Tensor sl = slots.to(at::kLong);
  EXPECT_LT(RelDiff(kc.index_select(0, sl), k_want), tol);
  EXPECT_TRUE(at::equal(vc.index_select(0, sl), v_want));
  // Slots not named stay zero.
  at::Tensor untouched = at::ones({slots_n}, at::kBool);
  for (int32_t s : slot_h) untouched[s].fill_(false);
  at::Tensor rest = untouched.nonzero().squeeze(1).cuda();
  EXPECT_EQ(kc.index_select(0, rest).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(vc.index_select(0, rest).abs().sum().item<double>(), 0.0);
}

TEST_P(GpuKernelsTest, SiluMulMatchesSiluTimesUp) {
  const int64_t T = 5, I = 8960;
  at::Tensor gu = at::randn({T, 2 * I}, Opts()) * 3;
  at::Tensor want = at::silu(gu.narrow(1, 0, I)) * gu.narrow(1, I, I);
  at::Tensor out = at::empty({T, I}, Opts());
  ASSERT_EQ(cuda::SiluMul(KD(GetParam()), gu.data_ptr(), out.data_ptr(), T, I, Stream()), 0);
  EXPECT_LT(RelDiff(out, want), Bf16() ? 2.0 / 128 : 1e-5);
}

// Paged attention against a gather + softmax reference, for several lengths (1 key to 1,000),
// scattered blocks, grouped heads, and with the keys split across thread blocks.
TEST_P(GpuKernelsTest, PagedAttentionMatchesGatherSoftmax) {
  for (auto [nh, kvh, D] : std::vector<std::tuple<int, int, int>>{{12, 2, 128}, {4, 2, 16}, {6, 1, 8}}) {
    const int bs = 16, num_blocks = 200, ld = (nh + 2 * kvh) * D;
    std::vector<int32_t> lens = {1, 17, 64, 300, 1000, 5};
    const int B = static_cast<int>(lens.size());
    const int MB = 1000 / bs + 1;
    at::Tensor kc = at::rand({num_blocks * bs, kvh, D}, Opts()) * 2 - 1;
    at::Tensor vc = at::rand({num_blocks * bs, kvh, D}, Opts()) * 2 - 1;
    // Query rows sit at odd places of a larger qkv buffer.
    at::Tensor qkv = at::rand({2 * B + 1, ld}, Opts()) * 2 - 1;
    std::vector<int32_t> rows, seq, tables(static_cast<size_t>(B * MB));
    for (int b = 0; b < B; ++b) {
      rows.push_back(2 * b + 1);
      seq.push_back(b);
      for (int j = 0; j < MB; ++j) tables[b * MB + j] = (j * 37 + b * 11 + 5) % num_blocks;
    }
    at::Tensor d_rows = at::tensor(rows, at::kInt).cuda(), d_lens = at::tensor(lens, at::kInt).cuda();
    at::Tensor d_seq = at::tensor(seq, at::kInt).cuda(), d_tables = at::tensor(tables, at::kInt).cuda();
    const float scale = 1.f / std::sqrt(static_cast<float>(D));
    for (auto [nsplit, keys] : std::vector<std::pair<int, int>>{{1, 1}, {3, 1}, {16, 1}, {1, 4}, {3, 4}}) {
      at::Tensor out = at::zeros({2 * B + 1, nh * D}, Opts());
      at::Tensor partial = at::empty({B * nh * nsplit * (D + 2)}, Opts().dtype(at::kFloat));
      at::Tensor counters = at::zeros({B * kvh}, Opts().dtype(at::kInt));
      cuda::PagedAttentionArgs a;
      a.dt = KD(GetParam());
      a.qkv = qkv.data_ptr();
      a.ld = ld;
      a.k_cache = kc.data_ptr();
      a.v_cache = vc.data_ptr();
      a.q_rows = d_rows.data_ptr<int32_t>();
      a.q_lens = d_lens.data_ptr<int32_t>();
      a.q_seq = d_seq.data_ptr<int32_t>();
      a.tables = d_tables.data_ptr<int32_t>();
      a.table_stride = MB;
      a.block_size = bs;
      a.n_queries = B;
      a.nh = nh;
      a.kvh = kvh;
      a.D = D;
      a.scale = scale;
      a.nsplit = nsplit;
      a.keys = keys;
      a.partial = partial.data_ptr<float>();
      a.counters = counters.data_ptr<int>();
      a.out = out.data_ptr();
      a.out_ld = nh * D;
      ASSERT_TRUE(cuda::PagedAttentionSupported(nh, kvh, D));
      ASSERT_EQ(cuda::PagedAttention(a, Stream()), 0);
      double worst = 0;
      for (int b = 0; b < B; ++b) {
        std::vector<int64_t> slot;
        for (int p = 0; p < lens[b]; ++p) slot.push_back(int64_t{tables[b * MB + p / bs]} * bs + p % bs);
        at::Tensor idx = at::tensor(slot, at::kLong).cuda();
        at::Tensor k = kc.index_select(0, idx).to(at::kFloat), v = vc.index_select(0, idx).to(at::kFloat);
        at::Tensor q = qkv[rows[b]].narrow(0, 0, nh * D).view({nh, D}).to(at::kFloat);
        at::Tensor kk = k.repeat_interleave(nh / kvh, 1).permute({1, 0, 2});  // [nh, len, D]
        at::Tensor vv = v.repeat_interleave(nh / kvh, 1).permute({1, 0, 2});
        at::Tensor p = at::softmax(at::bmm(kk, q.unsqueeze(2)).squeeze(2) * scale, -1);  // [nh, len]
        at::Tensor want = at::bmm(p.unsqueeze(1), vv).squeeze(1).reshape({nh * D});
        worst = std::max(worst, (out[rows[b]].to(at::kFloat) - want).abs().max().item<double>());
      }
      std::printf("paged attention nh %d kvh %d D %d nsplit %d keys %d: max |diff| %.3g\n", nh, kvh, D,
                  nsplit, keys, worst);
      EXPECT_LT(worst, Bf16() ? 1e-2 : 1e-5) << "nh " << nh << " D " << D << " nsplit " << nsplit << " keys " << keys;
      // Rows that are not queries stay untouched; the split counters are back to zero.
      EXPECT_EQ(out[0].abs().sum().item<double>(), 0.0);
      EXPECT_EQ(counters.abs().sum().item<int64_t>(), 0);
    }
  }
}
// The fused GEMV against the unfused ATen ops it replaces, for every epilogue, with and without
// the norm prologue, for 1, 3 and 8 rows and several K.
TEST_P(GpuKernelsTest, GemvMatchesUnfusedOps) {
  const float eps = 1e-6f;
  const double tol = Bf16() ? 2.0 / 128 : 1e-4;
  for (int K : {48, 1536, 8960}) {
    for (int M : {1, 3, 8}) {
      if (!cuda::GemvSupported(KD(GetParam()), M, K)) continue;
      const int64_t N = 200;
      at::Tensor x = at::randn({M, K}, Opts());
      at::Tensor w = at::randn({2 * N, K}, Opts()) / std::sqrt(static_cast<double>(K));
      at::Tensor nw = at::rand({K}, Opts()) + 0.5, bias = at::randn({2 * N}, Opts());
      at::Tensor xf = x.to(at::kFloat);
      at::Tensor normed = nw * (xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps)).to(GetParam());
      auto run = [&](const at::Tensor* norm, const at::Tensor* b, int64_t n, at::Tensor& y,
                     cuda::GemvOut mode) {
        cuda::GemvArgs a;
        a.dt = KD(GetParam());
        a.x = x.data_ptr();
        a.ldx = K;
        a.M = M;
        a.K = K;
        a.norm_w = norm ? norm->data_ptr() : nullptr;
        a.eps = eps;
        a.w = w.data_ptr();
        a.N = n;
        a.bias = b ? b->data_ptr() : nullptr;
        a.y = y.data_ptr();
        a.ldy = y.size(1);
        a.mode = mode;
        return cuda::Gemv(a, Stream());
      };
      const std::string where = "K " + std::to_string(K) + " M " + std::to_string(M);
      at::Tensor wn = w.narrow(0, 0, N), bn = bias.narrow(0, 0, N);
      // kStore, with norm and bias (the qkv projection).
      at::Tensor y = at::empty({M, N}, Opts());
      ASSERT_EQ(run(&nw, &bias, N, y, cuda::GemvOut::kStore), 0) << where;
      EXPECT_LT(RelDiff(y, at::addmm(bn, normed, wn.t())), tol) << "store " << where;
      // kStoreF32 without norm (logits), rounded to the dtype as the reference's matmul is.
      at::Tensor yf = at::empty({M, N}, Opts().dtype(at::kFloat));
      ASSERT_EQ(run(nullptr, nullptr, N, yf, cuda::GemvOut::kStoreF32), 0) << where;
      EXPECT_LT(RelDiff(yf, at::mm(x, wn.t()).to(at::kFloat)), tol) << "store f32 " << where;
      // kResidual (o_proj and down_proj): y += x W^T.
      at::Tensor res = at::randn({M, N}, Opts()), want = res + at::mm(x, wn.t());
      ASSERT_EQ(run(nullptr, nullptr, N, res, cuda::GemvOut::kResidual), 0) << where;
      EXPECT_LT(RelDiff(res, want), tol) << "residual " << where;
      // kSiluMul with norm (gate/up stacked).
      at::Tensor act = at::empty({M, N}, Opts());
      at::Tensor gu = at::mm(normed, w.t());
      ASSERT_EQ(run(&nw, nullptr, N, act, cuda::GemvOut::kSiluMul), 0) << where;
      EXPECT_LT(RelDiff(act, at::silu(gu.narrow(1, 0, N)) * gu.narrow(1, N, N)), tol) << "silu " << where;
    }
  }
}
#else
TEST_P(GpuKernelsTest, SkippedWithoutCuda) {}
#endif

INSTANTIATE_TEST_SUITE_P(DTypes, GpuKernelsTest, ::testing::Values(at::kFloat, at::kBFloat16),
                         [](const auto& info) { return std::string(c10::toString(info.param)); });

}  // namespace
}  // namespace r1::model
