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
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#if defined(R1_HAVE_CUDA)
#include <ATen/cuda/CUDAContext.h>

#include "worker/model/cuda/kernels.h"
#include "worker/model/int4_layout.h"
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

// The GEMV tests' arguments: x [M, K] contiguous, w's first n rows (2 n for kSiluMul) as
// the weights, optional norm and bias, y's rows as the output.
cuda::GemvArgs TestGemvArgs(cuda::DType dt, const at::Tensor& x, const at::Tensor* norm, float eps,
                            const at::Tensor& w, int64_t n, const at::Tensor* b, at::Tensor& y, cuda::GemvOut mode) {
  cuda::GemvArgs a;
  a.dt = dt;
  a.x = x.data_ptr();
  a.ldx = x.size(1);
  a.M = static_cast<int>(x.size(0));
  a.K = static_cast<int>(x.size(1));
  a.norm_w = norm ? norm->data_ptr() : nullptr;
  a.eps = eps;
  a.w = w.data_ptr();
  a.N = n;
  a.bias = b ? b->data_ptr() : nullptr;
  a.y = y.data_ptr();
  a.ldy = y.size(1);
  a.mode = mode;
  return a;
}

// RopeKvWrite's arguments for the rows of qkv ([rows, (nh + 2 kvh) D]) into 16-bit caches.
cuda::RopeKvArgs TestRopeKvArgs(at::Tensor& qkv, const at::Tensor& pos, const at::Tensor& slots,
                                const at::Tensor& inv_freq, at::Tensor& kc, at::Tensor& vc, int nh, int kvh, int D) {
  cuda::RopeKvArgs ra;
  ra.dt = KD(qkv.scalar_type());
  ra.qkv = qkv.data_ptr();
  ra.ld = qkv.size(1);
  ra.pos = pos.data_ptr<int32_t>();
  ra.slots = slots.data_ptr<int32_t>();
  ra.inv_freq = inv_freq.data_ptr<float>();
  ra.k_cache = kc.data_ptr();
  ra.v_cache = vc.data_ptr();
  ra.rows = qkv.size(0);
  ra.nh = nh;
  ra.kvh = kvh;
  ra.D = D;
  return ra;
}

