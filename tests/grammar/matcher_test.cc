// The matcher's contract on hand-picked inputs (expected results from the JSON, JSON Schema and
// ECMAScript specifications): tokens and bytes, end-of-sequence, special tokens, UTF-8 split
// across tokens, number bounds, string lengths and escapes, patterns, whitespace bounds.
#include <thread>

#include <gtest/gtest.h>

#include "tests/grammar/grammar_test_util.h"
#include "common/flags.h"
#include "worker/grammar/bitmask.h"
#include "worker/grammar/grammar_flags.h"
#include "worker/grammar/random_walk.h"

namespace r1::grammar::testing {
namespace {

// Compiled for the byte vocabulary: these tests are about the grammar, not the tokens.
GrammarCompiler::GrammarPtr Schema(const std::string& schema, GrammarOptions opt = {}) {
  CompilerOptions o;
  o.grammar = opt;
  GrammarCompiler c(ByteVocab(), o);
  auto g = c.CompileJsonSchema(schema);
  EXPECT_TRUE(g.ok()) << schema << ": " << g.status();
  return g.ok() ? *g : nullptr;
}

// A string value as JSON text, quoted by Boost.JSON (not by our code).
std::string QuoteForTest(const char* s) { return boost::json::serialize(boost::json::value(s)); }

// The whole text is a complete value of the grammar.
bool Accepts(const GrammarCompiler::GrammarPtr& g, std::string_view text) {
  GrammarMatcher m(g, {kByteEos});
  return m.AcceptBytes(text) && m.IsComplete();
}

std::vector<uint32_t> Mask(const GrammarMatcher& m) {
  std::vector<uint32_t> bits(m.bitmask_words());
  m.FillNextTokenBitmask(bits.data());
  return bits;
}

TEST(GrammarMatching, TokensEndOfSequenceAndRefusals) {
  GrammarCompiler c(QwenVocab());
  auto g = *c.CompileJsonSchema(R"j({"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":false})j");
  GrammarMatcher m(g, {kEos});
  const TokenVocabulary& v = *QwenVocab();
  EXPECT_FALSE(m.IsComplete());
  EXPECT_TRUE(m.CanContinue());
  EXPECT_EQ(m.MinBytesToComplete(), 7u);  // {"a":0}
  // A refused token changes nothing.
  const std::vector<uint32_t> before = Mask(m);
  EXPECT_FALSE(TestBit(before.data(), v.ByteToken('x')));
  EXPECT_FALSE(m.AcceptToken(v.ByteToken('x')));
  EXPECT_FALSE(m.AcceptToken(kEos));
  EXPECT_FALSE(m.AcceptToken(-1));
  EXPECT_FALSE(m.AcceptToken(151935));  // padding past the tokenizer
  EXPECT_EQ(Mask(m), before);
  for (const char* piece : {"{\"", "a", "\":", "1", "2", "}"}) {
    auto ids = *QwenTokenizer().Encode(piece);
    ASSERT_EQ(ids.size(), 1u) << piece;
    EXPECT_TRUE(TestBit(Mask(m).data(), ids[0])) << piece;
    EXPECT_FALSE(TestBit(Mask(m).data(), kEos)) << piece;
    ASSERT_TRUE(m.AcceptToken(ids[0])) << piece;
  }
  EXPECT_TRUE(m.IsComplete());
  EXPECT_FALSE(m.CanContinue());
  std::vector<uint32_t> end = Mask(m);
  EXPECT_TRUE(TestBit(end.data(), kEos));
  ClearBit(end.data(), kEos);
  EXPECT_EQ(end, std::vector<uint32_t>(end.size(), 0u));  // nothing but EOS after the value
  ASSERT_TRUE(m.AcceptToken(kEos));
  EXPECT_TRUE(m.IsTerminated());
  EXPECT_EQ(Mask(m), std::vector<uint32_t>(end.size(), 0u));
  EXPECT_FALSE(m.AcceptToken(kEos));
  m.Reset();
  EXPECT_FALSE(m.IsTerminated());
  EXPECT_TRUE(m.AcceptBytes("{\"a\":-3}"));
}

TEST(GrammarMatching, SpecialAndAddedTokensAreNeverAllowed) {
  const tokenizer::Tokenizer* tok = &QwenTokenizer();
  GrammarCompiler c(QwenVocab());
  auto g = c.CompileJsonObject();
  ASSERT_TRUE(g.ok());
  GrammarMatcher m(*g, {kEos});
  ASSERT_TRUE(m.AcceptBytes("{\"k\":\""));  // inside a string almost every token fits
  const std::vector<uint32_t> bits = Mask(m);
  int added = 0;
  for (int32_t id = 0; id < kQwenModelVocab; ++id) {
    if (id < tok->vocab_size() && !tok->IsAdded(id)) continue;
    ++added;
    EXPECT_FALSE(TestBit(bits.data(), id)) << id << " " << tok->IdToToken(id);
  }
  EXPECT_GT(added, 271);  // 22+ added tokens and the padding up to 151,936
  EXPECT_TRUE(TestBit(bits.data(), *tok->TokenToId("Hello")));
}

TEST(GrammarMatching, Utf8CharactersSplitAcrossTokens) {
  GrammarCompiler c(QwenVocab());
  auto g = c.CompileJsonSchema(R"j({"type":"string","maxLength":2})j");
  ASSERT_TRUE(g.ok());
  const TokenVocabulary& v = *QwenVocab();
  GrammarMatcher m(*g, {kEos});
  ASSERT_TRUE(m.AcceptBytes("\""));
  // 世 is E4 B8 96: three single-byte tokens, each allowed in turn; the closing quote only
  // between characters.
  const uint8_t bytes[] = {0xE4, 0xB8, 0x96};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(TestBit(Mask(m).data(), v.ByteToken('"')), i == 0) << i;
    ASSERT_TRUE(TestBit(Mask(m).data(), v.ByteToken(bytes[i]))) << i;
    ASSERT_TRUE(m.AcceptToken(v.ByteToken(bytes[i])));
  }
  EXPECT_TRUE(TestBit(Mask(m).data(), v.ByteToken('"')));
  EXPECT_FALSE(m.CanAcceptBytes("\x80"));  // a continuation byte cannot start a character
  EXPECT_FALSE(m.CanAcceptBytes("\xC0\x80"));  // overlong
  EXPECT_FALSE(m.CanAcceptBytes("\xED\xA0\x80"));  // a surrogate
  EXPECT_TRUE(m.AcceptBytes("\xF0\x9F\x91\x8D\""));  // 👍: the second and last character
  EXPECT_TRUE(m.IsComplete());
}

TEST(GrammarNumbers, BoundsAreExactDecimals) {
  auto g = Schema(R"j({"type":"number","minimum":0.1,"exclusiveMaximum":2.5})j");
  for (const char* ok : {"0.1", "0.10", "0.1000001", "1", "2", "2.4999", "0.5"}) EXPECT_TRUE(Accepts(g, ok)) << ok;
  for (const char* no : {"0.0999", "0", "-1", "2.5", "2.50", "3", "1e0", "01", "1.", ".5", "+1"})
    EXPECT_FALSE(Accepts(g, no)) << no;
  auto ge = Schema(R"j({"type":"number","exclusiveMinimum":-1})j");
  EXPECT_TRUE(Accepts(ge, "-0.999"));
  EXPECT_FALSE(Accepts(ge, "-1"));
  EXPECT_FALSE(Accepts(ge, "-1.0"));
  EXPECT_TRUE(Accepts(ge, "0"));
  EXPECT_FALSE(Accepts(ge, "-0"));  // no negative zero
  // At most 15 significant digits with bounds: the text reads back as a distinct double.
  EXPECT_TRUE(Accepts(ge, "0.123456789012345"));
  EXPECT_FALSE(Accepts(ge, "0.1234567890123456"));

  auto i = Schema(R"j({"type":"integer","minimum":1.5,"maximum":100})j");
  for (const char* ok : {"2", "99", "100"}) EXPECT_TRUE(Accepts(i, ok)) << ok;
  for (const char* no : {"1", "101", "2.0", "002", "1000"}) EXPECT_FALSE(Accepts(i, no)) << no;
  auto n = Schema(R"j({"type":"number"})j");
  for (const char* ok : {"-0.5", "1e5", "1E-99", "123456789012345", "0.000000000000001"})
    EXPECT_TRUE(Accepts(n, ok)) << ok;
  // Default digit limits: 15 integer and fraction digits, 2 exponent digits.
  for (const char* no : {"1e100", "1234567890123456", "0.0000000000000001", "-", "1e"})
    EXPECT_FALSE(Accepts(n, no)) << no;
}

TEST(GrammarStrings, LengthsCountCodePointsAndEscapesAreCanonical) {
  auto g = Schema(R"j({"type":"string","minLength":1,"maxLength":2})j");
  for (const char* ok : {"\"a\"", "\"éé\"", "\"\\n\\t\"", "\"\\u0001\"", "\"\\\"\\\\\"", "\"/\""})
    EXPECT_TRUE(Accepts(g, ok)) << ok;
  for (const char* no : {"\"\"", "\"abc\"", "\"ééé\"", "\"\\u00e9\"", "\"\\/\"", "\"\n\"", "\"\\x\"",
                         "\"\xC3(\""})
    EXPECT_FALSE(Accepts(g, no)) << no;
  auto e = Schema(R"j({"enum":["a\"b", "\u0001", "é"]})j");
  EXPECT_TRUE(Accepts(e, "\"a\\\"b\""));
  EXPECT_TRUE(Accepts(e, "\"\\u0001\""));
  EXPECT_TRUE(Accepts(e, "\"é\""));
}

