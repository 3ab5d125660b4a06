// The model on CUDA against transformers' fixtures (tests/fixtures/model and, for the Llama cases
// without a q/k/v bias, tests/fixtures/model_llama; made by tests/fixtures/make_model_fixtures.py
// with transformers 5.17 in float32 and bfloat16).
// Skipped cleanly where libtorch or the machine has no CUDA (CI).
//
// Tolerances, stated:
//   - CUDA float32: greedy ids equal transformers' float32 ids exactly; logits within 1e-3.
//   - CUDA bfloat16: max |logit - transformers float32 logit| < 2 x transformers' own
//     bf16-versus-f32 gap on the same prompt (the size of bf16 rounding noise for this model).
//   - Batch invariance: a sequence decoded in a batch of 3 (scattered blocks, other lengths)
//     gives the same greedy ids as alone, and logits within 0.5 x that gap.
//   - CUDA-graph decode (its own attention, RoPE and fused ops) against eager decode: logits
//     within 1e-3 in float32 and 2 x the gap in bfloat16 (each path is within about one gap of
//     transformers float32, with different roundings), and the same greedy ids except at
//     near-ties (top-1 lead under 2 x the largest logit difference).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "worker/model/qwen2.h"
#include "tests/model/fixtures.h"

namespace r1::model {
namespace {

using fixtures::Prompt;
using fixtures::Prompts;
using fixtures::Reference;
double HfGap(const std::string& c, const Prompt& p) { return fixtures::HfGap(c, p.name); }

// `flash`: send every prompt chunk of 2+ tokens through flash attention (the default sends only
// chunks with much work; the fixtures' prompts are short).
std::unique_ptr<Qwen2Model> LoadCuda(const std::string& c, const std::string& dtype, bool graphs,
                                     bool kernels = true, bool flash = false) {
  LoadOptions lo;
  lo.device = "cuda";
  lo.dtype = dtype;
  lo.tuning.cuda_graphs = graphs;
  lo.tuning.cuda_kernels = kernels;
  if (flash) {
    lo.tuning.flash_min_tokens = 1;
    lo.tuning.flash_min_work = 0;
  }
  auto m = Qwen2Model::Load(c.front() == '/' ? c : fixtures::DirOf(c) + "/" + c, lo);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(*m) : nullptr;
}

// Several sequences stepped together: prefill of each prompt, then teacher-forced decode of
// `seqs[i]` (one token per step). Returns each sequence's logits rows (positions plen-1 ..
// len-2) on the CPU, [steps, V].
std::vector<at::Tensor> RunBatch(Qwen2Model& m, const std::vector<std::vector<int32_t>>& seqs,
                                 const std::vector<size_t>& plens, int block_offset) {
  const size_t n = seqs.size();
  // Sequence i takes blocks stride b + i (+ offset): disjoint while n <= stride.
  const int stride = std::max(5, static_cast<int>(n)), blocks = 32 * stride;
  KvCache cache(m.config(), blocks, 4, m.dtype(), m.device());
  std::vector<SequenceStep> st(n);
  for (size_t i = 0; i < n; ++i)
    for (int b = 0; b < 32; ++b)
      st[i].block_table.push_back(static_cast<int32_t>((b * stride + static_cast<int>(i) + block_offset) % blocks));
  std::vector<std::vector<at::Tensor>> rows(n);
  size_t steps = 0;
  for (size_t i = 0; i < n; ++i) steps = std::max(steps, seqs[i].size() - plens[i]);
  for (size_t step = 0; step < steps; ++step) {
    StepBatch b;
    std::vector<size_t> who;
    for (size_t i = 0; i < n; ++i) {
      if (plens[i] + step > seqs[i].size() - 1) continue;  // this one is done
      SequenceStep& s = st[i];
      s.num_cached = step == 0 ? 0 : static_cast<int64_t>(plens[i] + step - 1);
      s.num_new = step == 0 ? static_cast<int64_t>(plens[i]) : 1;
      b.tokens.insert(b.tokens.end(), seqs[i].begin() + s.num_cached, seqs[i].begin() + s.num_cached + s.num_new);
      b.seqs.push_back(s);
      who.push_back(i);
    }
    auto logits = m.Forward(b, cache);
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) return {};
    at::Tensor cpu = logits->to(at::kCPU);
    for (size_t j = 0; j < who.size(); ++j) rows[who[j]].push_back(cpu[static_cast<int64_t>(j)]);
  }
  std::vector<at::Tensor> out;
  for (auto& r : rows) out.push_back(at::stack(r));
  return out;
}

// Rows where `a` and `b` pick different top tokens although `a`'s top-1 leads its top-2 by
// more than 2 x `diff` (the largest logit difference seen): a flip at a closer near-tie is
// bf16 rounding (transformers' own bf16 greedy ids flip on these fixtures too).
int64_t ClearFlips(const at::Tensor& a, const at::Tensor& b, double diff) {
  at::Tensor top2 = std::get<0>(a.topk(2, -1));
  at::Tensor clear = (top2.select(-1, 0) - top2.select(-1, 1)) > 2 * diff;
  return (clear & a.argmax(-1).ne(b.argmax(-1))).sum().item<int64_t>();
}

// Each prompt followed by its float32 greedy continuation, and the prompt lengths.
void FullSequences(const std::vector<Prompt>& ps, std::vector<std::vector<int32_t>>* seqs,
                   std::vector<size_t>* plens) {
  for (const Prompt& p : ps) {
    seqs->push_back(p.prompt);
    seqs->back().insert(seqs->back().end(), p.greedy_f32.begin(), p.greedy_f32.end());
    plens->push_back(p.prompt.size());
  }
}

class GpuModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA (this libtorch or this machine has no GPU)";
    if (std::string why = fixtures::Missing(GetParam()); !why.empty()) GTEST_FAIL() << why;
  }
};