// transformers' apply_rotary_pos_emb on heads [T, heads, D] at positions pos ([T]), with cos
// and sin cast to the heads' dtype.
at::Tensor RotateHalfReference(const at::Tensor& heads, const at::Tensor& pos, const at::Tensor& inv_freq) {
  const int64_t D = heads.size(-1);
  at::Tensor freqs = pos.to(at::kFloat).unsqueeze(1) * inv_freq.unsqueeze(0);
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  at::Tensor cos = emb.cos().to(heads.scalar_type()).unsqueeze(1), sin = emb.sin().to(heads.scalar_type()).unsqueeze(1);
  at::Tensor x1 = heads.narrow(-1, 0, D / 2), x2 = heads.narrow(-1, D / 2, D / 2);
  return heads * cos + at::cat({-x2, x1}, -1) * sin;
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
  at::Tensor q_want = RotateHalfReference(qkv.narrow(1, 0, nh * D).view({T, nh, D}), pos, inv_freq);
  at::Tensor k_want = RotateHalfReference(qkv.narrow(1, nh * D, kvh * D).view({T, kvh, D}), pos, inv_freq);
  at::Tensor v_want = qkv.narrow(1, (nh + kvh) * D, kvh * D).view({T, kvh, D}).clone();
  ASSERT_EQ(cuda::RopeKvWrite(TestRopeKvArgs(qkv, pos, slots, inv_freq, kc, vc, nh, kvh, D), Stream()), 0);
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

// The FP8 cache write: each (slot, kv head) row stored as e4m3 with scale = its largest
// magnitude / 448; dequantized it is within e4m3's rounding (2^-4 relative) of the bf16 row.
TEST_P(GpuKernelsTest, RopeKvWriteFp8StoresScaledE4m3) {
  if (!Bf16()) GTEST_SKIP() << "the FP8 cache serves 16-bit models";
  const int64_t T = 7, nh = 12, kvh = 2, D = 128, ld = (nh + 2 * kvh) * D, slots_n = 32;
  at::Tensor qkv = at::randn({T, ld}, Opts()) * 3;
  std::vector<int32_t> pos_h = {0, 5, 9, 100, 2047, 4, 8}, slot_h = {1, 3, 5, 7, 30, 31, 0};
  at::Tensor pos = at::tensor(pos_h, at::kInt).cuda(), slots = at::tensor(slot_h, at::kInt).cuda();
  at::Tensor inv_freq = at::pow(1e4, at::arange(0, D, 2, at::kLong).to(at::kFloat) / D).reciprocal().cuda();
  at::Tensor ref_qkv = qkv.clone(), kref = at::zeros({slots_n, kvh, D}, Opts()), vref = at::zeros_like(kref);
  cuda::RopeKvArgs ra;
  ra.dt = cuda::DType::kBF16;
  ra.ld = ld;
  ra.pos = pos.data_ptr<int32_t>();
  ra.slots = slots.data_ptr<int32_t>();
  ra.inv_freq = inv_freq.data_ptr<float>();
  ra.rows = T;
  ra.nh = nh;
  ra.kvh = kvh;
  ra.D = D;
  // Reference: the bf16 write.
  ra.qkv = ref_qkv.data_ptr();
  ra.k_cache = kref.data_ptr();
  ra.v_cache = vref.data_ptr();
  ASSERT_EQ(cuda::RopeKvWrite(ra, Stream()), 0);
  // FP8.
  at::Tensor k8 = at::zeros({slots_n, kvh, D}, Opts().dtype(at::kByte)), v8 = at::zeros_like(k8);
  at::Tensor ks = at::zeros({slots_n, kvh}, Opts().dtype(at::kFloat)), vs = at::zeros_like(ks);
  ra.qkv = qkv.data_ptr();
  ra.k_cache = k8.data_ptr();
  ra.v_cache = v8.data_ptr();
  ra.fp8_cache = true;
  ra.k_scale = ks.data_ptr<float>();
  ra.v_scale = vs.data_ptr<float>();
  ASSERT_EQ(cuda::RopeKvWrite(ra, Stream()), 0);
  EXPECT_TRUE(at::equal(qkv, ref_qkv)) << "q and k rotated in place as with a bf16 cache";
  at::Tensor sl = slots.to(at::kLong);
  for (auto [q8, sc, ref] : {std::tuple{k8, ks, kref}, std::tuple{v8, vs, vref}}) {
    at::Tensor want = ref.index_select(0, sl).to(at::kFloat);                     // [T, kvh, D]
    at::Tensor amax = want.abs().amax(-1);                                          // [T, kvh]
    EXPECT_LT((sc.index_select(0, sl) - amax / 448).abs().max().item<double>(), 1e-6);
    at::Tensor deq = q8.index_select(0, sl).view(at::kFloat8_e4m3fn).to(at::kFloat) *
                     sc.index_select(0, sl).unsqueeze(-1);
    double worst = ((deq - want).abs() / amax.unsqueeze(-1)).max().item<double>();
    EXPECT_LT(worst, 1.0 / 16) << "e4m3 keeps 3 mantissa bits";
  }
}

// GatherKv copies the rows at the given slots (and dequantizes an FP8 cache).
TEST_P(GpuKernelsTest, GatherKvCopiesSlotsAndDequantizes) {
  if (!Bf16()) GTEST_SKIP() << "flash attention serves 16-bit models";
  const int64_t slots_n = 300, kvh = 2, D = 128;
  at::Tensor kc = at::randn({slots_n, kvh, D}, Opts()), vc = at::randn({slots_n, kvh, D}, Opts());
  std::vector<int32_t> sl_h;
  for (int i = 0; i < 517; ++i) sl_h.push_back((i * 97 + 13) % slots_n);
  at::Tensor sl = at::tensor(sl_h, at::kInt).cuda();
  at::Tensor ko = at::empty({517, kvh, D}, Opts()), vo = at::empty_like(ko);
  cuda::GatherKvArgs ga;
  ga.dt = cuda::DType::kBF16;
  ga.k_cache = kc.data_ptr();
  ga.v_cache = vc.data_ptr();
  ga.slots = sl.data_ptr<int32_t>();
  ga.n = 517;
  ga.kvh = kvh;
  ga.D = D;
  ga.k_out = ko.data_ptr();
  ga.v_out = vo.data_ptr();
  ASSERT_EQ(cuda::GatherKv(ga, Stream()), 0);
  EXPECT_TRUE(at::equal(ko, kc.index_select(0, sl.to(at::kLong))));
  EXPECT_TRUE(at::equal(vo, vc.index_select(0, sl.to(at::kLong))));
  // FP8: e4m3 bytes and scales in, scale x value out (rounded to bf16).
  at::Tensor ks = at::rand({slots_n, kvh}, Opts().dtype(at::kFloat)) + 0.1, vs = at::rand_like(ks) + 0.1;
  at::Tensor k8 = kc.to(at::kFloat).to(at::kFloat8_e4m3fn), v8 = vc.to(at::kFloat).to(at::kFloat8_e4m3fn);
  ga.fp8_cache = true;
  ga.k_cache = k8.data_ptr();
  ga.v_cache = v8.data_ptr();
  ga.k_scale = ks.data_ptr<float>();
  ga.v_scale = vs.data_ptr<float>();
  ASSERT_EQ(cuda::GatherKv(ga, Stream()), 0);
  at::Tensor idx = sl.to(at::kLong);
  at::Tensor kwant = (k8.to(at::kFloat) * ks.unsqueeze(-1)).index_select(0, idx).to(at::kBFloat16);
  at::Tensor vwant = (v8.to(at::kFloat) * vs.unsqueeze(-1)).index_select(0, idx).to(at::kBFloat16);
  EXPECT_TRUE(at::equal(ko, kwant));
  EXPECT_TRUE(at::equal(vo, vwant));
}

TEST_P(GpuKernelsTest, SiluMulMatchesSiluTimesUp) {
  const int64_t T = 5, I = 8960;
  at::Tensor gu = at::randn({T, 2 * I}, Opts()) * 3;
  at::Tensor want = at::silu(gu.narrow(1, 0, I)) * gu.narrow(1, I, I);
  at::Tensor out = at::empty({T, I}, Opts());
  ASSERT_EQ(cuda::SiluMul(KD(GetParam()), gu.data_ptr(), out.data_ptr(), T, I, Stream()), 0);
  EXPECT_LT(RelDiff(out, want), Bf16() ? 2.0 / 128 : 1e-5);
}

// Paged attention against a gather + softmax reference: several lengths (1 key to 4,100),
// scattered blocks, grouped heads (groups of 1 to 16), keys split across thread blocks (also
// more splits than tiles, which leaves some empty), both kernels (the tensor-core one for
// head_dim 128 in bf16, the CUDA-core one everywhere), and an FP8 cache.
TEST_P(GpuKernelsTest, PagedAttentionMatchesGatherSoftmax) {
  struct Shape { int nh, kvh, D; };
  for (Shape sh : std::vector<Shape>{{12, 2, 128}, {28, 4, 128}, {40, 8, 128}, {32, 2, 128}, {4, 2, 16}, {6, 1, 8}}) {
    const int nh = sh.nh, kvh = sh.kvh, D = sh.D;
    const bool tc = cuda::TensorCoreAttention(KD(GetParam()), nh, kvh, D);
    if (!tc && !cuda::PagedAttentionSupported(nh, kvh, D)) continue;
    const int bs = 16, num_blocks = 400, ld = (nh + 2 * kvh) * D;
    std::vector<int32_t> lens = {1, 17, 64, 65, 300, 1000, 5, 4100};
    const int B = static_cast<int>(lens.size());
    const int MB = 4100 / bs + 1;
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
    // FP8 copies of the cache: e4m3 values with a scale per (slot, kv head).
    at::Tensor ks = kc.to(at::kFloat).abs().amax(-1) / 448, vs = vc.to(at::kFloat).abs().amax(-1) / 448;
    at::Tensor k8 = (kc.to(at::kFloat) / ks.unsqueeze(-1)).to(at::kFloat8_e4m3fn);
    at::Tensor v8 = (vc.to(at::kFloat) / vs.unsqueeze(-1)).to(at::kFloat8_e4m3fn);
    struct Variant { int nsplit; bool generic; bool fp8; };
    std::vector<Variant> variants = {{1, false, false}, {3, false, false}, {16, false, false}, {70, false, false},
                                     {cuda::kMaxAttentionSplits, false, false}};
    if (tc) {
      if (cuda::PagedAttentionSupported(nh, kvh, D)) {  // the CUDA-core kernel takes groups of up to 8
        variants.push_back({1, true, false});
        variants.push_back({5, true, false});
      }
      variants.push_back({1, false, true});
      variants.push_back({7, false, true});
    }
    for (int stages : {2, 3})
    for (Variant var : variants) {
      if (stages == 3 && (!tc || var.generic)) continue;
      const int nsplit = var.nsplit;
      at::Tensor out = at::zeros({2 * B + 1, nh * D}, Opts());
      at::Tensor partial = at::empty({B * nh * nsplit * (D + 2)}, Opts().dtype(at::kFloat));
      cuda::PagedAttentionArgs a;
      a.dt = KD(GetParam());
      a.qkv = qkv.data_ptr();
      a.ld = ld;
      a.k_cache = var.fp8 ? k8.data_ptr() : kc.data_ptr();
      a.v_cache = var.fp8 ? v8.data_ptr() : vc.data_ptr();
      a.fp8_cache = var.fp8;
      a.k_scale = var.fp8 ? ks.data_ptr<float>() : nullptr;
      a.v_scale = var.fp8 ? vs.data_ptr<float>() : nullptr;
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
      a.force_generic = var.generic;
      a.stages = stages;
      a.partial = partial.data_ptr<float>();
      a.out = out.data_ptr();
      a.out_ld = nh * D;
      ASSERT_EQ(cuda::PagedAttention(a, Stream()), 0);
      at::Tensor kref = var.fp8 ? k8.to(at::kFloat) * ks.unsqueeze(-1) : kc.to(at::kFloat);
      at::Tensor vref = var.fp8 ? v8.to(at::kFloat) * vs.unsqueeze(-1) : vc.to(at::kFloat);
      double worst = 0;
      for (int b = 0; b < B; ++b) {
        std::vector<int64_t> slot;
        for (int p = 0; p < lens[b]; ++p) slot.push_back(int64_t{tables[b * MB + p / bs]} * bs + p % bs);
        at::Tensor idx = at::tensor(slot, at::kLong).cuda();
        at::Tensor k = kref.index_select(0, idx), v = vref.index_select(0, idx);
        at::Tensor q = qkv[rows[b]].narrow(0, 0, nh * D).view({nh, D}).to(at::kFloat);
        at::Tensor kk = k.repeat_interleave(nh / kvh, 1).permute({1, 0, 2});  // [nh, len, D]
        at::Tensor vv = v.repeat_interleave(nh / kvh, 1).permute({1, 0, 2});
        at::Tensor p = at::softmax(at::bmm(kk, q.unsqueeze(2)).squeeze(2) * scale, -1);  // [nh, len]
        at::Tensor want = at::bmm(p.unsqueeze(1), vv).squeeze(1).reshape({nh * D});
        worst = std::max(worst, (out[rows[b]].to(at::kFloat) - want).abs().max().item<double>());
      }
      const std::string what = "nh " + std::to_string(nh) + " kvh " + std::to_string(kvh) + " D " +
                               std::to_string(D) + " nsplit " + std::to_string(nsplit) +
                               (tc && !var.generic ? " tensor-core stages " + std::to_string(stages) : " cuda-core") +
                               (var.fp8 ? " fp8" : "");
      std::printf("paged attention %s: max |diff| %.3g\n", what.c_str(), worst);
      EXPECT_LT(worst, Bf16() ? 1e-2 : 1e-5) << what;
      // Rows that are not queries stay untouched.
      EXPECT_EQ(out[0].abs().sum().item<double>(), 0.0) << what;
    }
  }
}
// The fused GEMV against the unfused ATen ops it replaces, for every epilogue, with and without
// the norm prologue, for 1, 3, 5 and 8 rows, several K and N (a partial last tile of 8 outputs;
// more tiles than the persistent grid takes in one round), on both kernels: the tensor-core one
// (16-bit, K a multiple of 64) and the CUDA-core one.
TEST_P(GpuKernelsTest, GemvMatchesUnfusedOps) {
  const float eps = 1e-6f;
  const double tol = Bf16() ? 2.0 / 128 : 1e-4;
  for (int K : {48, 1536, 8960}) {
    for (int M : {1, 3, 5, 8}) {
      if (!cuda::GemvSupported(KD(GetParam()), M, K)) continue;
      for (int64_t N : {200, 2052, 20000}) {
        if (N == 20000 && K != 1536) continue;
        at::Tensor x = at::randn({M, K}, Opts());
        at::Tensor w = at::randn({2 * N, K}, Opts()) / std::sqrt(static_cast<double>(K));
        at::Tensor nw = at::rand({K}, Opts()) + 0.5, bias = at::randn({2 * N}, Opts());
        at::Tensor xf = x.to(at::kFloat);
        at::Tensor normed = nw * (xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps)).to(GetParam());
        at::Tensor wn = w.narrow(0, 0, N), bn = bias.narrow(0, 0, N);
        at::Tensor gu = at::mm(normed, w.t());
        for (bool tc : {false, true}) {
          auto run = [&](const at::Tensor* norm, const at::Tensor* b, int64_t n, at::Tensor& y,
                         cuda::GemvOut mode) {
            cuda::GemvArgs a = TestGemvArgs(KD(GetParam()), x, norm, eps, w, n, b, y, mode);
            a.tensor_cores = tc;
            return cuda::Gemv(a, Stream());
          };
          const std::string where = "K " + std::to_string(K) + " M " + std::to_string(M) + " N " +
                                    std::to_string(N) + (tc ? " tensor cores" : " cuda cores");
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
          ASSERT_EQ(run(&nw, nullptr, N, act, cuda::GemvOut::kSiluMul), 0) << where;
          EXPECT_LT(RelDiff(act, at::silu(gu.narrow(1, 0, N)) * gu.narrow(1, N, N)), tol) << "silu " << where;
        }
      }
    }
  }
}