TEST(GrammarStrings, PatternsFollowEcmaScript) {
  struct Case {
    const char* pattern;
    std::vector<const char*> match, no_match;  // decoded string values
  };
  const Case cases[] = {
      {"^\\d{3}-\\d{2}$", {"123-45"}, {"12-345", "123-456", "a23-45"}},
      {"ab+c", {"abc", "xxabbbcyy"}, {"ac", "abx"}},  // unanchored: found anywhere
      {"^[^a-z]+$", {"ABC", "世界", "\"\\"}, {"aB", ""}},
      {"^.$", {"x", "é", "👍"}, {"\n", "xy"}},
      {"^\\s\\S$", {" x", "\u3000y"}, {"xx"}},
      {"^(?:ab|cd){2}$", {"abcd", "cdcd"}, {"ab", "abc"}},
      {"^\\w+@\\w+\\.com$|^none$", {"a@b.com", "none"}, {"a@b.org", "nonee"}},
      {"^\\u00e9\\x41$", {"éA"}, {"eA"}},
      {"^[\\d.-]{2,}$", {"1.-", "--"}, {"1"}},
  };
  for (const Case& c : cases) {
    auto g = Schema(std::string(R"j({"type":"string","pattern":)j") +
                    boost::json::serialize(boost::json::value(c.pattern)) + "}");
    for (const char* s : c.match)
      EXPECT_TRUE(Accepts(g, QuoteForTest(s))) << c.pattern << " ~ " << s;
    for (const char* s : c.no_match)
      EXPECT_FALSE(Accepts(g, QuoteForTest(s))) << c.pattern << " !~ " << s;
  }
}