TEST_P(GpuModelTest, Bfloat16LogitsMatchTransformersFloat32) {
  const std::string c = GetParam();
  auto m = LoadCuda(c, "bfloat16", true);
  ASSERT_TRUE(m);
  for (const Prompt& p : Prompts(c)) {
    std::vector<int32_t> seq = p.prompt;
    seq.insert(seq.end(), p.greedy_f32.begin(), p.greedy_f32.end());
    at::Tensor ref = Reference(c + "." + p.name + ".f32");
    at::Tensor got = RunBatch(*m, {seq}, {p.prompt.size()}, 0)[0];
    at::Tensor want = ref.narrow(0, static_cast<int64_t>(p.prompt.size()) - 1, got.size(0));
    double diff = (got - want).abs().max().item<double>(), gap = HfGap(c, p);
    std::printf("%s %s cuda bf16: max |logit - transformers f32| %.4g (transformers bf16 vs f32: %.4g)\n",
                c.c_str(), p.name.c_str(), diff, gap);
    EXPECT_LT(diff, 2 * gap) << c << " " << p.name;
  }
}

TEST_P(GpuModelTest, Float32GreedyIdsEqualTransformers) {
  const std::string c = GetParam();
  for (bool graphs : {false, true}) {
    auto m = LoadCuda(c, "float32", graphs);
    ASSERT_TRUE(m);
    for (const Prompt& p : Prompts(c)) {
      double worst = 0;
      at::Tensor ref = Reference(c + "." + p.name + ".f32");
      std::vector<int32_t> out = fixtures::GreedyIds(
          *m, p.prompt, p.greedy_f32.size(), [&](int64_t pos, const at::Tensor& row) {
            worst = std::max(worst, (row - ref[pos]).abs().max().item<double>());
          });
      std::printf("%s %s cuda f32 (graphs %d): max |logit diff| %.3g\n", c.c_str(), p.name.c_str(), graphs, worst);
      EXPECT_EQ(out, p.greedy_f32) << c << " " << p.name << " graphs " << graphs;
      EXPECT_LT(worst, 1e-3) << c << " " << p.name;
    }
  }
}

TEST_P(GpuModelTest, BatchInvariantBfloat16) {
  const std::string c = GetParam();
  auto m = LoadCuda(c, "bfloat16", true);
  ASSERT_TRUE(m);
  std::vector<Prompt> ps = Prompts(c);
  std::vector<std::vector<int32_t>> seqs;
  std::vector<size_t> plens;
  FullSequences(ps, &seqs, &plens);
  std::vector<at::Tensor> together = RunBatch(*m, seqs, plens, 0);
  ASSERT_EQ(together.size(), seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    at::Tensor alone = RunBatch(*m, {seqs[i]}, {plens[i]}, 7)[0];
    double diff = (alone - together[i]).abs().max().item<double>(), gap = HfGap(c, ps[i]);
    std::printf("%s %s bf16 alone vs batch of %zu: max |logit diff| %.4g (gap %.4g)\n", c.c_str(),
                ps[i].name.c_str(), seqs.size(), diff, gap);
    EXPECT_TRUE(at::equal(alone.argmax(-1), together[i].argmax(-1))) << c << " " << ps[i].name;
    EXPECT_LT(diff, 0.5 * gap) << c << " " << ps[i].name;
  }
}