// The qkv GEMV with RoPE and the K/V write in its epilogue (kRopeKv), on 16-bit and FP8 weights,
// 1 to 8 rows, the 1.5B's heads and a smaller head dim: bit for bit what the GEMV's kStore and
// then RopeKvWrite give (the unfused path it replaces), and within the dtype's rounding of ATen's
// norm, matmul + bias and transformers' rotate_half RoPE. Slots not written stay zero.
TEST_P(GpuKernelsTest, GemvRopeKvMatchesGemvThenRopeKvWrite) {
  const float eps = 1e-6f;
  const int K = 1536, slots_n = 40;
  const std::tuple<int, int, int> heads[] = {{12, 2, 128}, {4, 2, 64}};  // nh, kvh, D
  for (const auto& shape : heads) {
    const int nh = std::get<0>(shape), kvh = std::get<1>(shape), D = std::get<2>(shape);
    const int64_t N = static_cast<int64_t>(nh + 2 * kvh) * D;
    at::Tensor w = at::randn({N, K}, Opts()) / std::sqrt(static_cast<double>(K));
    at::Tensor nw = at::rand({K}, Opts()) + 0.5, bias = at::randn({N}, Opts());
    at::Tensor inv_freq = at::pow(1e4, at::arange(0, D, 2, at::kLong).to(at::kFloat) / D).reciprocal().cuda();
    for (bool fp8 : {false, true}) {
      if (fp8 && !Bf16()) continue;  // FP8 weights serve bfloat16 models
      at::Tensor wq = w, ws;
      if (fp8) {
        wq = at::empty({N, K}, Opts().dtype(at::kByte));
        ws = at::empty({N}, Opts().dtype(at::kFloat));
        ASSERT_EQ(cuda::QuantizeFp8Rows(cuda::DType::kBF16, w.data_ptr(), K, N, K, wq.data_ptr(), K,
                                        ws.data_ptr<float>(), Stream()),
                  0);
      }
      at::Tensor wd = fp8 ? (wq.view(at::kFloat8_e4m3fn).to(at::kFloat) * ws.unsqueeze(1)).to(GetParam()) : w;
      for (int M : {1, 3, 8}) {
        at::Tensor x = at::randn({M, K}, Opts());
        std::vector<int32_t> pos_h = {0, 1, 17, 4095, 31999, 5, 300, 2}, slot_h = {3, 9, 0, 39, 20, 11, 12, 30};
        pos_h.resize(M);
        slot_h.resize(M);
        at::Tensor pos = at::tensor(pos_h, at::kInt).cuda(), slots = at::tensor(slot_h, at::kInt).cuda();
        auto args = [&](at::Tensor& y, cuda::GemvOut mode, at::Tensor& kc, at::Tensor& vc) {
          cuda::GemvArgs a = TestGemvArgs(KD(GetParam()), x, &nw, eps, wq, N, &bias, y, mode);
          if (fp8) a.w_scale = ws.data_ptr<float>();
          a.pos = pos.data_ptr<int32_t>();
          a.slots = slots.data_ptr<int32_t>();
          a.inv_freq = inv_freq.data_ptr<float>();
          a.k_cache = kc.data_ptr();
          a.v_cache = vc.data_ptr();
          a.nh = nh;
          a.kvh = kvh;
          a.D = D;
          return a;
        };
        const std::string where = "nh " + std::to_string(nh) + " kvh " + std::to_string(kvh) + " D " +
                                  std::to_string(D) + " M " + std::to_string(M) + (fp8 ? " fp8" : "");
        at::Tensor y = at::zeros({M, N}, Opts()), kc = at::zeros({slots_n, kvh, D}, Opts()),
                   vc = at::zeros({slots_n, kvh, D}, Opts());
        cuda::GemvArgs a = args(y, cuda::GemvOut::kRopeKv, kc, vc);
        if (GetParam() == at::kFloat) {  // the tensor-core GEMV only: refused, not run
          EXPECT_FALSE(cuda::GemvRopeKvApplies(a)) << where;
          EXPECT_NE(cuda::Gemv(a, Stream()), 0) << where;
          continue;
        }
        ASSERT_TRUE(cuda::GemvRopeKvApplies(a)) << where;
        ASSERT_EQ(cuda::Gemv(a, Stream()), 0) << where;
        // The unfused path: kStore, then RopeKvWrite.
        at::Tensor y0 = at::zeros({M, N}, Opts()), kc0 = at::zeros_like(kc), vc0 = at::zeros_like(vc);
        ASSERT_EQ(cuda::Gemv(args(y0, cuda::GemvOut::kStore, kc0, vc0), Stream()), 0) << where;
        ASSERT_EQ(cuda::RopeKvWrite(TestRopeKvArgs(y0, pos, slots, inv_freq, kc0, vc0, nh, kvh, D), Stream()), 0)
            << where;
        EXPECT_TRUE(at::equal(y, y0)) << "qkv rows " << where;
        EXPECT_TRUE(at::equal(kc, kc0)) << "k cache " << where;
        EXPECT_TRUE(at::equal(vc, vc0)) << "v cache " << where;
        // ATen: norm, x W^T + bias in the dtype, rotate_half RoPE with cos/sin in the dtype.
        at::Tensor xf = x.to(at::kFloat);
        at::Tensor normed = nw * (xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps)).to(GetParam());
        at::Tensor lin = at::addmm(bias, normed, wd.t());
        at::Tensor q_want = RotateHalfReference(lin.narrow(1, 0, nh * D).view({M, nh, D}), pos, inv_freq);
        at::Tensor k_want = RotateHalfReference(lin.narrow(1, nh * D, kvh * D).view({M, kvh, D}), pos, inv_freq);
        at::Tensor v_want = lin.narrow(1, (nh + kvh) * D, kvh * D).view({M, kvh, D});
        const double tol = 1.0 / 16;  // bf16: the GEMV's rounding, then RoPE's products
        EXPECT_LT(RelDiff(y.narrow(1, 0, nh * D).view({M, nh, D}), q_want), tol) << where;
        EXPECT_LT(RelDiff(y.narrow(1, nh * D, kvh * D).view({M, kvh, D}), k_want), tol) << where;
        at::Tensor sl = slots.to(at::kLong);
        EXPECT_LT(RelDiff(kc.index_select(0, sl), k_want), tol) << where;
        EXPECT_LT(RelDiff(vc.index_select(0, sl), v_want), tol) << where;
        at::Tensor untouched = at::ones({slots_n}, at::kBool);
        for (int32_t s : slot_h) untouched[s].fill_(false);
        at::Tensor rest = untouched.nonzero().squeeze(1).cuda();
        EXPECT_EQ(kc.index_select(0, rest).abs().sum().item<double>(), 0.0) << where;
        EXPECT_EQ(vc.index_select(0, rest).abs().sum().item<double>(), 0.0) << where;
      }
    }
  }
}

