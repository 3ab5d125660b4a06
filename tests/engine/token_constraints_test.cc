// TokenConstraints over a small vocabulary (the 256 single bytes, end-of-sequence, <think> and
// </think>): the thought stays free until </think>, the thinking budget forces its message and
// </think> one token at a time, the grammar's mask starts after the thought, min_tokens bans
// the end ids unless the grammar allows nothing else, stop ids come only once the answer is
// complete, logit_bias passes through, and a request with none of these stays inactive.
#include "worker/engine/token_constraints.h"

#include <gtest/gtest.h>

#include <cmath>
#include <optional>

#include "worker/grammar/compiler.h"

namespace r1::engine {
namespace {

constexpr int32_t kEos = 256, kThink = 257, kThinkEnd = 258, kVocab = 260;

std::shared_ptr<grammar::GrammarCompiler> Compiler() {
  std::vector<std::optional<std::string>> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(std::string(1, static_cast<char>(b)));
  tokens.resize(kVocab);  // end-of-sequence, <think>, </think>: never grammar tokens
  static auto compiler = std::make_shared<grammar::GrammarCompiler>(
      *grammar::TokenVocabulary::Create(std::move(tokens), kVocab));
  return compiler;
}

ReasoningOptions Reasoning(int32_t budget = -1, std::vector<int32_t> message = {}) {
  ReasoningOptions r;
  r.think_start_id = kThink;
  r.think_end_id = kThinkEnd;
  r.default_budget = budget;
  r.budget_message = std::move(message);
  return r;
}

EngineRequest Request(std::vector<int32_t> prompt) {
  EngineRequest r;
  r.prompt = std::move(prompt);
  return r;
}

TokenConstraints Make(const EngineRequest& r, const ReasoningOptions& reasoning = Reasoning()) {
  return TokenConstraints(r, reasoning, {kEos}, kVocab);
}

// The ids the constraint allows (every id when it has no mask).
std::vector<int32_t> Allowed(const LogitsConstraint& c) {
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < kVocab; ++id)
    if (c.Allows(id)) ids.push_back(id);
  return ids;
}

bool Banned(const LogitsConstraint& c, int32_t id) {
  for (auto [t, b] : c.bias)
    if (t == id && std::isinf(b) && b < 0) return true;
  return false;
}

TEST(TokenConstraintsTest, ThePromptSaysWhetherTheModelIsThinking) {
  EXPECT_TRUE(PromptOpensThought({1, kThink, 10}, kThink, kThinkEnd));
  EXPECT_TRUE(PromptOpensThought({kThink, 2, kThinkEnd, 3, kThink}, kThink, kThinkEnd));
  EXPECT_FALSE(PromptOpensThought({kThink, 2, kThinkEnd, 3}, kThink, kThinkEnd));
  EXPECT_FALSE(PromptOpensThought({1, 2, 3}, kThink, kThinkEnd));
  EXPECT_FALSE(PromptOpensThought({1, kThink}, -1, kThinkEnd));  // no thought tokens
}

TEST(TokenConstraintsTest, NothingAskedIsInactive) {
  TokenConstraints c = Make(Request({1, kThink}));
  EXPECT_FALSE(c.any());
  LogitsConstraint out;
  out.bias.emplace_back(3, 1.f);  // last step's, cleared
  c.Prepare(0, &out);
  EXPECT_FALSE(out.active());
  EXPECT_TRUE(c.thinking());
}

TEST(TokenConstraintsTest, TheBudgetForcesItsMessageThenThinkEnd) {
  TokenConstraints c = Make(Request({1, kThink}), Reasoning(/*budget=*/2, {'O', 'K'}));
  LogitsConstraint out;
  for (int32_t tok : {'a', 'b'}) {  // two free tokens of thought
    c.Prepare(0, &out);
    EXPECT_TRUE(out.allowed.empty());
    c.Accept(tok);
  }
  for (int32_t forced : {int32_t{'O'}, int32_t{'K'}, kThinkEnd}) {
    c.Prepare(2, &out);
    EXPECT_EQ(Allowed(out), std::vector<int32_t>{forced});
    c.Accept(forced);
  }
  EXPECT_FALSE(c.thinking());
  EXPECT_EQ(c.reasoning_tokens(), 4);  // a, b, O, K; </think> is not thought
  c.Prepare(5, &out);
  EXPECT_FALSE(out.active());  // no grammar: the answer is free
}

TEST(TokenConstraintsTest, TheRequestsBudgetOverridesTheDefaultAndZeroEndsAtOnce) {
  EngineRequest r = Request({kThink});
  r.thinking_token_budget = 0;
  TokenConstraints c = Make(r, Reasoning(/*budget=*/100));
  LogitsConstraint out;
  c.Prepare(0, &out);
  EXPECT_EQ(Allowed(out), std::vector<int32_t>{kThinkEnd});
  r.thinking_token_budget = -1;  // no limit, whatever the default
  TokenConstraints unlimited = Make(r, Reasoning(/*budget=*/0));
  EXPECT_FALSE(unlimited.any());
}

TEST(TokenConstraintsTest, AThoughtThatEndsBeforeTheBudgetIsNotForced) {
  TokenConstraints c = Make(Request({kThink}), Reasoning(/*budget=*/5, {'X'}));
  c.Accept('a');
  c.Accept(kThinkEnd);
  EXPECT_FALSE(c.thinking());
  EXPECT_EQ(c.reasoning_tokens(), 1);
  LogitsConstraint out;
  c.Prepare(2, &out);
  EXPECT_FALSE(out.active());
}

TEST(TokenConstraintsTest, TheGrammarStartsAfterTheThoughtWhichCannotEndTheRequest) {
  EngineRequest r = Request({1, kThink});
  r.grammar = *Compiler()->CompileChoice({"yes"});
  r.stop_token_ids = {'!'};
  TokenConstraints c = Make(r);
  LogitsConstraint out;
  c.Prepare(0, &out);
  EXPECT_TRUE(out.allowed.empty());  // the thought is free...
  EXPECT_TRUE(Banned(out, kEos));    // ...but must lead to the answer
  EXPECT_TRUE(Banned(out, '!'));
  c.Accept('z');
  c.Accept(kThinkEnd);
  for (char ch : std::string("yes")) {
    c.Prepare(3, &out);
    EXPECT_EQ(Allowed(out), std::vector<int32_t>{ch});
    c.Accept(ch);
  }
  c.Prepare(5, &out);
  EXPECT_EQ(Allowed(out), (std::vector<int32_t>{'!', kEos}));  // complete: end or stop
  EXPECT_EQ(c.refused(), 0);
}

TEST(TokenConstraintsTest, WithoutAThoughtTheGrammarAppliesFromTheFirstToken) {
  EngineRequest r = Request({1, 2});
  r.grammar = *Compiler()->CompileChoice({"no"});
  TokenConstraints c = Make(r);
  EXPECT_FALSE(c.thinking());
  LogitsConstraint out;
  c.Prepare(0, &out);
  EXPECT_EQ(Allowed(out), std::vector<int32_t>{'n'});
}

TEST(TokenConstraintsTest, MinTokensBansTheEndIdsUntilReached) {
  EngineRequest r = Request({1});
  r.min_tokens = 2;
  r.stop_token_ids = {7};
  TokenConstraints c = Make(r);
  LogitsConstraint out;
  c.Prepare(1, &out);
  EXPECT_TRUE(Banned(out, kEos));
  EXPECT_TRUE(Banned(out, 7));
  c.Prepare(2, &out);
  EXPECT_FALSE(out.active());
  r.ignore_eos = true;  // end-of-sequence ends nothing then: only the stop id is banned
  TokenConstraints ignoring = Make(r);
  ignoring.Prepare(0, &out);
  EXPECT_FALSE(Banned(out, kEos));
  EXPECT_TRUE(Banned(out, 7));
}

TEST(TokenConstraintsTest, MinTokensYieldsToAnAnswerThatCannotGoOn) {
  EngineRequest r = Request({1});
  r.grammar = *Compiler()->CompileRegex("a+");
  r.min_tokens = 10;
  TokenConstraints c = Make(r);
  LogitsConstraint out;
  c.Accept('a');
  c.Prepare(1, &out);  // complete, and may go on: end-of-sequence waits
  EXPECT_EQ(Allowed(out), std::vector<int32_t>{'a'});
  EngineRequest one = Request({1});
  one.grammar = *Compiler()->CompileChoice({"a"});
  one.min_tokens = 10;
  TokenConstraints done = Make(one);
  done.Accept('a');
  done.Prepare(1, &out);  // complete, and nothing may follow: it ends
  EXPECT_EQ(Allowed(out), std::vector<int32_t>{kEos});
}

TEST(TokenConstraintsTest, AStopIdComesOnlyOnceTheAnswerIsComplete) {
  EngineRequest r = Request({1});
  r.grammar = *Compiler()->CompileRegex("[ab]+");
  r.stop_token_ids = {'b'};  // a token the grammar could also read as text
  TokenConstraints c = Make(r);
  LogitsConstraint out;
  c.Prepare(0, &out);
  EXPECT_EQ(Allowed(out), std::vector<int32_t>{'a'});
  c.Accept('a');
  c.Prepare(1, &out);
  EXPECT_EQ(Allowed(out), (std::vector<int32_t>{'a', 'b', kEos}));
}

TEST(TokenConstraintsTest, LogitBiasPassesThroughOutsideForcedSteps) {
  EngineRequest r = Request({kThink});
  r.logit_bias = {{5, 2.5f}, {9, -100.f}};
  TokenConstraints c = Make(r, Reasoning(/*budget=*/1));
  EXPECT_TRUE(c.any());
  LogitsConstraint out;
  c.Prepare(0, &out);
  EXPECT_EQ(out.bias, r.logit_bias);
  c.Accept('x');
  c.Prepare(1, &out);  // forced </think>: the bias has nothing to choose between
  EXPECT_TRUE(out.bias.empty());
  c.Accept(kThinkEnd);
  c.Prepare(2, &out);
  EXPECT_EQ(out.bias, r.logit_bias);
}

}  // namespace
}  // namespace r1::engine