TEST_P(GpuModelTest, GraphDecodeEqualsEager) {
  const std::string c = GetParam();
  std::vector<Prompt> ps = Prompts(c);
  std::vector<std::vector<int32_t>> seqs;
  std::vector<size_t> plens;
  FullSequences(ps, &seqs, &plens);
  // One more sequence whose decode crosses the 64-key context bucket (50-token prompt, 30 steps):
  // its ids are the fixture prompts' tokens repeated (no reference needed: graph vs eager).
  std::vector<int32_t> longer;
  while (longer.size() < 80)
    for (const auto& q : seqs) longer.insert(longer.end(), q.begin(), q.end());
  longer.resize(80);
  seqs.push_back(longer);
  plens.push_back(50);
  ps.push_back(ps.back());
  for (std::string dtype : {"float32", "bfloat16"}) {
    auto eager = LoadCuda(c, dtype, false), graph = LoadCuda(c, dtype, true);
    ASSERT_TRUE(eager && graph);
    for (size_t n : {size_t{1}, seqs.size() - 1, seqs.size()}) {
      std::vector<std::vector<int32_t>> s(seqs.begin(), seqs.begin() + static_cast<long>(n));
      std::vector<size_t> pl(plens.begin(), plens.begin() + static_cast<long>(n));
      std::vector<at::Tensor> a = RunBatch(*eager, s, pl, 0), b = RunBatch(*graph, s, pl, 0);
      ASSERT_EQ(a.size(), n);
      ASSERT_EQ(b.size(), n);
      for (size_t i = 0; i < n; ++i) {
        double diff = (a[i] - b[i]).abs().max().item<double>(), gap = HfGap(c, ps[i]);
        std::printf("%s %s %s batch %zu graph vs eager: max |logit diff| %.4g (gap %.4g)\n", c.c_str(),
                    ps[i].name.c_str(), dtype.c_str(), n, diff, gap);
        EXPECT_EQ(ClearFlips(a[i], b[i], diff), 0) << c << " " << ps[i].name << " " << dtype;
        EXPECT_LT(diff, dtype == "float32" ? 1e-3 : 2 * gap) << c << " " << ps[i].name << " " << dtype;
      }
    }
  }
}

// One sequence: its prompt in chunks of `chunk` tokens (every chunk after the first has cached
// keys, so it goes through the paged-attention kernel), then teacher-forced decode. Returns the
// logits rows of positions plen-1 .. len-2 on the CPU.
at::Tensor RunChunked(Qwen2Model& m, const std::vector<int32_t>& seq, size_t plen, size_t chunk,
                      bool fp8 = false, int64_t bs = 4, int64_t blocks = 64) {
  KvCache cache(m.config(), blocks, bs, m.dtype(), m.device(), fp8);
  SequenceStep s;
  for (int64_t b = 0; b < blocks; ++b) s.block_table.push_back(static_cast<int32_t>((b * 7 + 3) % blocks));
  std::vector<at::Tensor> rows;
  size_t done = 0;
  while (done + 1 < seq.size()) {
    const size_t n = done < plen ? std::min(chunk, plen - done) : 1;
    StepBatch b;
    s.num_cached = static_cast<int64_t>(done);
    s.num_new = static_cast<int64_t>(n);
    b.tokens.assign(seq.begin() + static_cast<long>(done), seq.begin() + static_cast<long>(done + n));
    b.seqs.push_back(s);
    auto logits = m.Forward(b, cache);
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) return {};
    done += n;
    if (done >= plen) rows.push_back(logits->to(at::kCPU)[0]);
  }
  return at::stack(rows);
}

// Our kernels (fused ops, paged attention, flash prefill) against the plain ATen step on the
// same GPU (float32 logits within 1e-3; bfloat16 within 4 x transformers' bf16-vs-f32 gap), and
// ours against transformers float32 (1e-3; bf16 2 x gap). The prompt whole and in chunks of 3,
// each through the paged kernel (the default for short chunks) and through flash attention
// over the gathered cache (bfloat16; flash has no float32).
TEST_P(GpuModelTest, KernelsEqualAtenStep) {
  const std::string c = GetParam();
  for (std::string dtype : {"float32", "bfloat16"}) {
    auto aten = LoadCuda(c, dtype, false, /*kernels=*/false), ours = LoadCuda(c, dtype, false);
    auto flash = LoadCuda(c, dtype, false, /*kernels=*/true, /*flash=*/true);
    ASSERT_TRUE(aten && ours && flash);
    for (const Prompt& p : Prompts(c)) {
      std::vector<int32_t> seq = p.prompt;
      seq.insert(seq.end(), p.greedy_f32.begin(), p.greedy_f32.end());
      at::Tensor ref = Reference(c + "." + p.name + ".f32")
                           .narrow(0, static_cast<int64_t>(p.prompt.size()) - 1,
                                   static_cast<int64_t>(seq.size() - p.prompt.size()));
      // bf16: each path is within 2 x gap of transformers f32, rounding differently, so the two
      // are within 4 x gap of each other.
      const double gap = HfGap(c, p), tol = dtype == "float32" ? 1e-3 : 2 * gap;
      const double tol_pair = dtype == "float32" ? 1e-3 : 4 * gap;
      for (size_t chunk : {p.prompt.size(), size_t{3}}) {
        at::Tensor a = RunChunked(*aten, seq, p.prompt.size(), chunk);
        for (Qwen2Model* m : {ours.get(), flash.get()}) {
          const char* how = m == flash.get() ? "flash" : "paged";
          at::Tensor b = RunChunked(*m, seq, p.prompt.size(), chunk);
          ASSERT_EQ(a.sizes(), b.sizes());
          double diff = (a - b).abs().max().item<double>();
          double to_hf = (b - ref).abs().max().item<double>();
          std::printf("%s %s %s chunk %zu %s: kernels vs aten %.4g, vs transformers f32 %.4g (gap %.4g)\n",
                      c.c_str(), p.name.c_str(), dtype.c_str(), chunk, how, diff, to_hf, gap);
          EXPECT_LT(diff, tol_pair) << c << " " << p.name << " " << dtype << " chunk " << chunk << " " << how;
          EXPECT_LT(to_hf, tol) << c << " " << p.name << " " << dtype << " chunk " << chunk << " " << how;
        }
      }
    }
  }
}