TEST(GrammarWhitespace, RunsAreBounded) {
  GrammarOptions opt;
  opt.max_whitespace = 3;
  auto g = Schema(R"j({"type":"array","items":{"type":"integer"}})j", opt);
  const TokenVocabulary& v = *ByteVocab();
  EXPECT_TRUE(Accepts(g, " \n\t[ \r\n1 \n ,\t\t\t2   ]"));
  EXPECT_FALSE(Accepts(g, "    []"));
  EXPECT_FALSE(Accepts(g, "[1    ]"));
  GrammarMatcher m(g, {kByteEos});
  ASSERT_TRUE(m.AcceptBytes("[1,  \n"));
  const std::vector<uint32_t> bits = Mask(m);
  for (uint8_t b : {' ', '\n', '\t', '\r'}) EXPECT_FALSE(TestBit(bits.data(), v.ByteToken(b)));
  EXPECT_TRUE(TestBit(bits.data(), v.ByteToken('7')));

  opt.max_whitespace = 0;  // compact
  auto compact = Schema(R"j({"type":"object","properties":{"a":{"type":"string"}}})j", opt);
  EXPECT_TRUE(Accepts(compact, "{\"a\":\" spaces inside strings stay \"}"));
  EXPECT_FALSE(Accepts(compact, "{\"a\": \"x\"}"));
  EXPECT_FALSE(Accepts(compact, " {}"));
}

