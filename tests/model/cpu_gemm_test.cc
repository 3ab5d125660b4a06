// The AVX512-BF16 linear kernel against a float32 reference computed from the same bf16 values.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "worker/model/cpu_gemm.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <set>
#include <thread>

#include "worker/model/cpu_attention.h"
#include "worker/model/cpu_parallel.h"
#include "worker/model/cpu_weights.h"
#include "worker/model/kv_cache.h"
#include "tests/model/fixtures.h"

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

TEST(CpuGemmTest, ToFloatIsExactlyTheBf16Values) {
  at::Tensor x = (at::randn({3, 1000}) * 100).to(at::kBFloat16);
  x[0][0] = -std::numeric_limits<float>::infinity();
  EXPECT_TRUE(at::equal(ToFloat(x), x.to(at::kFloat)));
  EXPECT_TRUE(at::equal(ToFloat(x.t()), x.t().to(at::kFloat)));  // not contiguous
  at::Tensor f = at::randn({5});
  EXPECT_TRUE(at::equal(ToFloat(f), f));
}

// The eager path's ATen math for a prompt chunk (qwen2_eager.cc's Attend): n queries at
// positions num_cached.. over the gathered keys, bf16 bmm, scale, causal mask, float softmax
// rounded to bf16, bf16 bmm.
at::Tensor AtenPrefillAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t num_cached,
                                double scale) {
  const int64_t n = q.size(0), heads = q.size(1), d = q.size(2), kvh = k.size(1), g = heads / kvh, ctx = k.size(0);
  at::Tensor qh = q.view({n, kvh, g, d}).permute({1, 2, 0, 3}).reshape({kvh, g * n, d});
  at::Tensor scores = at::bmm(qh, k.permute({1, 2, 0})).mul_(scale);  // [kvh, g*n, ctx]
  at::Tensor key_pos = at::arange(ctx, at::kLong).view({1, ctx});
  at::Tensor q_pos = (at::arange(n, at::kLong) + num_cached).view({n, 1});
  scores.view({kvh, g, n, ctx}).masked_fill_(key_pos > q_pos, -std::numeric_limits<float>::infinity());
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  at::Tensor out = at::bmm(probs, v.permute({1, 0, 2}));
  return out.view({kvh, g, n, d}).permute({2, 0, 1, 3}).reshape({n, heads, d});
}