// The FP8 KV cache on the parity fixtures: teacher-forced logits against transformers float32
// and against the same model with a cache in its own dtype (the drift the cache adds, printed),
// and greedy agreement: no position where the top token differs although it led by more than
// twice the drift. Threshold: e4m3 keeps 3 mantissa bits where bf16 keeps 7, so it rounds K and
// V 16 times more coarsely than bf16 rounds every value; the drift must stay within 16 times
// transformers' own bf16-versus-f32 gap.
TEST_P(GpuModelTest, Fp8KvCacheDrift) {
  const std::string c = GetParam();
  for (std::string dtype : {"float32", "bfloat16"}) {
    auto m = LoadCuda(c, dtype, false);
    ASSERT_TRUE(m);
    for (const Prompt& p : Prompts(c)) {
      std::vector<int32_t> seq = p.prompt;
      seq.insert(seq.end(), p.greedy_f32.begin(), p.greedy_f32.end());
      at::Tensor ref = Reference(c + "." + p.name + ".f32")
                           .narrow(0, static_cast<int64_t>(p.prompt.size()) - 1,
                                   static_cast<int64_t>(seq.size() - p.prompt.size()));
      at::Tensor full = RunChunked(*m, seq, p.prompt.size(), p.prompt.size());
      at::Tensor fp8 = RunChunked(*m, seq, p.prompt.size(), p.prompt.size(), /*fp8=*/true);
      const double drift = (fp8 - full).abs().max().item<double>();
      const double to_hf = (fp8 - ref).abs().max().item<double>(), scale = ref.abs().max().item<double>();
      const double agree = fp8.argmax(-1).eq(ref.argmax(-1)).to(at::kFloat).mean().item<double>();
      std::printf("%s %s %s fp8 KV cache: max |logit - %s cache| %.4g, vs transformers f32 %.4g (logits up to %.3g), "
                  "greedy agreement %.3f\n", c.c_str(), p.name.c_str(), dtype.c_str(), dtype.c_str(), drift, to_hf,
                  scale, agree);
      EXPECT_EQ(ClearFlips(ref, fp8, to_hf), 0) << c << " " << p.name << " " << dtype;
      EXPECT_LT(drift, 16 * HfGap(c, p)) << c << " " << p.name << " " << dtype;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuModelTest,
                         ::testing::Values("gqa_untied", "tied_mqa_sharded", "llama3_gqa_untied",
                                           "llama3_kv3_hd12_tied_sharded"));

// --quantization fp8 (e4m3 linear layers, per-channel scales) on the parity fixtures,
// teacher-forced over prompt + transformers' float32 greedy continuation: the logits of every
// decoded position against transformers' float32 logits, top-1 agreement and mean
// KL(reference || fp8) in nats, beside the same figures for the unquantized bf16 model, with
// lm_head e4m3 (the default) and kept in bf16. The fixtures' K (48, 64, 96) is below the FP8
// GEMV's multiple of 128, so every step runs on the FP8 GEMMs with e4m3 activations per token;
// the GEMV route is checked on the distills' shapes (GpuLongContextTest below).
// Bounds: about twice the drift these tiny random models gave when written (docs/gpu.md).
// A fixture whose dimensions are not multiples of 16 is refused with the reason.
TEST(GpuFp8WeightsTest, LogitsStayNearTransformersFloat32) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA (this libtorch or this machine has no GPU)";
  using fixtures::Drift;
  auto measure = [](const std::string& c, const std::string& quantization, bool fp8_lm_head) -> std::optional<Drift> {
    LoadOptions lo;
    lo.device = "cuda";
    lo.dtype = "bfloat16";
    lo.quantization = quantization;
    lo.fp8_lm_head = fp8_lm_head;
    auto m = Qwen2Model::Load(fixtures::DirOf(c) + "/" + c, lo);
    if (!m.ok()) {
      if (std::string(m.status().message()).find("needs FP8 tensor cores") != std::string::npos) return std::nullopt;
      ADD_FAILURE() << c << ": " << m.status();
      return Drift{};
    }
    Drift d;
    for (const Prompt& p : Prompts(c)) {
      std::vector<int32_t> seq = p.prompt;
      seq.insert(seq.end(), p.greedy_f32.begin(), p.greedy_f32.end());
      at::Tensor got = RunBatch(**m, {seq}, {p.prompt.size()}, 0)[0];
      d.Add(got, Reference(c + "." + p.name + ".f32").narrow(0, static_cast<int64_t>(p.prompt.size()) - 1, got.size(0)));
    }
    return d;
  };
  for (const std::string c : {"gqa_untied", "tied_mqa_sharded", "llama3_gqa_untied"}) {
    if (std::string why = fixtures::Missing(c); !why.empty()) {
      ADD_FAILURE() << why;
      continue;
    }
    const std::optional<Drift> bf16 = measure(c, "none", false);
    ASSERT_TRUE(bf16);
    for (bool head : {true, false}) {
      const std::optional<Drift> d = measure(c, "fp8", head);
      if (!d) GTEST_SKIP() << "this GPU has no FP8 tensor cores (compute capability < 8.9)";
      std::printf("drift fp8 weights, lm_head %s, %s: top-1 agreement %.4f, mean KL %.3g nats "
                  "(bf16 weights: %.4f, %.3g)\n", head ? "e4m3" : "bf16", c.c_str(), d->top1(), d->kl(), bf16->top1(), bf16->kl());
      EXPECT_GE(d->top1(), 0.4) << c << (head ? " lm_head e4m3" : " lm_head bf16");
      EXPECT_LT(d->kl(), 0.45) << c << (head ? " lm_head e4m3" : " lm_head bf16");
    }
  }
  // Refused with the reason: head_dim 12 x 6 heads = 72 is not a multiple of 16; float32.
  LoadOptions lo;
  lo.device = "cuda";
  lo.dtype = "bfloat16";
  lo.quantization = "fp8";
  const std::string odd = "llama3_kv3_hd12_tied_sharded";
  auto refused = Qwen2Model::Load(fixtures::DirOf(odd) + "/" + odd, lo);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(std::string(refused.status().message()).find("num_attention_heads x head_dim is 72"), std::string::npos)
      << refused.status();
  lo.dtype = "float32";
  auto f32 = Qwen2Model::Load(fixtures::DirOf("gqa_untied") + "/gqa_untied", lo);
  ASSERT_FALSE(f32.ok());
  EXPECT_NE(std::string(f32.status().message()).find("runs with --dtype bfloat16"), std::string::npos) << f32.status();
}

// The long-context path on the distills' head_dim (128, groups of 3 query heads): a random
// two-layer model (r1-mkmodel --preset d128-test) fed a 1,500-token prompt in chunks of 512
// (flash attention over K/V gathered from the cache), then 40 teacher-forced decode steps
// (the tensor-core decode kernel, replayed from CUDA graphs). Reference: the plain ATen step in
// float32. bf16 within 2 x the ATen bf16 step's own gap to it; the FP8 cache's drift printed,
// no clear greedy flip.
class GpuLongContextTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!at::hasCUDA()) return;
    dir_ = ::testing::TempDir() + "/r1-d128-test";
    std::filesystem::remove_all(dir_);  // r1-mkmodel does not overwrite (an earlier run's model)
    const char* bin = std::getenv("R1_BIN_DIR");
    std::string cmd = std::string(bin ? bin : "build/bin") + "/r1-mkmodel --preset d128-test --out " + dir_ +
                      " > /dev/null 2>&1";
    made_ = std::system(cmd.c_str()) == 0;
  }
  void SetUp() override {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA";
    ASSERT_TRUE(made_) << "r1-mkmodel --preset d128-test failed";
  }
  static inline std::string dir_;
  static inline bool made_ = false;
};

