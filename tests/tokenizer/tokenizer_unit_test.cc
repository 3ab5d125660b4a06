// Unit tests that need no goldens: errors, UTF-8 handling, NFC, the regex rewrite, small
// hand-made tokenizer.json files, and thread safety.
#include <cstdio>
#include <thread>

#include "tests/tokenizer/test_util.h"
#include "worker/tokenizer/detokenizer.h"
#include "worker/tokenizer/nfc.h"
#include "worker/tokenizer/regex_split.h"
#include "worker/tokenizer/utf8.h"

namespace r1::tokenizer::testing {
namespace {

std::vector<std::string>& TempFiles() {
  static auto* files = new std::vector<std::string>();
  return *files;
}
void RemoveTempFiles() {
  for (const auto& f : TempFiles()) std::remove(f.c_str());
}

// A temporary file, removed when the test program exits.
std::string WriteTemp(const std::string& text) {
  static const bool registered = (std::atexit(RemoveTempFiles), true);
  (void)registered;
  char tmpl[] = "/tmp/r1_tok_XXXXXX";
  int fd = mkstemp(tmpl);
  EXPECT_GE(fd, 0);
  FILE* f = fdopen(fd, "w");
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  TempFiles().push_back(tmpl);
  return tmpl;
}

TEST(TokEncode, InvalidUtf8IsAnError) {
  for (std::string bad : {std::string("\xff"), std::string("abc\xc3"), std::string("\xed\xa0\x80"),
                          std::string("\xc0\xaf"), std::string("ok \xe4\xb8 x"),
                          std::string("\xf4\x90\x80\x80"), std::string("a\x80")}) {
    auto r = Qwen().Encode(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("UTF-8"), absl::string_view::npos) << r.status();
  }
}

TEST(TokDecode, UnknownIdIsAnErrorNamingIt) {
  for (int32_t id : {-1, static_cast<int32_t>(Qwen().vocab_size()), 1 << 30}) {
    auto r = Qwen().Decode({9707, id});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(std::to_string(id)), absl::string_view::npos);
  }
  // The streaming detokenizer ignores unknown ids.
  IncrementalDetokenizer d(Qwen());
  EXPECT_EQ(d.Add(-5), "");
}

TEST(TokVocab, LookupsAndSize) {
  const Tokenizer& t = Qwen();
  EXPECT_EQ(t.vocab_size(), 151669);
  EXPECT_EQ(t.TokenToId("<|im_start|>"), 151644);
  EXPECT_EQ(t.TokenToId("Hello"), 9707);
  EXPECT_EQ(t.TokenToId("ĠHello"), 21927);
  EXPECT_EQ(t.TokenToId("no such token at all"), std::nullopt);
  EXPECT_EQ(t.IdToToken(9707), "Hello");
  EXPECT_EQ(t.IdToToken(-3), "");
  EXPECT_TRUE(t.IsSpecial(151643));
  EXPECT_FALSE(t.IsSpecial(9707));
  EXPECT_EQ(t.TokenBytes(21927), " Hello");
}

TEST(TokEncode, KnownQwenIds) {
  EXPECT_EQ(*Qwen().Encode("Hello world!"), (std::vector<int32_t>{9707, 1879, 0}));
  EXPECT_EQ(*Qwen().Encode("<|im_start|>user"), (std::vector<int32_t>{151644, 872}));
  EXPECT_TRUE(Qwen().Encode("")->empty());
}

TEST(TokEncode, ThreadsAgree) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "Line " + std::to_string(i) + ": 你好 wörld 😀\n";
  auto want = *Qwen().Encode(text);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int r = 0; r < 20; ++r) ok[k] += *Qwen().Encode(text) == want;
    });
  }
  for (auto& th : threads) th.join();
  for (int v : ok) EXPECT_EQ(v, 20);
}