TEST(CpuAttentionTest, DecodeAttentionMatchesAtenOnScatteredSlots) {
  at::manual_seed(3);
  const int64_t slots_total = 4096;
  if (!DecodeAttentionApplies(at::zeros({1, 12, 128}, at::kBFloat16), at::zeros({1, 2, 128}, at::kBFloat16)))
    GTEST_SKIP() << "no AVX512-BF16";
  std::printf("AMX tiles %s\n", DecodeAttentionAmx() ? "used (amx runs check them)" : "not on this CPU (amx runs the same kernel)");
  // Query heads per KV head: 6 (the 1.5B), 7 (7B), 5 (14B, 32B), 4 and 8 (the Llama distills),
  // 1, and 12 (two passes of at most 8); head_dim 128, 64, and 96 (columns 32 at a time).
  struct Shape { int64_t heads, kvh, D; };
  for (const Shape sh : {Shape{12, 2, 128}, Shape{28, 4, 128}, Shape{40, 8, 128}, Shape{32, 8, 128},
                         Shape{64, 8, 128}, Shape{4, 4, 64}, Shape{24, 2, 64}, Shape{12, 2, 96}}) {
    // Two kinds of q and K: normal values, and values of -1, 0 and 1, whose dot products are
    // exact in any order of summation, so that the bf16-rounded scores are the same bits here
    // and in ATen (with normal values a score one bf16 step apart moves a large probability by
    // about 2%, which the bound below allows only at the usual scale of q).
    for (bool ternary : {false, true}) {
      auto values = [&](std::vector<int64_t> shape) {
        return (ternary ? at::randint(-1, 2, shape).to(at::kFloat) : at::randn(shape)).to(at::kBFloat16);
      };
      at::Tensor kc = values({slots_total, sh.kvh, sh.D});
      at::Tensor vc = at::randn({slots_total, sh.kvh, sh.D}).to(at::kBFloat16);
      // 700: units shared over the pool; 16 keys at a time and a tail. Slots scattered one by
      // one, or in order (whole cache blocks of 16: the AMX scores load those straight from the
      // cache, the scattered ones through a buffer).
      for (int64_t ctx : {1, 17, 700}) {
        at::Tensor q = values({1, sh.heads, sh.D});
        for (bool in_order : {false, true}) {
          std::vector<int64_t> slots;
          for (int64_t p = 0; p < ctx; ++p) slots.push_back(in_order ? p + 32 : (p * 37 + 5) % slots_total);
          at::Tensor idx = at::tensor(slots, at::kLong);
          const double scale = 1 / std::sqrt(static_cast<double>(sh.D));
          // A decode step is a one-query chunk after ctx - 1 cached keys.
          at::Tensor ref = AtenPrefillAttention(q, kc.index_select(0, idx), vc.index_select(0, idx), ctx - 1, scale);
          for (bool amx : {false, true}) {  // AMX scores where this CPU has them (else the same kernel twice)
            at::Tensor got = DecodeAttention(q, kc, vc, slots, scale, amx);
            ASSERT_EQ(got.sizes(), ref.sizes());
            at::Tensor err = (got.to(at::kFloat) - ref.to(at::kFloat)).abs();
            // Same roundings; only the order of float sums and exp's last bits differ (a bf16 step
            // at most, mostly none).
            EXPECT_TRUE((err <= ref.to(at::kFloat).abs() / 64 + 1e-2).all().item<bool>())
                << (ternary ? "ternary" : "normal") << " heads " << sh.heads << " kv heads " << sh.kvh << " D "
                << sh.D << " ctx " << ctx << (in_order ? " slots in order" : " scattered slots")
                << (amx ? " amx" : "") << " max err " << err.max().item<float>();
          }
        }
      }
    }
  }
}

TEST(CpuAttentionTest, PrefillAttentionMatchesAtenOnScatteredSlots) {
  at::manual_seed(4);
  const int64_t slots_total = 2048;
  if (!PrefillAttentionApplies(at::zeros({2, 12, 128}, at::kBFloat16), at::zeros({1, 2, 128}, at::kBFloat16)))
    GTEST_SKIP() << "no AVX512-BF16";
  struct Shape { int64_t heads, kvh, D; };
  // Groups of 6 (the 1.5B), 7, 5, 1; head_dim 128, 64 and 96 (the P V tile 32 columns wide).
  for (const Shape sh : {Shape{12, 2, 128}, Shape{28, 4, 128}, Shape{40, 8, 128}, Shape{4, 4, 64}, Shape{12, 2, 96}}) {
    for (bool ternary : {false, true}) {  // as in the decode test: -1/0/1 values give exact scores
      auto values = [&](std::vector<int64_t> shape) {
        return (ternary ? at::randint(-1, 2, shape).to(at::kFloat) : at::randn(shape)).to(at::kBFloat16);
      };
      at::Tensor kc = values({slots_total, sh.kvh, sh.D});
      at::Tensor vc = at::randn({slots_total, sh.kvh, sh.D}).to(at::kBFloat16);
      // n: one row, rows in blocks of 16, 32 and 64 with padding; num_cached: none, less than a
      // key block, several blocks with an odd tail.
      for (int64_t n : {1, 3, 11, 70}) {
        for (int64_t num_cached : {0, 5, 133}) {
          std::vector<int64_t> slots;
          for (int64_t p = 0; p < num_cached + n; ++p) slots.push_back((p * 37 + 11) % slots_total);
          at::Tensor q = values({n, sh.heads, sh.D});
          at::Tensor idx = at::tensor(slots, at::kLong);
          const double scale = 1 / std::sqrt(static_cast<double>(sh.D));
          at::Tensor ref = AtenPrefillAttention(q, kc.index_select(0, idx), vc.index_select(0, idx), num_cached, scale);
          for (bool amx : {false, true}) {  // both products on AMX tiles where this CPU has them
            at::Tensor got = PrefillAttention(q, kc, vc, slots, num_cached, scale, amx);
            ASSERT_EQ(got.sizes(), ref.sizes());
            // Both against the same math in float64 on the same bf16 inputs: the kernel rounds
            // the probabilities before their normalisation where ATen rounds them after, so
            // neither is the other's bits; the kernel must be as close to the exact result as
            // ATen's ops are (within one bf16 step of the output, 1/128 relative).
            at::Tensor exact = AtenPrefillAttention(q.to(at::kDouble), kc.index_select(0, idx).to(at::kDouble),
                                                    vc.index_select(0, idx).to(at::kDouble), num_cached, scale);
            at::Tensor err = (got.to(at::kDouble) - exact).abs(), aten_err = (ref.to(at::kDouble) - exact).abs();
            const double max_err = err.max().item<double>(), aten_max = aten_err.max().item<double>();
            EXPECT_LE(max_err, aten_max + exact.abs().max().item<double>() / 128)
                << (ternary ? "ternary" : "normal") << " heads " << sh.heads << " kv heads " << sh.kvh << " D " << sh.D
                << " n " << n << " cached " << num_cached << (amx ? " amx" : "") << " max err " << max_err
                << ", ATen's " << aten_max;
            EXPECT_LE(err.mean().item<double>(), 1.5 * aten_err.mean().item<double>() + 1e-4)
                << (ternary ? "ternary" : "normal") << " heads " << sh.heads << " D " << sh.D << " n " << n
                << " cached " << num_cached << (amx ? " amx" : "");
          }
        }
      }
    }
  }
}