// A long sequence in 16-token blocks, scattered.
at::Tensor RunLong(Qwen2Model& m, const std::vector<int32_t>& seq, size_t plen, size_t chunk, bool fp8) {
  return RunChunked(m, seq, plen, chunk, fp8, 16, static_cast<int64_t>(seq.size()) / 16 + 2);
}

// The smallest cosine between matching rows of two [positions, vocab] logit tensors (float64).
double MinRowCosine(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor x = a.to(at::kDouble), y = b.to(at::kDouble);
  return ((x * y).sum(1) / (x.norm(2, 1) * y.norm(2, 1))).min().item<double>();
}

// FP8 weights on the distills' shapes (K multiples of 128, d128-test): a 260-token prompt and 40
// teacher-forced decode steps, decode on the FP8 GEMV (batch 1, the default route) and on the
// FP8 GEMMs (--gemv-max-rows 0), with lm_head e4m3, against the ATen float32 step of the
// unquantized weights. The measure is the cosine of each position's logits with the
// reference's (the random model's logits are nearly flat, so top-1 says little): e4m3's 3
// mantissa bits keep it near 1, a kernel that pairs the wrong weights with x drops it to ~0.
TEST_F(GpuLongContextTest, Fp8WeightsGemvAndGemmRoutesTrackAtenFloat32) {
  std::vector<int32_t> seq;
  for (int i = 0; i < 300; ++i) seq.push_back((i * 2654435761u >> 7) % 4096);
  const size_t plen = 260;
  auto aten32 = LoadCuda(dir_, "float32", false, /*kernels=*/false);
  ASSERT_TRUE(aten32);
  at::Tensor ref = RunLong(*aten32, seq, plen, plen, false).to(at::kDouble);
  for (int rows : {1, 0}) {
    LoadOptions lo;
    lo.device = "cuda";
    lo.dtype = "bfloat16";
    lo.quantization = "fp8";
    lo.tuning.gemv_max_rows = rows;
    auto m = Qwen2Model::Load(dir_, lo);
    if (!m.ok() && std::string(m.status().message()).find("needs FP8 tensor cores") != std::string::npos)
      GTEST_SKIP() << m.status();
    ASSERT_TRUE(m.ok()) << m.status();
    at::Tensor got = RunLong(**m, seq, plen, plen, false);
    const double cos = MinRowCosine(got, ref), diff = (got.to(at::kDouble) - ref).abs().max().item<double>();
    const double agree = got.argmax(-1).eq(ref.argmax(-1)).to(at::kFloat).mean().item<double>();
    std::printf("d128-test fp8 weights, %s: min cosine to aten f32 %.5f, max |logit diff| %.4g (logits up to %.3g), "
                "top-1 agreement %.3f\n", rows ? "decode on the FP8 GEMV" : "decode on the FP8 GEMMs", cos, diff,
                ref.abs().max().item<double>(), agree);
    EXPECT_GT(cos, 0.98) << "gemv max rows " << rows;
  }
}