TEST(TokUtf8, LossyMatchesRust) {
  auto lossy = [](const std::string& s) {
    std::string out;
    AppendUtf8Lossy(s, &out);
    return out;
  };
  const std::string R = "\xEF\xBF\xBD";
  EXPECT_EQ(lossy("abc"), "abc");
  EXPECT_EQ(lossy("\xe4\xb8"), R);                  // an incomplete tail is one U+FFFD
  EXPECT_EQ(lossy("\xe4\xb8z"), R + "z");
  EXPECT_EQ(lossy("\xff\xfe"), R + R);              // invalid bytes one by one
  EXPECT_EQ(lossy("\xed\xa0\x80"), R + R + R);      // surrogates: ED then two strays
  EXPECT_EQ(lossy("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");
  EXPECT_EQ(lossy("\xf0\x9f\x98"), R);
  EXPECT_EQ(lossy("\xc0\xaf"), R + R);
}

TEST(TokNfc, ComposesReordersAndKeepsNfcText) {
  auto nfc = [](const std::string& s) {
    std::string out;
    AppendNfc(s, &out);
    return out;
  };
  EXPECT_EQ(nfc("e\xcc\x81"), "\xc3\xa9");                        // e + acute -> é
  EXPECT_EQ(nfc("\xe2\x84\xab"), "\xc3\x85");                     // Angstrom sign -> Å
  EXPECT_EQ(nfc("\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8"), "\xea\xb0\x81");  // jamo -> 각
  EXPECT_EQ(nfc("q\xcc\x87\xcc\xa3"), "q\xcc\xa3\xcc\x87");       // dot below before dot above
  EXPECT_EQ(nfc("plain ascii"), "plain ascii");
  EXPECT_EQ(nfc("\xe4\xbd\xa0\xe5\xa5\xbd"), "\xe4\xbd\xa0\xe5\xa5\xbd");
  EXPECT_TRUE(IsNfcQuick("caf\xc3\xa9"));
  EXPECT_FALSE(IsNfcQuick("cafe\xcc\x81"));
}

TEST(TokRegex, WidensWhitespaceLikeOniguruma) {
  EXPECT_EQ(WidenWhitespaceClasses(R"(\s+(?!\S))"), R"([\s\x{85}]+(?![^\s\x{85}]))");
  EXPECT_EQ(WidenWhitespaceClasses(R"([^\s\p{L}])"), R"([^\s\x{85}\p{L}])");
  EXPECT_EQ(WidenWhitespaceClasses(R"([]\s] \\s)"), R"([]\s\x{85}] \\s)");
}

// A tiny byte-level BPE: merges given as strings or as pairs must behave the same.
std::string TinyTokenizerJson(bool pair_merges, const std::string& extra_added) {
  std::string merges = pair_merges ? R"([["a","b"],["ab","c"],["Ġ","a"]])"
                                   : R"(["a b", "ab c", "Ġ a"])";
  return R"({"version":"1.0","added_tokens":[)" + extra_added + R"(],
    "normalizer":{"type":"NFC"},
    "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":true},
    "decoder":{"type":"ByteLevel"},
    "model":{"type":"BPE","dropout":null,"unk_token":null,
      "vocab":{"a":0,"b":1,"c":2,"Ġ":3,"ab":4,"abc":5,"Ġa":6,"<":7,">":8,"x":9},
      "merges":)" + merges + "}}";
}

TEST(TokLoad, MergesInBothFormats) {
  auto a = Tokenizer::FromFile(WriteTemp(TinyTokenizerJson(false, "")));
  auto b = Tokenizer::FromFile(WriteTemp(TinyTokenizerJson(true, "")));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  for (const char* s : {"abc", "ab abc a", "cba", "aab"}) {
    EXPECT_EQ(*(*a)->Encode(s), *(*b)->Encode(s)) << s;
  }
  EXPECT_EQ(*(*a)->Encode("abc ab a"), (std::vector<int32_t>{5, 3, 4, 6}));
  EXPECT_EQ(*(*a)->Decode({5, 3, 4, 6}), "abc ab a");
}

TEST(TokLoad, AddedTokensWithStrip) {
  std::string added =
      R"({"id":10,"content":"<x>","single_word":false,"lstrip":true,"rstrip":true,"normalized":false,"special":true},
         {"id":11,"content":"<x>>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":false})";
  auto t = Tokenizer::FromFile(WriteTemp(TinyTokenizerJson(false, added)));
  ASSERT_TRUE(t.ok()) << t.status();
  // Longest match first; lstrip/rstrip eat the spaces around <x>.
  EXPECT_EQ(*(*t)->Encode("a <x>> b"), (std::vector<int32_t>{0, 3, 11, 3, 1}));
  EXPECT_EQ(*(*t)->Encode("a  <x>  b"), (std::vector<int32_t>{0, 10, 1}));
  EXPECT_EQ(*(*t)->Decode({0, 10, 1}, true), "ab");
  EXPECT_TRUE((*t)->IsSpecial(10));
  EXPECT_FALSE((*t)->IsSpecial(11));
}

TEST(TokLoad, ClearErrors) {
  auto missing = Tokenizer::FromFile("/nonexistent/tokenizer.json");
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/tokenizer.json"), absl::string_view::npos);
  auto bad_json = Tokenizer::FromFile(WriteTemp("{not json"));
  EXPECT_FALSE(bad_json.ok());
  EXPECT_NE(bad_json.status().message().find("JSON"), absl::string_view::npos);
  auto wordpiece = Tokenizer::FromFile(WriteTemp(R"({"model":{"type":"WordPiece","vocab":{}}})"));
  EXPECT_FALSE(wordpiece.ok());
  EXPECT_NE(wordpiece.status().message().find("WordPiece"), absl::string_view::npos);
  std::string bad_merge = TinyTokenizerJson(false, "");
  bad_merge.replace(bad_merge.find("\"ab c\""), 6, "\"q r\"");
  auto m = Tokenizer::FromFile(WriteTemp(bad_merge));
  EXPECT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("merge 1"), absl::string_view::npos) << m.status();
}

}  // namespace
}  // namespace r1::tokenizer::testing