// A prompt fed in chunks of 3 tokens (each chunk attends to the cached ones, masked only
// among its own keys) gives transformers' logits for every position.
TEST(ChunkedPrefillTest, MatchesTransformersPerChunk) {
  for (const char* dtype : {"float32", "bfloat16"}) {
    LoadOptions lo;
    lo.dtype = dtype;
    auto m = Qwen2Model::Load(fixtures::Dir() + "/gqa_untied", lo);
    ASSERT_TRUE(m.ok()) << m.status();
    for (const fixtures::Prompt& p : fixtures::Prompts("gqa_untied")) {
      const std::string key = "gqa_untied." + p.name;
      at::Tensor ref = fixtures::Reference(key + ".f32");
      const double tol = std::string(dtype) == "float32" ? 1e-3 : 2 * fixtures::HfGap("gqa_untied", p.name) + 1e-3;
      KvCache cache((*m)->config(), 32, 8, (*m)->dtype(), at::kCPU);
      SequenceStep s;
      for (int b = 0; b < 32; ++b) s.block_table.push_back((b * 5) % 32);
      const int64_t len = static_cast<int64_t>(p.prompt.size());
      for (int64_t at_pos = 0; at_pos < len; at_pos += 3) {
        StepBatch batch;
        s.num_cached = at_pos;
        s.num_new = std::min<int64_t>(3, len - at_pos);
        batch.tokens.assign(p.prompt.begin() + at_pos, p.prompt.begin() + at_pos + s.num_new);
        batch.seqs = {s};
        auto logits = (*m)->Forward(batch, cache);
        ASSERT_TRUE(logits.ok()) << logits.status();
        const int64_t last = at_pos + s.num_new - 1;
        double err = ((*logits)[0] - ref[last]).abs().max().item<double>();
        EXPECT_LE(err, tol) << dtype << " " << p.name << " position " << last;
      }
    }
  }
}