// QuantizeFp8Rows against ATen's own e4m3 conversion: the scale is max |row| / 448 and every
// byte equals ATen's float8_e4m3fn of x * (448 / max), bit for bit. Rows of zeros get scale 0;
// a strided input (ldx > K) and a K that is not a multiple of 8 (the scalar path) are covered.
TEST_P(GpuKernelsTest, QuantizeFp8RowsMatchesAtenE4m3) {
  for (int64_t K : {37, 48, 1536, 8960}) {
    const int64_t rows = 67, ldx = K + 8;
    at::Tensor wide = at::randn({rows, ldx}, Opts()) * 3;
    wide[5].zero_();
    wide[6].mul_(1000);
    at::Tensor x = wide.narrow(1, 0, K);
    at::Tensor q = at::empty({rows, K}, Opts().dtype(at::kByte));
    at::Tensor scale = at::empty({rows}, Opts().dtype(at::kFloat));
    ASSERT_EQ(cuda::QuantizeFp8Rows(KD(GetParam()), x.data_ptr(), ldx, rows, K, q.data_ptr(), K,
                                    scale.data_ptr<float>(), Stream()),
              0);
    at::Tensor xf = x.to(at::kFloat), amax = xf.abs().amax(1);
    at::Tensor inv = at::where(amax > 0, at::full_like(amax, 448.f) / amax, at::zeros_like(amax));
    at::Tensor want_q = (xf * inv.unsqueeze(1)).to(at::kFloat8_e4m3fn).view(at::kByte);
    const std::string where = "K " + std::to_string(K);
    // (A tensor divisor: ATen divides by a scalar as a product with its reciprocal.)
    EXPECT_TRUE(at::equal(scale, amax / at::full_like(amax, 448.f))) << where;
    EXPECT_EQ(q.ne(want_q).sum().item<int64_t>(), 0) << where;
    EXPECT_EQ(scale[5].item<float>(), 0.f) << where;
  }
}

