// The row-invariant float32 kernels (cpu_f32.h): against ATen computations in double precision
// within bounds that float32 sums in our order always meet, and bit-identical rows whatever
// the rows around them, the thread count and the instruction set; then the whole float32 step
// of a fixture model: a token's logits the same bits whether its prompt is prefilled at once,
// in chunks, token by token, or next to another sequence.
#include "worker/model/cpu_f32.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "tests/model/fixtures.h"
#include "worker/model/qwen2.h"

namespace r1::model {
namespace {

constexpr double kUnit = 1.0 / (1 << 24);  // float32's unit roundoff

// y = x · Wᵀ + b in double, and a bound on what float32 sums in lane order may differ from it:
// each output is at most K/8 + 3 roundings deep (a lane's multiply-adds, the lane tree, the
// bias), each off by at most kUnit of a partial sum bounded by Σ|x||w| + |b|; one more for the
// result's own rounding.
struct Reference {
  at::Tensor y, bound;
};
Reference LinearReference(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  at::Tensor xd = x.to(at::kDouble), wd = w.to(at::kDouble);
  at::Tensor bd = b.defined() ? b.to(at::kDouble) : at::Tensor();
  at::Tensor mag = at::linear(xd.abs(), wd.abs(), bd.defined() ? bd.abs() : at::Tensor());
  const double depth = static_cast<double>(x.size(1) / 8 + 5);
  return {at::linear(xd, wd, bd), mag * (depth * kUnit) + 1e-30};
}

void ExpectWithin(const at::Tensor& got, const Reference& ref, const std::string& what) {
  ASSERT_EQ(got.sizes(), ref.y.sizes()) << what;
  at::Tensor excess = (got.to(at::kDouble) - ref.y).abs() - ref.bound;
  EXPECT_LE(excess.max().item<double>(), 0) << what;
}

TEST(CpuF32Linear, EachRowIsTheSameBitsWhateverTheCall) {
  at::manual_seed(1);
  // First in this binary: the pool is sized at its first parallel call, here for 4 threads.
  at::set_num_threads(4);
  // Scalar code serves CPUs without AVX2+FMA: it must give the same bits as the vector code.
  const bool both_isas = BestF32Isa() == F32Isa::kAvx2;
  for (int64_t K : {13, 64, 1536}) {
    for (int64_t N : {7, 130, 2048}) {
      at::Tensor w = at::randn({N, K}), b = at::randn({N});
      at::Tensor x = at::randn({70, K});
      at::set_num_threads(4);
      const at::Tensor all = LinearF32(x, w, b);
      // Every row alone (decode), and every run of rows of several lengths (prefill chunks,
      // decode batches), starting at different rows so a row lands in every tile position.
      for (int64_t M : {1, 2, 3, 4, 7, 12, 13, 16, 17, 32, 47, 49}) {
        for (int64_t start = 0; start + M <= 70; start += std::max<int64_t>(1, M / 2 + 1)) {
          ASSERT_TRUE(at::equal(LinearF32(x.narrow(0, start, M), w, b), all.narrow(0, start, M)))
              << "rows " << start << ".." << start + M << " of 70, N " << N << " K " << K;
        }
      }
      for (int threads : {1, 3, 2}) {  // each splits the blocks differently
        at::set_num_threads(threads);
        EXPECT_TRUE(at::equal(LinearF32(x, w, b), all)) << threads << " threads";
        EXPECT_TRUE(at::equal(LinearF32(x.narrow(0, 5, 1), w, b), all.narrow(0, 5, 1))) << threads << " threads";
      }
      at::set_num_threads(2);
      if (both_isas && N * K <= 200000) {
        EXPECT_TRUE(at::equal(LinearF32(x, w, b, F32Isa::kScalar), all)) << "scalar, N " << N << " K " << K;
        EXPECT_TRUE(at::equal(LinearF32(x.narrow(0, 0, 1), w, at::Tensor(), F32Isa::kScalar),
                              LinearF32(x.narrow(0, 0, 1), w)));
      }
    }
  }
}

TEST(CpuF32Linear, MatchesDoubleReferenceOnModelAndOddShapes) {
  at::manual_seed(0);
  struct Shape {
    int64_t N, K;
  };
  // The 1.5B's projections (qkv, o, gate/up, down), then K not a multiple of 8, N odd.
  const Shape shapes[] = {{2048, 1536}, {1536, 1536}, {8960, 1536}, {1536, 8960}, {1, 1},
                          {3, 5},       {7, 13},      {33, 37},     {130, 200},   {5, 1001}};
  for (const Shape& s : shapes) {
    const bool big = s.N * s.K > 1000000;
    at::Tensor w = at::randn({s.N, s.K}) / std::sqrt(static_cast<double>(s.K));
    at::Tensor b = at::randn({s.N});
    const std::vector<int64_t> rows = big ? std::vector<int64_t>{1, 4, 13} : std::vector<int64_t>{1, 2, 3, 4, 5, 8, 12, 13, 17, 48, 49, 64, 70};
    for (int64_t M : rows) {
      at::Tensor x = at::randn({M, s.K});
      const std::string what = "M " + std::to_string(M) + " N " + std::to_string(s.N) + " K " + std::to_string(s.K);
      ExpectWithin(LinearF32(x, w, b), LinearReference(x, w, b), what + " with bias");
      ExpectWithin(LinearF32(x, w), LinearReference(x, w, at::Tensor()), what + " without bias");
    }
  }
}

TEST(CpuF32Elementwise, MatchAtenAndDependOnlyOnTheirOwnRow) {
  at::manual_seed(2);
  at::Tensor x = at::randn({37, 1536}), w = at::randn({1536});
  const at::Tensor norm = RmsNormF32(x, w, 1e-6);
  at::Tensor xd = x.to(at::kDouble);
  at::Tensor ref = w.to(at::kDouble) * xd * at::rsqrt(xd.pow(2).mean(-1, true) + 1e-6);
  auto rel_err = [](const at::Tensor& got, const at::Tensor& want) {
    return ((got.to(at::kDouble) - want).abs() / (want.abs() + 1)).max().item<double>();
  };
  EXPECT_LT(rel_err(norm, ref), 4e-6);
  EXPECT_TRUE(at::equal(RmsNormF32(x.narrow(0, 9, 1), w, 1e-6), norm.narrow(0, 9, 1)));
  EXPECT_TRUE(at::equal(RmsNormF32(x.narrow(0, 3, 20), w, 1e-6), norm.narrow(0, 3, 20)));

  at::Tensor g = at::randn({37, 8963}) * 4, u = at::randn({37, 8963});
  const at::Tensor act = SiluMulF32(g, u);
  at::Tensor gd = g.to(at::kDouble);
  EXPECT_LT(rel_err(act, gd * at::sigmoid(gd) * u.to(at::kDouble)), 4e-6);
  EXPECT_TRUE(at::equal(SiluMulF32(g.narrow(0, 11, 1), u.narrow(0, 11, 1)), act.narrow(0, 11, 1)));

  at::Tensor inv_freq = 1.0 / at::pow(10000.0, at::arange(0, 64, at::kFloat) / 64);
  auto [cos, sin] = RopeTablesF32({0, 5, 700, 32767}, inv_freq);
  // The angle rounded to float32 first, as transformers computes it.
  at::Tensor ang = (at::tensor({0.f, 5.f, 700.f, 32767.f}).unsqueeze(1) * inv_freq).to(at::kDouble);
  EXPECT_LT((cos.squeeze(1).to(at::kDouble) - ang.cos()).abs().max().item<double>(), 1e-6);
  EXPECT_LT((sin.squeeze(1).to(at::kDouble) - ang.sin()).abs().max().item<double>(), 1e-6);
  auto [cos1, sin1] = RopeTablesF32({700}, inv_freq);
  EXPECT_TRUE(at::equal(cos1[0], cos[2]));
  EXPECT_TRUE(at::equal(sin1[0], sin[2]));
}

// A paged cache with random contents and sequences whose slots are scattered through it.
struct AttentionCase {
  int64_t heads, kvh, D;
  at::Tensor k, v;                             // [slots, kvh, D]
  std::vector<std::vector<int64_t>> slots;     // per sequence, positions 0..len-1
};

AttentionCase MakeAttentionCase(int64_t heads, int64_t kvh, int64_t D, const std::vector<int64_t>& lens) {
  AttentionCase c{heads, kvh, D, {}, {}, {}};
  const int64_t total = std::accumulate(lens.begin(), lens.end(), int64_t{0}) + 5;
  c.k = at::randn({total, kvh, D});
  c.v = at::randn({total, kvh, D});
  std::vector<int64_t> perm(static_cast<size_t>(total));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(7));
  size_t at = 0;
  for (int64_t len : lens) {
    c.slots.emplace_back(perm.begin() + static_cast<long>(at), perm.begin() + static_cast<long>(at) + len);
    at += static_cast<size_t>(len);
  }
  return c;
}

// Causal attention of query rows at positions [from, to) of sequence s, in double.
at::Tensor AttentionReference(const AttentionCase& c, size_t s, const at::Tensor& q, int64_t from, double scale) {
  at::Tensor idx = at::tensor(c.slots[s], at::kLong);
  at::Tensor k = c.k.index_select(0, idx).to(at::kDouble), v = c.v.index_select(0, idx).to(at::kDouble);
  const int64_t g = c.heads / c.kvh;
  at::Tensor out = at::empty(q.sizes(), at::kDouble);
  for (int64_t i = 0; i < q.size(0); ++i)
    for (int64_t h = 0; h < c.heads; ++h) {
      const int64_t ctx = from + i + 1;
      at::Tensor kh = k.narrow(0, 0, ctx).select(1, h / g), vh = v.narrow(0, 0, ctx).select(1, h / g);
      at::Tensor p = at::softmax(at::mv(kh, q[i][h].to(at::kDouble)) * scale, 0);
      out[i][h] = at::mv(vh.t(), p);
    }
  return out;
}

TEST(CpuF32Attention, MatchesDoubleReferenceAndEachRowStandsAlone) {
  at::manual_seed(3);
  // The 1.5B's heads, the tiny preset's, and a head size that is not a multiple of 8.
  const std::tuple<int64_t, int64_t, int64_t> shapes[] = {{12, 2, 128}, {4, 2, 8}, {3, 1, 13}};
  for (auto [heads, kvh, D] : shapes) {
    const std::vector<int64_t> lens = {1, 9, 70};
    AttentionCase c = MakeAttentionCase(heads, kvh, D, lens);
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    std::vector<at::Tensor> qs;
    for (int64_t len : lens) qs.push_back(at::randn({len, heads, D}));
    // Reference: every sequence's rows from position 0.
    std::vector<at::Tensor> ref;
    for (size_t s = 0; s < lens.size(); ++s) ref.push_back(AttentionReference(c, s, qs[s], 0, scale));

    // One step with every sequence's whole prompt.
    std::vector<AttentionSeq> seqs;
    for (size_t s = 0; s < lens.size(); ++s) seqs.push_back({0, lens[s], c.slots[s].data()});
    at::Tensor q_all = at::cat(qs, 0);
    at::Tensor all = at::empty(q_all.sizes());
    AttendF32(q_all, c.k, c.v, seqs, scale, all);
    int64_t off = 0;
    for (size_t s = 0; s < lens.size(); ++s) {
      double err = (all.narrow(0, off, lens[s]).to(at::kDouble) - ref[s]).abs().max().item<double>();
      EXPECT_LT(err, 2e-5) << "heads " << heads << " D " << D << " seq " << s;
      off += lens[s];
    }

    // The longest sequence's rows again in chunks of 1, 3 and 16 rows (decode steps and
    // prompt chunks), each chunk beside one row of another sequence: the same bits.
    const size_t s = 2;
    const int64_t base = lens[0] + lens[1];
    for (int64_t chunk : {1, 3, 16}) {
      for (int64_t from = 0; from < lens[s]; from += chunk) {
        const int64_t n = std::min(chunk, lens[s] - from);
        std::vector<AttentionSeq> step = {{4, 1, c.slots[1].data()}, {from, n, c.slots[s].data()}};
        at::Tensor q = at::cat({qs[1].narrow(0, 4, 1), qs[s].narrow(0, from, n)}, 0);
        at::Tensor out = at::empty(q.sizes());
        AttendF32(q, c.k, c.v, step, scale, out);
        ASSERT_TRUE(at::equal(out.narrow(0, 1, n), all.narrow(0, base + from, n)))
            << "chunk " << chunk << " from " << from << " heads " << heads << " D " << D;
        ASSERT_TRUE(at::equal(out.narrow(0, 0, 1), all.narrow(0, lens[0] + 4, 1)));
        if (BestF32Isa() == F32Isa::kAvx2 && chunk == 16) {
          at::Tensor scalar = at::empty(q.sizes());
          AttendF32(q, c.k, c.v, step, scale, scalar, F32Isa::kScalar);
          ASSERT_TRUE(at::equal(scalar, out)) << "scalar, from " << from;
        }
      }
    }
  }
}

// The whole float32 step (linear layers, norms, RoPE, attention, SwiGLU, lm_head) on a fixture
// model, with its floating weights and quantized to int8 at load: position p's logits are the
// same bits however the tokens before it were stepped.
class CpuF32Model : public ::testing::TestWithParam<std::string> {};

TEST_P(CpuF32Model, LogitsDoNotDependOnHowTokensAreGroupedIntoSteps) {
  const std::string c = "gqa_untied";
  if (std::string why = fixtures::Missing(c); !why.empty()) GTEST_FAIL() << why;
  LoadOptions options("cpu", "float32", 2);
  options.quantization = GetParam();
  auto loaded = Qwen2Model::Load(fixtures::Dir() + "/" + c, options);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Qwen2Model& m = **loaded;
  const fixtures::Prompt p = fixtures::Prompts(c).at(0);
  std::vector<int32_t> seq = p.prompt;
  seq.insert(seq.end(), p.greedy_f32.begin(), p.greedy_f32.end());
  const int64_t L = static_cast<int64_t>(seq.size());
  // Logits of every position, stepping `seq` in chunks of `chunk` (all logits of each chunk);
  // with `other`, another sequence's decode row shares every step.
  auto run = [&](int64_t chunk, bool other) {
    KvCache cache(m.config(), 64, 4, m.dtype(), m.device());
    SequenceStep s, o;
    for (int b = 31; b >= 0; --b) s.block_table.push_back(b);
    for (int b = 32; b < 64; ++b) o.block_table.push_back(b);
    o.num_new = 1;
    std::vector<at::Tensor> rows;
    for (int64_t pos = 0; pos < L; pos += chunk) {
      StepBatch b;
      s.num_cached = pos;
      s.num_new = std::min(chunk, L - pos);
      s.want_all_logits = true;
      if (other) {
        b.tokens.push_back(static_cast<int32_t>(100 + pos));
        b.seqs.push_back(o);
        ++o.num_cached;
      }
      b.tokens.insert(b.tokens.end(), seq.begin() + pos, seq.begin() + pos + s.num_new);
      b.seqs.push_back(s);
      auto logits = m.Forward(b, cache);
      EXPECT_TRUE(logits.ok()) << logits.status();
      if (!logits.ok()) return at::Tensor();
      rows.push_back(logits->narrow(0, other ? 1 : 0, s.num_new));
    }
    return at::cat(rows, 0);
  };
  const at::Tensor whole = run(L, false);
  ASSERT_EQ(whole.size(0), L);
  const std::pair<int64_t, bool> ways[] = {{1, false}, {1, true}, {3, false}, {5, true}, {L, true}};
  for (auto [chunk, other] : ways) {
    at::Tensor got = run(chunk, other);
    ASSERT_TRUE(got.defined());
    EXPECT_TRUE(at::equal(got, whole)) << "chunks of " << chunk << (other ? " beside another sequence" : "")
                                       << ": max diff " << (got - whole).abs().max().item<double>();
  }
}

INSTANTIATE_TEST_SUITE_P(Weights, CpuF32Model, ::testing::Values("none", "int8"));

}  // namespace
}  // namespace r1::model
