// The device sampler (run here on CPU tensors: the same ATen ops run on CUDA) against
// distributions known in closed form and against the CPU sampler: greedy ids, log-probabilities,
// penalised logits, per-sequence seeded streams and batch invariance.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>

#include "tests/engine/sampler_batch.h"
#include "worker/engine/device_sampler.h"
#include "worker/engine/sampler.h"

namespace r1::engine {
namespace {

at::Tensor Row(std::vector<float> v) {
  return at::from_blob(v.data(), {1, static_cast<int64_t>(v.size())}, at::kFloat).clone();
}

// n independent draws in one batch: n copies of `row`, each with its own seeded state.
std::map<int32_t, int> Draw(const at::Tensor& row, const SamplingOptions& o, int n) {
  std::vector<std::unique_ptr<SamplerState>> owned;
  std::vector<SamplerState*> states;
  for (int i = 0; i < n; ++i) {
    owned.push_back(std::make_unique<SamplerState>(1000 + i));
    states.push_back(owned.back().get());
  }
  std::vector<const SamplingOptions*> opts(n, &o);
  std::map<int32_t, int> counts;
  for (const SampleResult& r : SampleBatchOnDevice(row.expand({n, row.size(1)}), opts, states))
    ++counts[r.token];
  return counts;
}

SamplingOptions Opts(float temperature, int32_t top_k = 0, float top_p = 1.f, float min_p = 0.f) {
  SamplingOptions o;
  o.temperature = temperature;
  o.top_k = top_k;
  o.top_p = top_p;
  o.min_p = min_p;
  return o;
}

// Each case: logits, options, and the exact distribution they define (tokens not listed must
// never come).
struct Case {
  const char* what;
  std::vector<float> logits;
  SamplingOptions options;
  std::map<int32_t, double> p;
};

TEST(DeviceSamplerTest, FiltersGiveTheirClosedFormDistributions) {
  const double r3 = std::sqrt(3.0);
  // p ∝ 8, 4, 2, 1, 1 (sum 16): 0.5, 0.25, 0.125, 0.0625, 0.0625.
  const std::vector<float> five = {std::log(8.f), std::log(4.f), std::log(2.f), 0.f, 0.f};
  const std::vector<Case> cases = {
      {"temperature 1", {0.f, std::log(3.f)}, Opts(1.f), {{0, 0.25}, {1, 0.75}}},
      {"temperature 2", {0.f, std::log(3.f)}, Opts(2.f), {{0, 1 / (1 + r3)}, {1, r3 / (1 + r3)}}},
      {"top-k 2", five, Opts(1.f, 2), {{0, 2.0 / 3}, {1, 1.0 / 3}}},
      {"top-p 0.8: the smallest prefix reaching it", five, Opts(1.f, 0, 0.8f),
       {{0, 4.0 / 7}, {1, 2.0 / 7}, {2, 1.0 / 7}}},
      {"top-k 4 then top-p 0.5 of the 4 kept: 8/15 reaches it", five, Opts(1.f, 4, 0.5f),
       {{0, 1.0}}},
      {"min-p 0.3: p >= 0.15", five, Opts(1.f, 0, 1.f, 0.3f), {{0, 2.0 / 3}, {1, 1.0 / 3}}},
      {"top-k 1 is greedy at any temperature", five, Opts(5.f, 1), {{0, 1.0}}},
      {"temperature 0.5 with every filter", five, Opts(0.5f, 3, 0.95f, 0.2f),
       {{0, 0.8}, {1, 0.2}}},  // p ∝ 64, 16, 4 (min-p keeps >= 0.2 * 64/84: 64 and 16)
  };
  const int n = 12000;
  for (const Case& c : cases) {
    std::map<int32_t, int> got = Draw(Row(c.logits), c.options, n);
    for (auto [tok, count] : got)
      EXPECT_TRUE(c.p.count(tok)) << c.what << ": token " << tok << " came " << count << " times";
    for (auto [tok, p] : c.p) EXPECT_NEAR(got[tok] / double(n), p, 0.02) << c.what << ", token " << tok;
  }
}

TEST(DeviceSamplerTest, NonFiniteLogitsAreNeverSampled) {
  const float inf = std::numeric_limits<float>::infinity();
  at::Tensor l = Row({-inf, 0.f, std::nanf(""), 0.f});
  SamplingOptions o;
  o.temperature = 1.f;
  auto c = Draw(l, o, 4000);
  EXPECT_EQ(c.count(0) + c.count(2), 0u);
  EXPECT_NEAR(c[1] / 4000.0, 0.5, 0.04);
  o.top_p = 0.9f;
  c = Draw(l, o, 1000);
  EXPECT_EQ(c.count(0) + c.count(2), 0u);
}

// Random logits with a few exact ties at the top, [n, V].
at::Tensor RandomLogits(int64_t n, int64_t V, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor x = at::randn({n, V}, gen, at::TensorOptions().dtype(at::kFloat)) * 3;
  for (int64_t r = 0; r < n; r += 3) {  // rows 0, 3, ...: the max repeated at a later id
    int64_t m = x[r].argmax().item<int64_t>();
    x[r][(m + 17) % V] = x[r][m];
  }
  return x;
}

TEST(DeviceSamplerTest, GreedyIdsEqualTheCpuSamplers) {
  at::Tensor x = RandomLogits(12, 3000, 1);
  SamplingOptions o;
  std::vector<const SamplingOptions*> opts(12, &o);
  std::vector<SamplerState> a(12, SamplerState(0)), b(12, SamplerState(0));
  std::vector<SamplerState*> pa, pb;
  for (int i = 0; i < 12; ++i) {
    pa.push_back(&a[i]);
    pb.push_back(&b[i]);
  }
  auto dev = SampleBatchOnDevice(x, opts, pa);
  auto cpu = SampleBatch(x, opts, pb);
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(dev[i].token, cpu[i].token) << "row " << i;
    EXPECT_EQ(a[i].output, b[i].output);  // appended for the penalties
  }
}

TEST(DeviceSamplerTest, LogprobsAreTheModelsLogSoftmax) {
  at::Tensor x = RandomLogits(5, 500, 2);
  at::Tensor ref = at::log_softmax(x, 1);
  std::vector<SamplingOptions> o(5);
  o[0].logprobs = true;  // greedy, no alternatives
  o[1].logprobs = true;  // greedy, 3 alternatives
  o[1].top_logprobs = 3;
  // row 2: no log-probabilities asked for
  o[3].logprobs = true;  // sampled and penalised: log-probabilities stay the model's
  o[3].top_logprobs = 5;
  o[3].temperature = 0.7f;
  o[3].frequency_penalty = 1.f;
  o[4].logprobs = true;
  o[4].top_logprobs = 1;
  std::vector<const SamplingOptions*> opts;
  std::vector<SamplerState> st(5, SamplerState(3));
  std::vector<SamplerState*> ps;
  for (int i = 0; i < 5; ++i) {
    opts.push_back(&o[i]);
    ps.push_back(&st[i]);
  }
  st[3].output = {1, 2, 3};
  auto res = SampleBatchOnDevice(x, opts, ps);
  for (int i = 0; i < 5; ++i) {
    if (!o[i].logprobs) {
      EXPECT_TRUE(res[i].top.empty());
      continue;
    }
    EXPECT_NEAR(res[i].logprob, ref[i][res[i].token].item<float>(), 1e-5) << "row " << i;
    auto [vals, ids] = ref[i].topk(std::max(o[i].top_logprobs, 1));
    ASSERT_EQ(res[i].top.size(), static_cast<size_t>(o[i].top_logprobs)) << "row " << i;
    for (int j = 0; j < o[i].top_logprobs; ++j) {
      EXPECT_EQ(res[i].top[j].first, ids[j].item<int64_t>());
      EXPECT_NEAR(res[i].top[j].second, vals[j].item<float>(), 1e-5);
    }
  }
  EXPECT_EQ(res[0].token, ref[0].argmax().item<int64_t>());
}

TEST(DeviceSamplerTest, PenaltiesGiveTheCpuSamplersAdjustedLogits) {
  const int64_t V = 64;
  at::Tensor x = RandomLogits(4, V, 4);
  std::vector<SamplingOptions> o(4);
  o[0].repetition_penalty = 1.3f;
  o[1].presence_penalty = 0.5f;
  o[1].frequency_penalty = -0.25f;
  o[2].repetition_penalty = 0.8f;
  o[2].presence_penalty = -0.4f;
  o[2].frequency_penalty = 0.7f;
  // row 3: no penalty
  std::vector<SamplerState> st(4, SamplerState(0));
  for (int i = 0; i < 4; ++i) {
    st[i].prompt = {1, 5, 5, 9, static_cast<int32_t>(V + 3)};  // out of range: ignored
    st[i].output = {5, 7, 7, 7, 60, 1, -1};
  }
  std::vector<const SamplingOptions*> opts;
  std::vector<const SamplerState*> ps;
  for (int i = 0; i < 4; ++i) {
    opts.push_back(&o[i]);
    ps.push_back(&st[i]);
  }
  at::Tensor dev = PenalisedLogits(x, opts, ps);
  at::Tensor cpu = x.clone();
  for (int i = 0; i < 4; ++i) ApplyPenalties(cpu[i].data_ptr<float>(), V, o[i], st[i]);
  EXPECT_TRUE(at::equal(dev, cpu));
  EXPECT_FALSE(at::equal(dev, x));
  // Spot checks of the definitions on row 2: id 7 seen (output, 3 times), logit l:
  // repetition (l > 0 ? l / 0.8 : l * 0.8), then - (0.7 * 3 - 0.4).
  float l = x[2][7].item<float>();
  float rep = l > 0 ? l / 0.8f : l * 0.8f;
  EXPECT_FLOAT_EQ(dev[2][7].item<float>(), rep - (0.7f * 3 - 0.4f));
  // id 9: prompt only: repetition, no presence or frequency.
  l = x[2][9].item<float>();
  EXPECT_FLOAT_EQ(dev[2][9].item<float>(), l > 0 ? l / 0.8f : l * 0.8f);
  // No penalty: the input tensor itself.
  std::vector<const SamplingOptions*> plain(4, &o[3]);
  EXPECT_TRUE(PenalisedLogits(x, plain, ps).is_same(x));
}

TEST(DeviceSamplerTest, ASeedRepeatsAndARowIgnoresTheRestOfTheBatch) {
  const int64_t V = 4000;
  at::Tensor x = RandomLogits(8, V, 5);
  std::vector<SamplingOptions> o = MixedOptions();
  // Each row decoded alone (its own state, seed 100 + i) and all together in one batch, in
  // reverse order, beside rows of other seeds: the same tokens, step after step.
  std::vector<SamplerState> alone(8, SamplerState(0)), together(16, SamplerState(0));
  for (int i = 0; i < 8; ++i) {
    alone[i] = SamplerState(100 + i);
    together[i] = SamplerState(100 + 7 - i);
    together[8 + i] = SamplerState(900 + i);
  }
  at::Tensor rev = at::cat({x.flip({0}), RandomLogits(8, V, 6)});
  for (int step = 0; step < 6; ++step) {
    std::vector<const SamplingOptions*> opts;
    std::vector<SamplerState*> ps;
    for (int i = 0; i < 8; ++i) {
      auto r = SampleBatchOnDevice(x.narrow(0, i, 1), {&o[i]}, {&alone[i]});
      (void)r;
    }
    for (int i = 0; i < 16; ++i) {
      opts.push_back(&o[i < 8 ? 7 - i : i - 8]);
      ps.push_back(&together[i]);
    }
    SampleBatchOnDevice(rev, opts, ps);
    for (int i = 0; i < 8; ++i)
      ASSERT_EQ(alone[i].output, together[7 - i].output) << "row " << i << " step " << step;
  }
  // Another seed gives other draws.
  SamplerState other(555), again(102);
  std::vector<int32_t> a, b;
  for (int i = 0; i < 30; ++i) {
    a.push_back(SampleBatchOnDevice(x.narrow(0, 2, 1), {&o[2]}, {&other})[0].token);
    b.push_back(SampleBatchOnDevice(x.narrow(0, 2, 1), {&o[2]}, {&again})[0].token);
  }
  EXPECT_NE(a, b);
  std::vector<int32_t> first(alone[2].output.begin(), alone[2].output.begin() + 6);
  EXPECT_EQ(std::vector<int32_t>(b.begin(), b.begin() + 6), first);
}

// Top-p rows without top-k take the same integer sums in both samplers (device_sampler.h), so
// on wide rows (where float32 sums would land draws one token over) every draw is equal.
TEST(DeviceSamplerTest, TopPRowsTakeTheCpuSamplersTokensExactly) {
  const int64_t V = 151936;
  std::vector<SamplingOptions> o(4);
  for (SamplingOptions& x : o) x.temperature = 0.6f, x.top_p = 0.95f;
  o[1].min_p = 0.02f;
  o[2].top_p = 0.5f;
  o[3].temperature = 1.f;
  SamplerBatch a(o, 50), b(o, 50);
  int same = 0;
  for (int step = 0; step < 10; ++step) {
    at::Tensor x = RandomLogits(4, V, 300 + step) * 1.5;
    auto dev = SampleBatchOnDevice(x, a.opts, a.ptrs);
    auto cpu = SampleBatch(x, b.opts, b.ptrs);
    for (int i = 0; i < 4; ++i) same += dev[i].token == cpu[i].token;
  }
  EXPECT_EQ(same, 40);
}

TEST(DeviceSamplerTest, SameDrawsAsTheCpuSamplerForTheSameSeed) {
  // Both samplers take one draw per sampled row and invert the CDF in the same order, so they
  // agree except where float32 rounding moves a boundary past the draw (rare).
  const int64_t V = 2000;
  SamplerBatch a(MixedOptions(), 40), b(MixedOptions(), 40);
  int same = 0, total = 0;
  for (int step = 0; step < 40; ++step) {
    at::Tensor x = RandomLogits(8, V, 100 + step) * 0.5;
    auto dev = SampleBatchOnDevice(x, a.opts, a.ptrs);
    auto cpu = SampleBatch(x, b.opts, b.ptrs);
    for (int i = 0; i < 8; ++i) {
      same += dev[i].token == cpu[i].token;
      ++total;
      // Keep the histories equal so the penalties stay comparable.
      a.states[i].output = b.states[i].output;
    }
  }
  EXPECT_GE(same, total - 3) << same << " of " << total;
}

}  // namespace
}  // namespace r1::engine