// The four epilogues of a GEMV on weights whose dequantized float32 values are wd ([2 N, K]),
// against ATen float32 math on them and on x as the GEMV's inputs are (the norm rounded to x's
// dtype, as AddRmsNorm does). `run` launches the GEMV under test on the first n rows (2 n for
// kSiluMul) and returns its status. Returns each epilogue's max relative difference (-1 where
// the launch failed, which fails the test).
struct EpilogueDiffs {
  double store = -1, f32 = -1, residual = -1, silu = -1;
};
using GemvRun = std::function<int(const at::Tensor* norm, const at::Tensor* bias, int64_t n, at::Tensor& y,
                                  cuda::GemvOut mode)>;
EpilogueDiffs CheckGemvEpilogues(const at::Tensor& x, const at::Tensor& wd, const at::Tensor& nw,
                                 const at::Tensor& bias, float eps, double tol, const std::string& where,
                                 const GemvRun& run) {
  const int64_t M = x.size(0), N = wd.size(0) / 2;
  const at::TensorOptions o = x.options();
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor normed = (nw * (xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps)).to(x.scalar_type())).to(at::kFloat);
  at::Tensor wn = wd.narrow(0, 0, N), bn = bias.narrow(0, 0, N).to(at::kFloat);
  at::Tensor gu = at::mm(normed, wd.t());
  // One epilogue: launch, then the max relative difference to `want`.
  auto check = [&](const char* name, const at::Tensor* norm, const at::Tensor* b, at::Tensor& y,
                   cuda::GemvOut mode, const at::Tensor& want) {
    if (run(norm, b, N, y, mode) != 0) {
      ADD_FAILURE() << name << " " << where << ": the launch failed";
      return -1.0;
    }
    const double diff = RelDiff(y, want);
    EXPECT_LT(diff, tol) << name << " " << where;
    return diff;
  };
  EpilogueDiffs d;
  at::Tensor y = at::empty({M, N}, o), yf = at::empty({M, N}, o.dtype(at::kFloat)), act = at::empty({M, N}, o);
  d.store = check("store", &nw, &bias, y, cuda::GemvOut::kStore, at::addmm(bn, normed, wn.t()));
  d.f32 = check("store f32", nullptr, nullptr, yf, cuda::GemvOut::kStoreF32, at::mm(xf, wn.t()));
  at::Tensor res = at::randn({M, N}, o);
  const at::Tensor res_want = res.to(at::kFloat) + at::mm(xf, wn.t());
  d.residual = check("residual", nullptr, nullptr, res, cuda::GemvOut::kResidual, res_want);
  d.silu = check("silu", &nw, nullptr, act, cuda::GemvOut::kSiluMul, at::silu(gu.narrow(1, 0, N)) * gu.narrow(1, N, N));
  return d;
}