// A compressed-tensors FP8 dynamic checkpoint (r1-mkmodel --quantization fp8 from the same seed
// as the bf16 d128-test model) against quantizing that bf16 twin at load: the same e4m3 codes
// (r1-mkmodel's host codec and QuantizeFp8Rows both follow the format, Fp8HostTest and
// QuantizeFp8RowsMatchesAtenE4m3), but the checkpoint's scales are rounded to bf16 as it stores
// them (up to 2^-9 of each row). This random model amplifies such perturbations (its bf16 step
// is 2.3-2.8 logits away from float32 at 1,500 tokens), so the bound is a cosine of 0.99 for
// every position's logits (measured on the H200: 0.99758, max |diff| 0.139); a checkpoint read
// with the wrong scales or rows lands far below.
TEST_F(GpuLongContextTest, Fp8CheckpointTracksQuantizingItsBf16TwinAtLoad) {
  const std::string fp8_dir = ::testing::TempDir() + "/r1-d128-test-fp8";
  const char* bin = std::getenv("R1_BIN_DIR");
  const std::string cmd = std::string(bin ? bin : "build/bin") + "/r1-mkmodel --preset d128-test --force --quantization fp8 --out " +
                          fp8_dir + " > /dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::vector<int32_t> seq;
  for (int i = 0; i < 120; ++i) seq.push_back((i * 2654435761u >> 7) % 4096);
  LoadOptions lo;
  lo.device = "cuda";
  lo.dtype = "bfloat16";
  lo.quantization = "fp8";
  auto at_load = Qwen2Model::Load(dir_, lo);
  if (!at_load.ok() && std::string(at_load.status().message()).find("needs FP8 tensor cores") != std::string::npos)
    GTEST_SKIP() << at_load.status();
  ASSERT_TRUE(at_load.ok()) << at_load.status();
  lo.quantization = "auto";
  auto from_ck = Qwen2Model::Load(fp8_dir, lo);
  ASSERT_TRUE(from_ck.ok()) << from_ck.status();
  EXPECT_EQ((*from_ck)->quantization(), "fp8");
  EXPECT_NE((*from_ck)->QuantizationSummary().find("from the compressed-tensors FP8 checkpoint"), std::string::npos)
      << (*from_ck)->QuantizationSummary();
  at::Tensor a = RunLong(**at_load, seq, 100, 100, false).to(at::kDouble);
  at::Tensor b = RunLong(**from_ck, seq, 100, 100, false).to(at::kDouble);
  const double cos = MinRowCosine(a, b);
  std::printf("d128-test FP8 checkpoint against quantized at load: min cosine %.7f, max |logit diff| %.4g\n", cos,
              (a - b).abs().max().item<double>());
  EXPECT_GT(cos, 0.99);
}