// Outside strings, no run of JSON whitespace is longer than the bound, in random walks.
TEST(GrammarWhitespace, RandomWalksStayWithinTheBound) {
  GrammarCompiler c(QwenVocab());
  auto g = c.CompileJsonObject();
  ASSERT_TRUE(g.ok());
  const int64_t bound = GrammarOptions().max_whitespace;
  std::mt19937_64 rng(7);
  int max_run_seen = 0;
  for (int w = 0; w < 20; ++w) {
    GrammarMatcher m(*g, {kEos});
    WalkOptions opt;
    opt.max_tokens = 60;
    const WalkResult r = RandomWalk(m, kEos, rng, opt);
    ASSERT_TRUE(r.complete);
    bool in_string = false, escaped = false;
    int run = 0;
    for (char ch : r.text) {
      if (in_string) {
        if (escaped) escaped = false;
        else if (ch == '\\') escaped = true;
        else if (ch == '"') in_string = false;
        continue;
      }
      if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t') {
        max_run_seen = std::max(max_run_seen, ++run);
        ASSERT_LE(run, bound) << r.text;
      } else {
        run = 0;
        in_string = ch == '"';
      }
    }
  }
  EXPECT_EQ(max_run_seen, bound);  // the walks do reach the bound
}

TEST(GrammarCompilerCache, CacheSharesGrammarsAndEvictsTheOldest) {
  CompilerOptions o;
  o.cache_entries = 2;
  GrammarCompiler c(ByteVocab(), o);
  auto a1 = c.CompileJsonSchema(R"j({"type": "integer"})j");
  auto a2 = c.CompileJsonSchema("{\n  \"type\":\"integer\"\n}");  // same schema, other spacing
  ASSERT_TRUE(a1.ok() && a2.ok());
  EXPECT_EQ(*a1, *a2);
  EXPECT_EQ(c.cache_stats().hits, 1u);
  ASSERT_TRUE(c.CompileJsonSchema(R"j({"type":"string"})j").ok());
  ASSERT_TRUE(c.CompileJsonSchema(R"j({"type":"boolean"})j").ok());  // evicts integer
  EXPECT_EQ(c.cache_stats().entries, 2u);
  auto a3 = c.CompileJsonSchema(R"j({"type":"integer"})j");
  ASSERT_TRUE(a3.ok());
  EXPECT_NE(*a3, *a1);
  EXPECT_EQ(c.cache_stats().misses, 4u);
}