// The GEMV on FP8 weights against ATen float32 math on the dequantized weights (q * scale) and
// on x as the GEMV's inputs are (the norm rounded to the dtype, as AddRmsNorm does): every
// epilogue, 1 to 8 rows, K 128 to 8,960, a partial last tile, more tiles than one round.
// Tolerance: two bf16 roundings of the output (2 x 2^-7 of the values' scale); only the order
// of the float32 sums differs. Shapes the kernel cannot take are refused, not run.
TEST_P(GpuKernelsTest, GemvFp8MatchesDequantizedAten) {
  if (!Bf16()) GTEST_SKIP() << "FP8 weights serve bfloat16 models";
  const float eps = 1e-6f;
  const double tol = 2.0 / 128;
  EXPECT_FALSE(cuda::GemvFp8Supported(cuda::DType::kBF16, 1, 64)) << "K must be a multiple of 128";
  EXPECT_FALSE(cuda::GemvFp8Supported(cuda::DType::kF32, 1, 128));
  for (int K : {64, 128, 384, 1536, 8960}) {
    for (int M : {1, 3, 8}) {
      for (int64_t N : {200, 2052, 20000}) {
        if (N == 20000 && K != 1536) continue;
        at::Tensor x = at::randn({M, K}, Opts());
        at::Tensor w = at::randn({2 * N, K}, Opts()) / std::sqrt(static_cast<double>(K));
        at::Tensor wq = at::empty({2 * N, K}, Opts().dtype(at::kByte));
        at::Tensor ws = at::empty({2 * N}, Opts().dtype(at::kFloat));
        ASSERT_EQ(cuda::QuantizeFp8Rows(cuda::DType::kBF16, w.data_ptr(), K, 2 * N, K, wq.data_ptr(), K,
                                        ws.data_ptr<float>(), Stream()),
                  0);
        at::Tensor wd = wq.view(at::kFloat8_e4m3fn).to(at::kFloat) * ws.unsqueeze(1);  // [2N, K] f32
        at::Tensor nw = at::rand({K}, Opts()) + 0.5, bias = at::randn({2 * N}, Opts());
        auto run = [&](const at::Tensor* norm, const at::Tensor* b, int64_t n, at::Tensor& y, cuda::GemvOut mode) {
          cuda::GemvArgs a = TestGemvArgs(cuda::DType::kBF16, x, norm, eps, wq, n, b, y, mode);
          a.w_scale = ws.data_ptr<float>();
          return cuda::Gemv(a, Stream());
        };
        const std::string where = "K " + std::to_string(K) + " M " + std::to_string(M) + " N " + std::to_string(N);
        if (!cuda::GemvFp8Supported(cuda::DType::kBF16, M, K)) {
          at::Tensor y = at::empty({M, N}, Opts());
          EXPECT_NE(run(&nw, &bias, N, y, cuda::GemvOut::kStore), 0) << where;
          continue;
        }
        const EpilogueDiffs d = CheckGemvEpilogues(x, wd, nw, bias, eps, tol, where, run);
        std::printf("fp8 gemv %s: max rel diff store %.3g, f32 %.3g, residual %.3g, silu %.3g\n", where.c_str(),
                    d.store, d.f32, d.residual, d.silu);
      }
    }
  }
}
// The GEMV on int4 weights (groups of 128 with scales and zero points, kernels.h's layout made
// by ToInt4GemvLayout) against ATen float32 math on the dequantized weights, scale * (q -
// zero), and on x as the GEMV's inputs are: every epilogue, 1 to 8 rows, K 256 to 8,960, more
// tiles than one round, in bf16 and f16. The kernel's products of x and q - zero are exact
// (16-bit values times small integers, float32 sums), so the tolerance is the output's two
// 16-bit roundings (2 x 2^-7 of the values' scale), as for FP8. DequantInt4 (the route of
// larger steps) equals the dequantized weights rounded to the dtype, bit for bit. Shapes the
// layout does not take are refused, not run.
TEST_P(GpuKernelsTest, GemvInt4MatchesDequantizedAten) {
  if (!Bf16()) GTEST_SKIP() << "int4 weights serve 16-bit models (run once, for bf16 and f16)";
  const float eps = 1e-6f;
  const double tol = 2.0 / 128;
  EXPECT_FALSE(cuda::GemvInt4Supported(cuda::DType::kBF16, 1, 64, 128)) << "K must be a multiple of 256";
  EXPECT_FALSE(cuda::GemvInt4Supported(cuda::DType::kBF16, 1, 12, 256)) << "N must be a multiple of 8";
  EXPECT_FALSE(cuda::GemvInt4Supported(cuda::DType::kF32, 1, 64, 256));
  EXPECT_FALSE(cuda::GemvInt4Supported(cuda::DType::kBF16, 9, 64, 256));
  for (at::ScalarType st : {at::kBFloat16, at::kHalf}) {
    const cuda::DType dt = KD(st);
    const at::TensorOptions o = at::TensorOptions().dtype(st).device(at::kCUDA);
    for (int K : {256, 1536, 8960}) {
      for (int M : {1, 3, 8}) {
        for (int64_t N : {200, 2048, 20000}) {
          if (N == 20000 && K != 1536) continue;
          if (st == at::kHalf && (N != 2048 || M == 3)) continue;
          const int64_t G = K / 128;
          Int4Groups nat{PackInt4(at::randint(0, 16, {2 * N, K}, at::kByte)), at::rand({2 * N, G}) * 0.02 + 0.001,
                         at::randint(0, 16, {2 * N, G}, at::kByte), K, 128};
          Int4Groups dev = ToInt4GemvLayout(
              Int4Groups{nat.q.to(at::kCUDA), nat.scale.to(at::kCUDA), nat.zero.to(at::kCUDA), K, 128});
          at::Tensor gi = at::arange(K, at::kLong).div(128, "floor");
          at::Tensor wd = (nat.scale.index_select(1, gi) *
                           (UnpackInt4(nat.q, K).to(at::kFloat) - nat.zero.to(at::kFloat).index_select(1, gi)))
                              .to(at::kCUDA);  // [2N, K] f32, exact
          at::Tensor x = at::randn({M, K}, o);
          at::Tensor nw = at::rand({K}, o) + 0.5, bias = at::randn({2 * N}, o);
          auto run = [&](const at::Tensor* norm, const at::Tensor* b, int64_t n, at::Tensor& y, cuda::GemvOut mode) {
            cuda::GemvArgs a = TestGemvArgs(dt, x, norm, eps, dev.q, n, b, y, mode);
            a.int4_scale = dev.scale.data_ptr<float>();
            a.int4_zero = dev.zero.data_ptr<uint8_t>();
            return cuda::Gemv(a, Stream());
          };
          const std::string where = std::string(c10::toString(st)) + " K " + std::to_string(K) + " M " +
                                    std::to_string(M) + " N " + std::to_string(N);
          ASSERT_TRUE(cuda::GemvInt4Supported(dt, M, 2 * N, K)) << where;
          const EpilogueDiffs d = CheckGemvEpilogues(x, wd, nw, bias, eps, tol, where, run);
          std::printf("int4 gemv %s: max rel diff store %.3g, f32 %.3g, residual %.3g, silu %.3g\n", where.c_str(),
                      d.store, d.f32, d.residual, d.silu);
          if (M == 1) {  // DequantInt4, into a strided buffer
            at::Tensor out = at::zeros({2 * N, K + 8}, o);
            cuda::DequantInt4Args da;
            da.dt = dt;
            da.q = dev.q.data_ptr();
            da.scale = dev.scale.data_ptr<float>();
            da.zero = dev.zero.data_ptr<uint8_t>();
            da.N = 2 * N;
            da.K = K;
            da.out = out.data_ptr();
            da.ldo = K + 8;
            ASSERT_EQ(cuda::DequantInt4(da, Stream()), 0) << where;
            EXPECT_TRUE(at::equal(out.narrow(1, 0, K), wd.to(st))) << "dequant " << where;
            EXPECT_EQ(out.narrow(1, K, 8).abs().sum().item<double>(), 0.0) << "dequant wrote past K " << where;
          }
        }
      }
    }
  }
  // Refused: a K the layout does not take.
  at::Tensor x = at::randn({1, 128}, Opts()), w = at::zeros({8, 64}, Opts().dtype(at::kByte)), y = at::empty({1, 8}, Opts());
  at::Tensor sc = at::ones({8}, Opts().dtype(at::kFloat)), z = at::zeros({8}, Opts().dtype(at::kByte));
  cuda::GemvArgs a = TestGemvArgs(cuda::DType::kBF16, x, nullptr, eps, w, 8, nullptr, y, cuda::GemvOut::kStore);
  a.int4_scale = sc.data_ptr<float>();
  a.int4_zero = z.data_ptr<uint8_t>();
  EXPECT_NE(cuda::Gemv(a, Stream()), 0);
}