namespace r1::tokenizer::testing {
namespace {

TEST(TokDemoFiles, ClearErrorForABadSource) {
  absl::Status s = WriteDemoTokenizerFiles("/nonexistent/tokenizer.json", "/tmp");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent/tokenizer.json"), absl::string_view::npos);
}

TEST(TokEncode, LongPathologicalInputs) {
  // Long words go through the heap merge; long runs must neither crash nor stall.
  EXPECT_EQ(Qwen().Encode(std::string(200000, 'a'))->size(), 25000u);
  auto spaces = Qwen().Encode(std::string(100000, ' ') + "x");
  ASSERT_TRUE(spaces.ok());
  EXPECT_EQ(*Qwen().Decode(*spaces), std::string(100000, ' ') + "x");
  std::string mixed;
  for (int i = 0; i < 20000; ++i) mixed += " \t\n";
  EXPECT_EQ(*Qwen().Decode(*Qwen().Encode(mixed)), mixed);
}

}  // namespace
}  // namespace r1::tokenizer::testing

namespace r1::tokenizer::testing {
namespace {

TEST(TokLoad, StreamingParserErrors) {
  std::string base = TinyTokenizerJson(false, "");
  std::string bad_id = base;
  bad_id.replace(bad_id.find("\"b\":1"), 5, "\"b\":\"one\"");
  auto r1 = Tokenizer::FromFile(WriteTemp(bad_id));
  ASSERT_FALSE(r1.ok());
  EXPECT_NE(r1.status().message().find("vocab"), absl::string_view::npos) << r1.status();

  std::string merges_not_array = base;
  size_t m = merges_not_array.find("\"merges\":");
  merges_not_array.replace(m, merges_not_array.find(']', m) + 1 - m, "\"merges\":\"a b\"");
  auto r2 = Tokenizer::FromFile(WriteTemp(merges_not_array));
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("merges"), absl::string_view::npos) << r2.status();

  std::string bad_pair = TinyTokenizerJson(true, "");
  bad_pair.replace(bad_pair.find(R"(["ab","c"])"), 10, R"(["ab"])");
  auto r3 = Tokenizer::FromFile(WriteTemp(bad_pair));
  ASSERT_FALSE(r3.ok());
  EXPECT_NE(r3.status().message().find("merge 1"), absl::string_view::npos) << r3.status();

  auto r4 = Tokenizer::FromFile(WriteTemp(base + "  trailing"));
  ASSERT_FALSE(r4.ok());
  EXPECT_NE(r4.status().message().find("JSON"), absl::string_view::npos) << r4.status();

  // Escaped keys and merge strings are unescaped.
  std::string escaped = base;
  escaped.replace(escaped.find("\"x\":9"), 5, "\"\\u0078\":9");
  auto r5 = Tokenizer::FromFile(WriteTemp(escaped));
  ASSERT_TRUE(r5.ok()) << r5.status();
  EXPECT_EQ((*r5)->TokenToId("x"), 9);
}

}  // namespace
}  // namespace r1::tokenizer::testing

namespace r1::tokenizer::testing {
namespace {

int32_t ByteToken(const Tokenizer& t, uint8_t b) {
  // The byte-level alphabet: printable Latin-1 bytes stand for themselves, the rest are
  // shifted to U+0100 and up.
  for (int32_t id = 0; id < 256 + 1000; ++id) {
    std::string_view bytes = t.TokenBytes(id);
    if (bytes.size() == 1 && static_cast<uint8_t>(bytes[0]) == b) return id;
  }
  ADD_FAILURE() << "no token for byte " << int(b);
  return -1;
}

TEST(TokDetokenizer, HoldsBackSplitCharacters) {
  const Tokenizer& t = Qwen();
  IncrementalDetokenizer d(t);
  EXPECT_EQ(d.Add(ByteToken(t, 'a')), "a");
  EXPECT_EQ(d.Add(ByteToken(t, 0xE4)), "");
  EXPECT_EQ(d.pending_bytes(), 1u);
  EXPECT_EQ(d.Add(ByteToken(t, 0xB8)), "");
  EXPECT_EQ(d.Add(ByteToken(t, 0xAD)), "中");
  EXPECT_EQ(d.pending_bytes(), 0u);
  // A byte that can never start a character comes out at once as U+FFFD.
  EXPECT_EQ(d.Add(ByteToken(t, 0xFF)), "\xEF\xBF\xBD");
  // A cut character at the end is one U+FFFD, as Hugging Face decodes it.
  EXPECT_EQ(d.Add(ByteToken(t, 0xF0)), "");
  EXPECT_EQ(d.Add(ByteToken(t, 0x9F)), "");
  EXPECT_EQ(d.Finish(), "\xEF\xBF\xBD");
  // Special tokens are skipped only when asked.
  IncrementalDetokenizer skip(t, /*skip_special_tokens=*/true);
  EXPECT_EQ(skip.Add(151643), "");
  IncrementalDetokenizer keep(t);
  EXPECT_EQ(keep.Add(151643), "<|endoftext|>");
}

}  // namespace
}  // namespace r1::tokenizer::testing
