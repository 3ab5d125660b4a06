// A row's LogitsConstraint in both samplers (SampleBatch, and SampleBatchOnDevice run on CPU
// tensors: the same ATen ops run on CUDA): masked tokens never come and the allowed ones keep
// their ratios (closed form), biases shift the distribution as exp(bias), -inf bans, greedy
// takes the best allowed token, a row whose allowed logits are all -inf still gets an allowed
// token, the two samplers agree, a constrained row changes nothing for the other rows, and the
// device path leaves unconstrained rows alone.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>

#include "tests/engine/sampler_batch.h"
#include "worker/engine/device_sampler.h"
#include "worker/engine/sampler.h"
#include "worker/grammar/bitmask.h"

namespace r1::engine {
namespace {

using Sampler = std::vector<SampleResult> (*)(const at::Tensor&,
                                              const std::vector<const SamplingOptions*>&,
                                              const std::vector<SamplerState*>&);
const std::pair<const char*, Sampler> kSamplers[] = {{"cpu", &SampleBatch},
                                                     {"device", &SampleBatchOnDevice}};

LogitsConstraint Mask(int64_t vocab, std::vector<int32_t> allowed) {
  LogitsConstraint c;
  c.allowed.assign(grammar::BitmaskWords(vocab), 0u);
  for (int32_t id : allowed) grammar::SetBit(c.allowed.data(), id);
  return c;
}

// n draws of one row in one batch, each row with its own seeded state and the constraint.
std::map<int32_t, int> Draw(Sampler sample, std::vector<float> row, const SamplingOptions& o,
                            const LogitsConstraint& c, int n) {
  at::Tensor x = at::from_blob(row.data(), {1, static_cast<int64_t>(row.size())}, at::kFloat)
                     .expand({n, static_cast<int64_t>(row.size())})
                     .contiguous();
  std::vector<std::unique_ptr<SamplerState>> owned;
  std::vector<SamplerState*> states;
  for (int i = 0; i < n; ++i) {
    owned.push_back(std::make_unique<SamplerState>(500 + i));
    owned.back()->constraint = c;
    states.push_back(owned.back().get());
  }
  std::map<int32_t, int> counts;
  for (const SampleResult& r : sample(x, std::vector<const SamplingOptions*>(n, &o), states))
    ++counts[r.token];
  return counts;
}

SamplingOptions Temperature(float t, int32_t top_k = 0) {
  SamplingOptions o;
  o.temperature = t;
  o.top_k = top_k;
  return o;
}

// p ∝ 8, 4, 2, 1, 1 unconstrained.
const std::vector<float> kFive = {std::log(8.f), std::log(4.f), std::log(2.f), 0.f, 0.f};

TEST(ConstrainedSamplerTest, MaskedTokensNeverComeAndTheOthersKeepTheirRatios) {
  const int n = 12000;
  for (auto [name, sample] : kSamplers) {
    for (const SamplingOptions& o : {Temperature(1.f), Temperature(1.f, /*top_k=*/2)}) {
      // p ∝ 8, 4, 2, 1.5, 1; allowed {1, 3, 4}: p ∝ 4, 1.5, 1; top-k 2 after the mask: 4, 1.5.
      const std::vector<float> row = {std::log(8.f), std::log(4.f), std::log(2.f),
                                      std::log(1.5f), 0.f};
      std::map<int32_t, int> got = Draw(sample, row, o, Mask(5, {1, 3, 4}), n);
      std::map<int32_t, double> want =
          o.top_k ? std::map<int32_t, double>{{1, 4 / 5.5}, {3, 1.5 / 5.5}}
                  : std::map<int32_t, double>{{1, 4 / 6.5}, {3, 1.5 / 6.5}, {4, 1 / 6.5}};
      for (auto [tok, count] : got) EXPECT_TRUE(want.count(tok)) << name << ": token " << tok;
      for (auto [tok, p] : want) EXPECT_NEAR(got[tok] / double(n), p, 0.02) << name << " " << tok;
    }
  }
}

TEST(ConstrainedSamplerTest, BiasesShiftTheDistributionAndMinusInfBans) {
  const int n = 12000;
  for (auto [name, sample] : kSamplers) {
    LogitsConstraint c;
    c.bias = {{1, std::log(3.f)}, {0, -std::numeric_limits<float>::infinity()}};
    // Logits 0, 0, 0; token 1 biased by log 3, token 0 banned: p = 3/4, 1/4.
    std::map<int32_t, int> got = Draw(sample, {0.f, 0.f, 0.f}, Temperature(1.f), c, n);
    EXPECT_EQ(got.count(0), 0u) << name;
    EXPECT_NEAR(got[1] / double(n), 0.75, 0.02) << name;
    EXPECT_NEAR(got[2] / double(n), 0.25, 0.02) << name;
  }
}

TEST(ConstrainedSamplerTest, GreedyTakesTheBestAllowedToken) {
  for (auto [name, sample] : kSamplers) {
    EXPECT_EQ(Draw(sample, kFive, SamplingOptions(), Mask(5, {2, 4}), 3),
              (std::map<int32_t, int>{{2, 3}}))
        << name;
    LogitsConstraint c;
    c.bias = {{4, 100.f}};
    EXPECT_EQ(Draw(sample, kFive, SamplingOptions(), c, 2), (std::map<int32_t, int>{{4, 2}})) << name;
  }
}

TEST(ConstrainedSamplerTest, AllowedLogitsAllMinusInfStillGiveAnAllowedToken) {
  const float inf = std::numeric_limits<float>::infinity();
  for (auto [name, sample] : kSamplers) {
    for (const SamplingOptions& o : {SamplingOptions(), Temperature(1.f)}) {
      EXPECT_EQ(Draw(sample, {0.f, -inf, -inf, 1.f}, o, Mask(4, {1, 2}), 4),
                (std::map<int32_t, int>{{1, 4}}))
          << name;
    }
  }
}

// Random logits [n, V].
at::Tensor RandomLogits(int64_t n, int64_t V, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn({n, V}, gen, at::TensorOptions().dtype(at::kFloat)) * 2;
}

// Row r of 8 (MixedOptions) gets a mask of about a third of the vocabulary (and a bias on two
// allowed tokens) when `constrain` holds r.
void Constrain(SamplerBatch& b, int64_t V, const std::vector<int>& rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int r : rows) {
    std::vector<int32_t> ids;
    for (int32_t id = 0; id < V; ++id)
      if (rng() % 3 == 0) ids.push_back(id);
    LogitsConstraint c = Mask(V, ids);
    c.bias = {{ids[0], 5.f}, {ids[1], -2.f}};
    b.states[static_cast<size_t>(r)].constraint = c;
  }
}

TEST(ConstrainedSamplerTest, BothSamplersAgreeAndOnlyConstrainedRowsChange) {
  const int64_t V = 3000;
  const std::vector<int> constrained = {0, 2, 4, 6, 7};
  SamplerBatch cpu(MixedOptions(), 7), dev(MixedOptions(), 7), free(MixedOptions(), 7);
  int same = 0, total = 0;
  for (int step = 0; step < 30; ++step) {
    Constrain(cpu, V, constrained, 100 + step);
    Constrain(dev, V, constrained, 100 + step);
    at::Tensor x = RandomLogits(8, V, 200 + step);
    auto a = SampleBatch(x, cpu.opts, cpu.ptrs);
    auto b = SampleBatchOnDevice(x, dev.opts, dev.ptrs);
    auto c = SampleBatch(x, free.opts, free.ptrs);
    for (int r = 0; r < 8; ++r) {
      const bool is_constrained = std::count(constrained.begin(), constrained.end(), r) > 0;
      const LogitsConstraint& lc = cpu.states[static_cast<size_t>(r)].constraint;
      EXPECT_TRUE(lc.Allows(a[r].token) && lc.Allows(b[r].token)) << "row " << r;
      // An unconstrained row's token is what it would be with no constraint in the batch.
      if (!is_constrained) EXPECT_EQ(a[r].token, c[r].token) << "row " << r;
      same += a[r].token == b[r].token;
      ++total;
      // Same histories, so that the penalties stay comparable.
      dev.states[static_cast<size_t>(r)].output = cpu.states[static_cast<size_t>(r)].output;
      free.states[static_cast<size_t>(r)].output = cpu.states[static_cast<size_t>(r)].output;
    }
  }
  // As without constraints: equal but where float32 rounding moves a boundary (rare).
  EXPECT_GE(same, total - 3) << same << " of " << total;
}

TEST(ConstrainedSamplerTest, LogprobsStayTheModels) {
  at::Tensor x = RandomLogits(1, 50, 3);
  SamplingOptions o;
  o.logprobs = true;
  for (auto [name, sample] : kSamplers) {
    SamplerState st(1);
    st.constraint = Mask(50, {7});
    SampleResult r = sample(x, {&o}, {&st})[0];
    EXPECT_EQ(r.token, 7) << name;
    EXPECT_NEAR(r.logprob, at::log_softmax(x, 1)[0][7].item<float>(), 1e-5) << name;
  }
}

// Unconstrained rows pay nothing on the device path: a batch without constraints gets its own
// logits back (no copy, no upload), and in a mixed batch only the masked rows change, to -inf
// exactly outside their masks; a batch masked in every row is filled in place.
TEST(ConstrainedSamplerTest, ConstrainedLogitsTouchOnlyTheMaskedRows) {
  const int64_t V = 70;  // three bitmask words, the last one partly used
  const float inf = std::numeric_limits<float>::infinity();
  at::Tensor x = RandomLogits(3, V, 5);
  std::vector<SamplerState> owned(3, SamplerState(1));
  std::vector<const SamplerState*> states = {&owned[0], &owned[1], &owned[2]};
  EXPECT_TRUE(ConstrainedLogits(x, states, /*in_place=*/false).is_same(x));
  EXPECT_TRUE(ConstrainedLogits(x, states, /*in_place=*/true).is_same(x));

  const std::vector<int32_t> allowed = {0, 31, 32, 69};
  owned[1].constraint = Mask(V, allowed);
  at::Tensor y = ConstrainedLogits(x, states, /*in_place=*/false);
  ASSERT_FALSE(y.is_same(x));
  EXPECT_TRUE(at::equal(y[0], x[0]));
  EXPECT_TRUE(at::equal(y[2], x[2]));
  for (int32_t id = 0; id < V; ++id) {
    const bool ok = std::count(allowed.begin(), allowed.end(), id) > 0;
    EXPECT_EQ(y[1][id].item<float>(), ok ? x[1][id].item<float>() : -inf) << id;
  }

  owned[0].constraint = Mask(V, {5});
  owned[2].constraint = Mask(V, {68, 69});
  at::Tensor z = x.clone();
  EXPECT_TRUE(ConstrainedLogits(z, states, /*in_place=*/true).is_same(z));
  for (int64_t r = 0; r < 3; ++r) {
    for (int32_t id = 0; id < V; ++id) {
      const float want = owned[static_cast<size_t>(r)].constraint.Allows(id) ? x[r][id].item<float>() : -inf;
      EXPECT_EQ(z[r][id].item<float>(), want) << r << " " << id;
    }
  }
}

}  // namespace
}  // namespace r1::engine