// Int4 weights on CUDA (d128-test quantized at load in groups of 128; the same model's AWQ
// checkpoint from r1-mkmodel): a 260-token prompt (more rows than --int4-gemv-max-rows: each
// layer dequantized for cuBLAS) and 40 teacher-forced decode steps on the int4 GEMV, against
//   - the CPU's int4 path on the same int4 weights (its own kernel, with x quantized to int8 per
//     token: a few tenths of a percent apart), min cosine of every position's logits > 0.99;
//   - the same model with every step dequantized (--int4-gemv-max-rows 0: the 16-bit rounding
//     of the dequantized weights apart), > 0.995;
//   - the ATen float32 step of the unquantized weights (int4's own error on random weights,
//     printed; a kernel pairing the wrong weights with x lands near 0), > 0.9;
// and 12 sequences decoded together (two GEMV launches a layer: 8 rows and 4) against each
// decoded alone, > 0.999. Quantization error on random weights says nothing of quality; these
// bounds check the kernels and the loader.
TEST_F(GpuLongContextTest, Int4WeightsTrackTheCpuInt4PathAndDequantizedRoute) {
  std::vector<int32_t> seq;
  for (int i = 0; i < 300; ++i) seq.push_back((i * 2654435761u >> 7) % 4096);
  const size_t plen = 260;
  auto load = [&](const std::string& dir, const std::string& device, int gemv_rows) {
    LoadOptions lo;
    lo.device = device;
    lo.dtype = "bfloat16";
    lo.quantization = "int4";
    lo.tuning.int4_gemv_max_rows = gemv_rows;
    auto m = Qwen2Model::Load(dir, lo);
    EXPECT_TRUE(m.ok()) << device << ": " << m.status();
    return m.ok() ? std::move(*m) : nullptr;
  };
  auto aten32 = LoadCuda(dir_, "float32", false, /*kernels=*/false);
  ASSERT_TRUE(aten32);
  const at::Tensor ref = RunLong(*aten32, seq, plen, plen, false).to(at::kDouble);
  auto gpu = load(dir_, "cuda", 64), dequant = load(dir_, "cuda", 0), cpu = load(dir_, "cpu", 64);
  ASSERT_TRUE(gpu && dequant && cpu);
  EXPECT_NE(gpu->QuantizationSummary().find("int4 GEMV"), std::string::npos) << gpu->QuantizationSummary();
  const at::Tensor a = RunLong(*gpu, seq, plen, plen, false).to(at::kDouble);
  const at::Tensor b = RunLong(*dequant, seq, plen, plen, false).to(at::kDouble);
  const at::Tensor c = RunLong(*cpu, seq, plen, plen, false).to(at::kDouble);
  const double to_cpu = MinRowCosine(a, c), to_dequant = MinRowCosine(a, b), to_f32 = MinRowCosine(a, ref);
  using Route = std::pair<const char*, at::Tensor>;
  for (const Route& r : std::vector<Route>{{"GEMV", a}, {"dequantized", b}, {"CPU", c}})
    EXPECT_FALSE(r.second.isnan().any().item<bool>()) << "NaN logits from the " << r.first << " route";
  std::printf("d128-test int4 on CUDA: min cosine to the CPU int4 path %.5f, to the dequantized route %.6f, to aten "
              "f32 unquantized %.4f (max |logit diff| %.4g, logits up to %.3g)\n",
              to_cpu, to_dequant, to_f32, (a - ref).abs().max().item<double>(), ref.abs().max().item<double>());
  EXPECT_GT(to_cpu, 0.99);
  EXPECT_GT(to_dequant, 0.995);
  EXPECT_GT(to_f32, 0.9);

  // 12 sequences at once: decode steps of 12 rows.
  std::vector<std::vector<int32_t>> seqs;
  std::vector<size_t> plens;
  for (int i = 0; i < 12; ++i) {
    seqs.emplace_back(seq.begin() + 7 * i, seq.begin() + 7 * i + 40);
    plens.push_back(static_cast<size_t>(5 + i));
  }
  std::vector<at::Tensor> together = RunBatch(*gpu, seqs, plens, 0);
  ASSERT_EQ(together.size(), seqs.size());
  double worst = 1.0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    at::Tensor alone = RunBatch(*gpu, {seqs[i]}, {plens[i]}, 3)[0];
    worst = std::min(worst, MinRowCosine(together[i], alone));
  }
  std::printf("d128-test int4 on CUDA: 12 sequences together against each alone, min cosine %.6f\n", worst);
  EXPECT_GT(worst, 0.999);

  // The AWQ checkpoint (random packed weights) on CUDA against the CPU's reading of it.
  const std::string awq_dir = ::testing::TempDir() + "/r1-d128-test-awq";
  const char* bin = std::getenv("R1_BIN_DIR");
  const std::string cmd = std::string(bin ? bin : "build/bin") + "/r1-mkmodel --preset d128-test --force --quantization awq --out " +
                          awq_dir + " > /dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto awq_gpu = load(awq_dir, "cuda", 64), awq_cpu = load(awq_dir, "cpu", 64);
  ASSERT_TRUE(awq_gpu && awq_cpu);
  EXPECT_NE(awq_gpu->QuantizationSummary().find("from the AWQ GEMM checkpoint"), std::string::npos);
  const double awq_cos = MinRowCosine(RunLong(*awq_gpu, seq, 100, 100, false), RunLong(*awq_cpu, seq, 100, 100, false));
  std::printf("d128-test AWQ checkpoint, CUDA against CPU: min cosine %.5f\n", awq_cos);
  EXPECT_GT(awq_cos, 0.99);

  // Refused with the reason: groups of 64 (the layout takes 128), float32.
  LoadOptions lo;
  lo.device = "cuda";
  lo.dtype = "bfloat16";
  lo.quantization = "int4";
  lo.int4_group_size = 64;
  auto g64 = Qwen2Model::Load(dir_, lo);
  ASSERT_FALSE(g64.ok());
  EXPECT_NE(std::string(g64.status().message()).find("groups of 128"), std::string::npos) << g64.status();
  lo.int4_group_size = 128;
  lo.dtype = "float32";
  auto f32 = Qwen2Model::Load(dir_, lo);
  ASSERT_FALSE(f32.ok());
  EXPECT_NE(std::string(f32.status().message()).find("bfloat16 or float16"), std::string::npos) << f32.status();
}