// Matchers of one grammar on several threads share its caches; every walk is still valid.
TEST(GrammarCompilerCache, OneGrammarOnManyThreads) {
  GrammarCompiler c(QwenVocab());
  auto g = c.CompileJsonSchema(boost::json::serialize(Case("recursive_ref").at("schema")));
  ASSERT_TRUE(g.ok());
  std::vector<std::thread> threads;
  std::vector<int> complete(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      for (int w = 0; w < 10; ++w) {
        GrammarMatcher m(*g, {kEos});
        const WalkResult r = RandomWalk(m, kEos, rng, WalkOptions{});
        GrammarMatcher replay(*g, {kEos});
        complete[t] += r.complete && replay.AcceptBytes(r.text) && replay.IsComplete();
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(complete, std::vector<int>(4, 10));
}

// With a cache too small to keep anything, every mask is computed again and still right.
TEST(GrammarCompilerCache, MasksStayRightWhenEvicted) {
  CompilerOptions o;
  o.mask_cache_bytes = 1;
  GrammarCompiler c(QwenVocab(), o);
  auto g = c.CompileJsonSchema(boost::json::serialize(Case("recursive_ref").at("schema")));
  ASSERT_TRUE(g.ok());
  GrammarMatcher m(*g, {kEos});
  for (const char* piece : {"{\"label\":\"a\",\"children\":[{\"label\":", "\"xy", "\"}", ",{"}) {
    ASSERT_TRUE(m.AcceptBytes(piece)) << piece;
    EXPECT_EQ(Mask(m), BruteForceMask(m, kEos)) << piece;
    EXPECT_EQ(Mask(m), BruteForceMask(m, kEos)) << piece;  // again, after an eviction
  }
  EXPECT_GT((*g)->stats().evictions, 0u);
}

TEST(GrammarFlags, FlagsGiveOptions) {
  Flags flags("t", "test");
  GrammarFlags gf = AddGrammarFlags(flags);
  const char* argv[] = {"t", "--grammar-max-whitespace", "3", "--grammar-strict-properties=false",
                        "--grammar-mask-cache-mb", "2"};
  bool help = false;
  ASSERT_TRUE(flags.Parse(6, argv, &help).ok());
  auto o = CompilerOptionsFromFlags(gf);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->grammar.max_whitespace, 3);
  EXPECT_FALSE(o->grammar.strict_properties);
  EXPECT_EQ(o->mask_cache_bytes, size_t{2} << 20);
  EXPECT_EQ(o->grammar.max_integer_digits, GrammarOptions().max_integer_digits);
  EXPECT_NE(flags.HelpText().find("--grammar-max-whitespace"), std::string::npos);

  Flags bad("t", "test");
  GrammarFlags bf = AddGrammarFlags(bad);
  const char* bad_argv[] = {"t", "--grammar-max-exponent-digits", "3"};
  ASSERT_TRUE(bad.Parse(3, bad_argv, &help).ok());
  auto e = CompilerOptionsFromFlags(bf);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("--grammar-max-exponent-digits"), absl::string_view::npos) << e.status();
}

TEST(GrammarVocabulary, TriesHoldEveryGrammarToken) {
  const TokenVocabulary& v = *QwenVocab();
  size_t tokens = 0;
  for (const TokenTrie* t : {&v.short_trie(), &v.long_trie()}) {
    const bool is_short = t == &v.short_trie();
    std::vector<uint8_t> prefix;
    // Walk the preorder trie, rebuilding each node's bytes, and compare with the token's.
    std::vector<uint32_t> path = {0};
    for (uint32_t i = 1; i < t->size(); ++i) {
      while (t->depth[path.back()] + 1 != t->depth[i]) path.pop_back(), prefix.pop_back();
      ASSERT_LT(i, t->end[path.back()]);
      path.push_back(i);
      prefix.push_back(t->byte[i]);
      if (t->token[i] >= 0) {
        ++tokens;
        ASSERT_EQ(v.TokenBytes(t->token[i]), std::string(prefix.begin(), prefix.end()));
        ASSERT_EQ(prefix.size() <= TokenVocabulary::kShortTokenBytes, is_short);
      }
    }
  }
  EXPECT_EQ(tokens, v.num_grammar_tokens());
  EXPECT_GT(v.long_trie().size(), 1u);  // Qwen has tokens of more than 32 bytes
  EXPECT_EQ(v.bitmask_words(), 4748u);  // 151,936 bits
  for (int b = 0; b < 256; ++b) EXPECT_GE(v.ByteToken(static_cast<uint8_t>(b)), 0) << b;

  // Two ids with the same bytes both get the bit.
  auto dup = TokenVocabulary::Create({std::string("a"), std::string("b"), std::string("a"), std::nullopt}, 8);
  ASSERT_TRUE(dup.ok());
  GrammarCompiler c(*dup);
  auto g = c.CompileChoice({"a"});
  ASSERT_TRUE(g.ok());
  GrammarMatcher m(*g, {3});
  std::vector<uint32_t> bits = Mask(m);
  EXPECT_EQ(bits[0], 0b101u);
  EXPECT_FALSE(TokenVocabulary::Create({std::string("a")}, 0).ok());
}

}  // namespace
}  // namespace r1::grammar::testing
