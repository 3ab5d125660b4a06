// The sampler against distributions known in closed form.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "worker/engine/sampler.h"

namespace r1::engine {
namespace {

at::Tensor Row(std::vector<float> v) {
  return at::from_blob(v.data(), {1, static_cast<int64_t>(v.size())}, at::kFloat).clone();
}

// Draws n tokens from one state (clearing its output history each time, so no penalty
// builds up) and returns how often each token came.
std::map<int32_t, int> Draw(const at::Tensor& logits, const SamplingOptions& o, int n, uint64_t seed = 1) {
  SamplerState st(seed);
  std::map<int32_t, int> counts;
  for (int i = 0; i < n; ++i) {
    ++counts[SampleBatch(logits, {&o}, {&st})[0].token];
    st.output.clear();
  }
  return counts;
}

TEST(SamplerTest, GreedyIsTheFirstMaximum) {
  SamplingOptions o;
  SamplerState st(0);
  EXPECT_EQ(SampleBatch(Row({0.1f, 3.f, -1.f, 3.f}), {&o}, {&st})[0].token, 1);
  EXPECT_THAT(st.output, ::testing::ElementsAre(1));  // appended for the penalties
}

TEST(SamplerTest, TemperatureSamplesTheSoftmax) {
  // logits 0 and ln 3 at temperature 1: p = 1/4, 3/4. At temperature 2: 1/(1+√3), √3/(1+√3).
  at::Tensor l = Row({0.f, std::log(3.f)});
  SamplingOptions o;
  o.temperature = 1.f;
  auto c = Draw(l, o, 20000);
  EXPECT_NEAR(c[1] / 20000.0, 0.75, 0.015);
  o.temperature = 2.f;
  c = Draw(l, o, 20000);
  EXPECT_NEAR(c[1] / 20000.0, std::sqrt(3.0) / (1 + std::sqrt(3.0)), 0.015);
}

TEST(SamplerTest, TopKTopPAndMinPKeepTheRightTokens) {
  // p ∝ 8, 4, 2, 1, 1 (sum 16): 0.5, 0.25, 0.125, 0.0625, 0.0625.
  at::Tensor l = Row({std::log(8.f), std::log(4.f), std::log(2.f), 0.f, 0.f});
  SamplingOptions o;
  o.temperature = 1.f;
  o.top_k = 2;  // tokens 0 and 1, renormalised: 2/3, 1/3
  auto c = Draw(l, o, 12000);
  EXPECT_EQ(c.size(), 2u);
  EXPECT_NEAR(c[0] / 12000.0, 2.0 / 3, 0.02);
  o.top_k = 0;
  o.top_p = 0.8f;  // the smallest prefix reaching 0.8: 0.5 + 0.25 + 0.125
  c = Draw(l, o, 12000);
  EXPECT_EQ(c.size(), 3u);
  EXPECT_EQ(c.count(3) + c.count(4), 0u);
  EXPECT_NEAR(c[2] / 12000.0, 0.125 / 0.875, 0.02);
  o.top_p = 1.f;
  o.min_p = 0.3f;  // keep p >= 0.3 * 0.5 = 0.15: tokens 0 and 1
  c = Draw(l, o, 6000);
  EXPECT_EQ(c.size(), 2u);
  o.min_p = 0.f;
  o.top_k = 1;  // top-k 1 is greedy whatever the temperature
  c = Draw(l, o, 200);
  EXPECT_EQ(c[0], 200);
}

// Top-p without top-k, as sampler.h defines it, written the slow way: the row sorted by scaled
// logit (stable: ties by id), the weights exp(s - max) in float32 in units of 2^-40, a running
// int64 sum, and binary searches for the cut and the draw.
int32_t SortedTopPReference(const float* row, int64_t V, const SamplingOptions& o, float u) {
  const float inv_t = 1.f / o.temperature;
  std::vector<std::pair<float, int32_t>> s;
  for (int64_t i = 0; i < V; ++i)
    if (std::isfinite(row[i])) s.emplace_back(row[i] * inv_t, static_cast<int32_t>(i));
  if (s.empty()) return 0;
  std::stable_sort(s.begin(), s.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<uint64_t> cum;
  uint64_t run = 0;
  for (const auto& [v, id] : s) {
    const float p = std::exp(v - s[0].first);
    run += p < o.min_p ? 0 : static_cast<uint64_t>(p * 0x1p40f);
    cum.push_back(run);
  }
  const uint64_t total = run;
  if (total == 0) return s[0].second;
  auto first_reaching = [&](uint64_t m) { return std::lower_bound(cum.begin(), cum.end(), m) - cum.begin(); };
  uint64_t kept = total;
  if (o.top_p < 1.f) {
    const double want = std::ceil(static_cast<double>(o.top_p) * static_cast<double>(total));
    kept = cum[static_cast<size_t>(first_reaching(std::clamp<uint64_t>(static_cast<uint64_t>(want), 1, total)))];
  }
  const uint64_t m = std::min<uint64_t>(
      kept, static_cast<uint64_t>(std::floor(static_cast<double>(u) * static_cast<double>(kept))) + 1);
  return s[static_cast<size_t>(first_reaching(m))].second;
}

TEST(SamplerTest, TopPTokensEqualTheSortedIntegerReference) {
  const int64_t V = 151936;
  std::mt19937 gen(3);
  std::normal_distribution<float> normal;
  std::vector<SamplingOptions> opts(6);
  for (SamplingOptions& o : opts) o.temperature = 0.6f, o.top_p = 0.95f;
  opts[1].top_p = 0.5f;
  opts[2].min_p = 0.05f;
  opts[3].temperature = 1.2f, opts[3].top_p = 0.99f;
  opts[4].top_p = 0.2f;
  int checked = 0;
  for (const float scale : {0.5f, 2.f, 8.f}) {
    for (const bool bf16 : {false, true}) {  // bf16-rounded logits: cuts inside runs of ties
      std::vector<float> row(static_cast<size_t>(V));
      for (float& x : row) x = normal(gen) * scale;
      for (int64_t i = 0; i < V; i += 7) row[static_cast<size_t>(i)] = -std::numeric_limits<float>::infinity();
      at::Tensor t = Row(row);
      if (bf16) t = t.to(at::kBFloat16).to(at::kFloat);
      const float* data = t.data_ptr<float>();
      for (size_t k = 0; k < opts.size(); ++k) {
        SamplerState st(100 + k);
        for (int draw = 0; draw < 3; ++draw) {
          std::mt19937_64 copy = st.rng;  // the draw SampleBatch will take
          const float u = std::min(static_cast<float>(UniformDraw(copy)), 0x1.fffffep-1f);
          const int32_t got = SampleBatch(t, {&opts[k]}, {&st})[0].token;
          EXPECT_EQ(got, SortedTopPReference(data, V, opts[k], u))
              << "scale " << scale << " bf16 " << bf16 << " options " << k << " draw " << draw;
          st.output.clear();
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 108);
  // Every logit equal: the tokens are counted off in id order; no finite logit: token 0.
  std::vector<float> flat(1000, 0.25f);
  SamplerState st(9);
  std::mt19937_64 copy = st.rng;
  const float u = std::min(static_cast<float>(UniformDraw(copy)), 0x1.fffffep-1f);
  EXPECT_EQ(SampleBatch(Row(flat), {&opts[0]}, {&st})[0].token,
            SortedTopPReference(flat.data(), 1000, opts[0], u));
  std::vector<float> none(10, -std::numeric_limits<float>::infinity());
  EXPECT_EQ(SampleBatch(Row(none), {&opts[0]}, {&st})[0].token, 0);
}

TEST(SamplerTest, PenaltiesFollowTheirDefinitions) {
  SamplingOptions o;
  SamplerState st(0);
  // Repetition (HF): a seen positive logit is divided, a seen negative one multiplied.
  o.repetition_penalty = 2.f;
  st.prompt = {0};
  EXPECT_EQ(SampleBatch(Row({3.f, 2.f}), {&o}, {&st})[0].token, 1);  // 3/2 < 2
  st = SamplerState(0);
  st.prompt = {1};
  EXPECT_EQ(SampleBatch(Row({-1.5f, -1.f}), {&o}, {&st})[0].token, 0);  // -1*2 < -1.5
  // Presence and frequency (OpenAI): subtract once, and once per occurrence, for output tokens.
  o = SamplingOptions();
  o.presence_penalty = 0.5f;
  st = SamplerState(0);
  st.output = {0};
  EXPECT_EQ(SampleBatch(Row({2.f, 1.6f}), {&o}, {&st})[0].token, 1);  // 2 - 0.5 < 1.6
  o = SamplingOptions();
  o.frequency_penalty = 0.3f;
  st = SamplerState(0);
  st.output = {0, 0};
  EXPECT_EQ(SampleBatch(Row({2.f, 1.5f}), {&o}, {&st})[0].token, 1);  // 2 - 0.6 < 1.5
  st.output = {0};
  EXPECT_EQ(SampleBatch(Row({2.f, 1.5f}), {&o}, {&st})[0].token, 0);  // 2 - 0.3 > 1.5
}

TEST(SamplerTest, LogprobsAreTheModelsLogSoftmax) {
  at::Tensor l = Row({1.f, 2.f, 0.5f, -1.f});
  at::Tensor ref = at::log_softmax(l, 1)[0];
  SamplingOptions o;
  o.logprobs = true;
  o.top_logprobs = 3;
  SamplerState st(0);
  SampleResult r = SampleBatch(l, {&o}, {&st})[0];
  EXPECT_EQ(r.token, 1);
  EXPECT_NEAR(r.logprob, ref[1].item<float>(), 1e-6);
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].first, 1);
  EXPECT_EQ(r.top[1].first, 0);
  EXPECT_EQ(r.top[2].first, 2);
  EXPECT_NEAR(r.top[2].second, ref[2].item<float>(), 1e-6);
}

TEST(SamplerTest, EachSequenceHasItsOwnRepeatableStream) {
  // The same seed gives the same draws alone or in a batch beside another sequence.
  at::Tensor l = Row({0.f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f});
  SamplingOptions o;
  o.temperature = 1.f;
  SamplerState alone(42), a(42), b(7);
  std::vector<int32_t> x, y;
  at::Tensor two = at::cat({l, l});
  for (int i = 0; i < 50; ++i) {
    x.push_back(SampleBatch(l, {&o}, {&alone})[0].token);
    y.push_back(SampleBatch(two, {&o, &o}, {&a, &b})[0].token);
  }
  EXPECT_EQ(x, y);
  SamplerState other(43);
  std::vector<int32_t> z;
  for (int i = 0; i < 50; ++i) z.push_back(SampleBatch(l, {&o}, {&other})[0].token);
  EXPECT_NE(x, z);
}

}  // namespace
}  // namespace r1::engine