TEST_F(GpuLongContextTest, ChunkedFlashPrefillAndTensorCoreDecodeMatchAten) {
  std::vector<int32_t> seq;
  for (int i = 0; i < 1540; ++i) seq.push_back((i * 2654435761u >> 7) % 4096);
  const size_t plen = 1500;
  auto aten32 = LoadCuda(dir_, "float32", false, /*kernels=*/false);
  auto aten16 = LoadCuda(dir_, "bfloat16", false, /*kernels=*/false);
  auto ours = LoadCuda(dir_, "bfloat16", /*graphs=*/true);
  ASSERT_TRUE(aten32 && aten16 && ours);
  at::Tensor ref = RunLong(*aten32, seq, plen, 512, false);
  at::Tensor a16 = RunLong(*aten16, seq, plen, 512, false);
  const double gap = (a16 - ref).abs().max().item<double>();
  for (size_t chunk : {size_t{512}, size_t{1500}}) {
    at::Tensor got = RunLong(*ours, seq, plen, chunk, false);
    ASSERT_EQ(got.sizes(), ref.sizes());
    const double diff = (got - ref).abs().max().item<double>();
    std::printf("d128-test prompt 1500 chunk %zu + 40 decode steps, bf16: max |logit - aten f32| %.4g "
                "(aten bf16: %.4g)\n", chunk, diff, gap);
    EXPECT_LT(diff, 2 * gap + 1e-3) << "chunk " << chunk;
    EXPECT_EQ(ClearFlips(ref, got, diff), 0) << "chunk " << chunk;
  }
  at::Tensor fp8 = RunLong(*ours, seq, plen, 512, true);
  const double drift = (fp8 - ref).abs().max().item<double>(), scale = ref.abs().max().item<double>();
  const double agree = fp8.argmax(-1).eq(ref.argmax(-1)).to(at::kFloat).mean().item<double>();
  std::printf("d128-test fp8 KV cache: max |logit - aten f32| %.4g (bf16 cache %.4g; logits up to %.3g), "
              "greedy agreement %.3f\n", drift, (RunLong(*ours, seq, plen, 512, false) - ref).abs().max().item<double>(),
              scale, agree);
  EXPECT_EQ(ClearFlips(ref, fp8, drift), 0);
  EXPECT_LT(drift, 16 * gap + 1e-3);  // see Fp8KvCacheDrift
}

}  // namespace
}  // namespace r1::model