// The int4 GEMV's reading of its layout, one column at a time: x one-hot at k (with and
// without the norm, which scales it by sqrt(K)) gives W's column k, for unit scales and zero points and
// for random ones, at 1 and 8 rows, with K of 8 steps (slices of one step when the 16 outputs
// leave most of the GPU idle). Any misplaced nibble, staged value or record shows as a column
// read in the wrong place.
TEST_P(GpuKernelsTest, GemvInt4OneHotReadsEachColumn) {
  if (!Bf16()) GTEST_SKIP() << "int4 weights serve 16-bit models";
  const int K = 2048;
  const int64_t N = 16;
  at::Tensor nw = at::ones({K}, Opts());
  for (bool unit : {true, false}) {
    Int4Groups nat{PackInt4(at::randint(0, 16, {N, K}, at::kByte)),
                   unit ? at::ones({N, K / 128}) : at::rand({N, K / 128}) + 0.5,
                   unit ? at::zeros({N, K / 128}, at::kByte) : at::randint(0, 16, {N, K / 128}, at::kByte), K, 128};
    Int4Groups dev = ToInt4GemvLayout(
        Int4Groups{nat.q.to(at::kCUDA), nat.scale.to(at::kCUDA), nat.zero.to(at::kCUDA), K, 128});
    at::Tensor gi = at::arange(K, at::kLong).div(128, "floor");
    at::Tensor want = (nat.scale.index_select(1, gi) *
                       (UnpackInt4(nat.q, K).to(at::kFloat) - nat.zero.to(at::kFloat).index_select(1, gi)))
                          .t()
                          .contiguous();  // [K, N]: row k is column k of W
    for (bool norm : {false, true}) {
      for (int M : {1, 8}) {
        at::Tensor got = at::empty({K, N}, at::kFloat);
        at::Tensor eye = at::eye(K, Opts());
        for (int k0 = 0; k0 < K; k0 += M) {
          at::Tensor x = eye.narrow(0, k0, M).contiguous();
          at::Tensor y = at::full({M, N}, std::nan(""), Opts().dtype(at::kFloat));
          cuda::GemvArgs a = TestGemvArgs(cuda::DType::kBF16, x, norm ? &nw : nullptr, 0.f, dev.q, N, nullptr, y,
                                          cuda::GemvOut::kStoreF32);
          a.int4_scale = dev.scale.data_ptr<float>();
          a.int4_zero = dev.zero.data_ptr<uint8_t>();
          ASSERT_EQ(cuda::Gemv(a, Stream()), 0);
          got.narrow(0, k0, M).copy_(y.cpu());
        }
        // The norm makes a one-hot row sqrt(K) at k (45.25 in bf16: within the tolerance).
        if (norm) got = got / std::sqrt(static_cast<double>(K));
        // Products of 1 and (q - zero) are exact; the scale's product rounds to bf16.
        at::Tensor bad = ((got - want).abs() > want.abs() * (1.0 / 128) + 1e-6).any(1).logical_or(got.isnan().any(1));
        const int64_t nbad = bad.sum().item<int64_t>();
        const std::string where = std::string(unit ? "unit" : "random") + " scales, " + (norm ? "norm, " : "") +
                                  std::to_string(M) + " rows";
        EXPECT_EQ(nbad, 0) << where << ": first wrong column "
                           << (nbad > 0 ? bad.nonzero().min().item<int64_t>() : -1);
      }
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