// The CPU KV cache sits in one WeightArena (2 MiB pages): every tensor starts zeroed, none
// overlaps another, and a tensor kept past the cache still holds its values.
TEST(CpuKvCacheTest, ZeroedDisjointTensorsThatOutliveTheCache) {
  ModelConfig cfg;
  cfg.hidden_size = 64;
  cfg.num_hidden_layers = 3;
  cfg.num_attention_heads = 4;
  cfg.num_key_value_heads = 2;
  for (bool fp8 : {false, true}) {
    auto cache = std::make_unique<KvCache>(cfg, /*num_blocks=*/5, /*block_size=*/16, at::kBFloat16,
                                           at::Device(at::kCPU), fp8);
    std::vector<at::Tensor> all;
    for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
      all.push_back(cache->k(l));
      all.push_back(cache->v(l));
      if (fp8) {
        all.push_back(cache->k_scale(l));
        all.push_back(cache->v_scale(l));
      }
    }
    std::vector<std::pair<uintptr_t, uintptr_t>> spans;
    for (const at::Tensor& t : all) {
      ASSERT_TRUE(t.is_contiguous());
      EXPECT_EQ(t.size(0), 5 * 16);
      EXPECT_TRUE(t.eq(0).all().item<bool>()) << "fp8 " << fp8;
      const auto lo = reinterpret_cast<uintptr_t>(t.data_ptr());
      spans.emplace_back(lo, lo + t.nbytes());
    }
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i) EXPECT_LE(spans[i - 1].second, spans[i].first);
    // Every value written lands in its own tensor only.
    for (size_t i = 0; i < all.size(); ++i) all[i].fill_(static_cast<double>(i + 1));
    at::Tensor k0 = cache->k(0);
    cache.reset();
    for (size_t i = 0; i < all.size(); ++i)
      EXPECT_TRUE(all[i].eq(static_cast<double>(i + 1)).all().item<bool>()) << i;
    EXPECT_TRUE(k0.eq(1).all().item<bool>());
  }
}

// Zeros past the arena's room is an ordinary zeroed tensor.
TEST(CpuKvCacheTest, ArenaZerosFallsBackWhenFull) {
  auto arena = WeightArena::Create(4096);  // rounded up to one 2 MiB page
  ASSERT_NE(arena, nullptr);
  at::Tensor in = arena->Zeros({1024, 512}, at::kFloat);  // 2 MiB: fits
  at::Tensor out = arena->Zeros({16, 16}, at::kBFloat16);  // no room left
  EXPECT_TRUE(in.eq(0).all().item<bool>());
  EXPECT_TRUE(out.eq(0).all().item<bool>());
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  EXPECT_EQ(arena->used(), size_t{2} << 20);
}

TEST(CpuParallelTest, CallerAlwaysRunsAndWorkersJoinWithDistinctSlots) {
  const int saved = at::get_num_threads();
  at::set_num_threads(2);
  // The caller's call waits (up to 10 s) for a worker to join: the worker wakes within
  // microseconds on an idle machine and within a scheduler slice on a busy one.
  std::mutex mu;
  std::multiset<int> slots;
  std::set<std::thread::id> ids;
  std::atomic<int> calls{0};
  ParallelRun([&](int slot) {
    {
      std::lock_guard<std::mutex> lock(mu);
      slots.insert(slot);
      ids.insert(std::this_thread::get_id());
    }
    ++calls;
    if (slot == 0)
      for (int i = 0; i < 10000 && calls.load() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  EXPECT_EQ(slots, (std::multiset<int>{0, 1}));
  EXPECT_EQ(ids.size(), 2u);
  EXPECT_TRUE(ids.count(std::this_thread::get_id()));

  // Work shared through a counter is done exactly once whoever joins, many times over.
  for (int rep = 0; rep < 2000; ++rep) {
    std::vector<std::atomic<int>> done(64);
    std::atomic<int> next{0};
    ParallelRun([&](int) {
      for (int i; (i = next.fetch_add(1)) < 64;) ++done[static_cast<size_t>(i)];
    });
    for (auto& d : done) ASSERT_EQ(d.load(), 1) << "rep " << rep;
  }
  // Inside a call, a nested call runs serially on the calling thread.
  std::atomic<int> nested{0};
  ParallelRun([&](int) { ParallelRun([&](int slot) { nested += (slot == 0); }); });
  EXPECT_GE(nested.load(), 1);
  at::set_num_threads(saved);
}

}  // namespace
}  // namespace r1::model
