// Masks against the brute-force reference (every token's bytes tried on a copy of the
// matcher), on states sampled along random walks of every case, over the real Qwen vocabulary.
#include <algorithm>
#include <random>

#include <gtest/gtest.h>

#include "tests/grammar/grammar_test_util.h"
#include "worker/grammar/bitmask.h"
#include "worker/grammar/random_walk.h"
#include "worker/grammar/test_cases.h"

namespace r1::grammar::testing {
namespace {

// The first differing token, for a readable failure.
std::string FirstDifference(const std::vector<uint32_t>& got, const std::vector<uint32_t>& want,
                            const TokenVocabulary& vocab) {
  for (size_t w = 0; w < got.size(); ++w) {
    if (got[w] == want[w]) continue;
    const int32_t id = static_cast<int32_t>(w * 32 + std::countr_zero(got[w] ^ want[w]));
    return "token " + std::to_string(id) + " \"" + std::string(vocab.TokenBytes(id)) + "\": mask " +
           (TestBit(got.data(), id) ? "allows" : "refuses") + " it, the reference " +
           (TestBit(want.data(), id) ? "allows" : "refuses") + " it";
  }
  return "";
}

class GrammarMask : public ::testing::TestWithParam<std::string> {};

TEST_P(GrammarMask, AgreesWithBruteForceOnSampledStates) {
  GrammarCompiler compiler(QwenVocab());
  auto g = CompileTestCase(compiler, Case(GetParam()));
  ASSERT_TRUE(g.ok()) << g.status();
  std::mt19937_64 rng(1234);
  int checked = 0;
  // Walks that turn for the end after 4, 12 and 30 random tokens pass through most of the
  // grammar's structure. Each is replayed, and the reference (all 151,936 tokens tried) is
  // checked on its first and last state and on two random ones.
  for (int max_tokens : {4, 12, 30}) {
    GrammarMatcher walker(*g, {kEos});
    WalkOptions opt;
    opt.max_tokens = max_tokens;
    opt.eos_probability = 0;
    const WalkResult walk = RandomWalk(walker, kEos, rng, opt);
    ASSERT_TRUE(walk.complete) << GetParam() << ": the walk stopped at \"" << walk.text << "\"";
    const size_t n = walk.ids.size();
    std::vector<size_t> at = {0, n, rng() % (n + 1), rng() % (n + 1)};
    GrammarMatcher m(*g, {kEos});
    std::vector<uint32_t> bits(m.bitmask_words());
    for (size_t step = 0; step <= n; ++step) {
      if (std::find(at.begin(), at.end(), step) != at.end()) {
        m.FillNextTokenBitmask(bits.data());
        const std::vector<uint32_t> want = BruteForceMask(m, kEos);
        ASSERT_EQ(bits, want) << GetParam() << " after " << step << " tokens of \"" << walk.text
                              << "\": " << FirstDifference(bits, want, m.grammar().vocabulary());
        ++checked;
      }
      if (step < n) {
        ASSERT_TRUE(m.AcceptToken(walk.ids[step]));
      }
    }
    EXPECT_TRUE(m.IsComplete());
  }
  EXPECT_GE(checked, 6);
}

std::vector<std::string> CaseNames() {
  std::vector<std::string> names;
  for (const auto& c : Cases()) names.emplace_back(c.at("name").as_string());
  return names;
}

INSTANTIATE_TEST_SUITE_P(Cases, GrammarMask, ::testing::ValuesIn(CaseNames()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace r1::grammar::testing
