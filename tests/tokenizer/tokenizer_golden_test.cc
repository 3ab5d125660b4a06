// Goldens made by Hugging Face tokenizers (make_tokenizer_fixtures.py on the GPU machine):
// encodings of every hard string, decodings, and streaming detokenization, with the npm Qwen
// tokenizer.json and with the demo DeepSeek-R1-Distill tokenizer.json that our
// WriteDemoTokenizerFiles writes.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/tokenizer/test_util.h"
#include "worker/tokenizer/detokenizer.h"
#include "worker/tokenizer/utf8.h"

namespace r1::tokenizer::testing {

namespace json = boost::json;

const Tokenizer& Qwen() {
  static std::unique_ptr<Tokenizer> t = [] {
    auto r = Tokenizer::FromFile(QwenTokenizerPath());
    if (!r.ok()) {
      ADD_FAILURE() << r.status() << " (run tools/install-deps.sh to fetch the Qwen tokenizer)";
      std::abort();
    }
    return std::move(*r);
  }();
  return *t;
}

std::string& DemoDirStorage() {
  static auto* dir = new std::string();  // never destroyed: the atexit hook reads it
  return *dir;
}

const std::string& DemoDir() {
  static std::string& dir = DemoDirStorage() = [] {
    char tmpl[] = "/tmp/r1_demo_tokenizer_XXXXXX";
    char* d = mkdtemp(tmpl);
    if (!d) std::abort();
    std::atexit([] { std::filesystem::remove_all(DemoDirStorage()); });
    absl::Status s = WriteDemoTokenizerFiles(QwenTokenizerPath(), d);
    if (!s.ok()) {
      ADD_FAILURE() << s;
      std::abort();
    }
    return std::string(d);
  }();
  return dir;
}

const Tokenizer& Demo() {
  static std::unique_ptr<Tokenizer> t = [] {
    auto r = Tokenizer::FromDir(DemoDir());
    if (!r.ok()) {
      ADD_FAILURE() << r.status();
      std::abort();
    }
    return std::move(*r);
  }();
  return *t;
}

namespace {

struct Golden {
  std::vector<std::string> names, texts;
  std::vector<std::vector<int32_t>> enc;
  std::vector<std::string> dec, dec_skip;
  struct Case {
    std::vector<int32_t> ids;
    std::string text, text_skip;
  };
  std::vector<Case> cases;
  json::value raw;
};

std::vector<int32_t> Ids(const json::value& v) {
  std::vector<int32_t> out;
  for (const auto& x : v.as_array()) out.push_back(static_cast<int32_t>(x.as_int64()));
  return out;
}

std::string Str(const json::value& v) { return std::string(v.as_string()); }

Golden LoadGolden(const std::string& which) {
  Golden g;
  json::value strings = ReadJson(FixtureDir() + "/strings.json");
  for (const auto& s : strings.at("strings").as_array()) {
    g.names.push_back(Str(s.at("name")));
    g.texts.push_back(Str(s.at("text")));
  }
  g.raw = ReadJson(FixtureDir() + "/goldens_" + which + ".json");
  const auto& o = g.raw.as_object();
  for (const auto& e : o.at("encodings").as_array()) g.enc.push_back(Ids(e));
  // A null decoding means "equals the input text".
  const auto& dec = o.at("decoded").as_array();
  const auto& dec_skip = o.at("decoded_skip_special").as_array();
  for (size_t i = 0; i < dec.size(); ++i) {
    g.dec.push_back(dec[i].is_null() ? g.texts.at(i) : Str(dec[i]));
    g.dec_skip.push_back(dec_skip[i].is_null() ? g.texts.at(i) : Str(dec_skip[i]));
  }
  for (const auto& c : o.at("decode_cases").as_array()) {
    g.cases.push_back({Ids(c.at("ids")), Str(c.at("text")), Str(c.at("text_skip"))});
  }
  EXPECT_EQ(g.enc.size(), g.texts.size());
  EXPECT_EQ(g.dec.size(), g.texts.size());
  return g;
}

std::string Streamed(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  IncrementalDetokenizer d(tok, skip);
  std::string out;
  for (int32_t id : ids) {
    std::string delta = d.Add(id);
    // Deltas are always whole UTF-8.
    EXPECT_EQ(FindInvalidUtf8(delta), std::string_view::npos);
    out += delta;
  }
  return out + d.Finish();
}

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  const Tokenizer& tok() const { return GetParam() == "qwen" ? Qwen() : Demo(); }
};

TEST_P(GoldenTest, EncodeEqualsHuggingFace) {
  Golden g = LoadGolden(GetParam());
  int bad = 0;
  for (size_t i = 0; i < g.texts.size(); ++i) {
    auto ids = tok().Encode(g.texts[i]);
    ASSERT_TRUE(ids.ok()) << g.names[i] << ": " << ids.status();
    if (*ids != g.enc[i]) {
      ++bad;
      ADD_FAILURE() << GetParam() << " string '" << g.names[i] << "': " << ids->size()
                    << " ids, HF gives " << g.enc[i].size();
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST_P(GoldenTest, DecodeEqualsHuggingFace) {
  Golden g = LoadGolden(GetParam());
  for (size_t i = 0; i < g.texts.size(); ++i) {
    auto text = tok().Decode(g.enc[i]);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, g.dec[i]) << g.names[i];
    auto skipped = tok().Decode(g.enc[i], /*skip_special_tokens=*/true);
    ASSERT_TRUE(skipped.ok());
    EXPECT_EQ(*skipped, g.dec_skip[i]) << g.names[i];
  }
  for (const auto& c : g.cases) {
    EXPECT_EQ(*tok().Decode(c.ids), c.text);
    EXPECT_EQ(*tok().Decode(c.ids, true), c.text_skip);
  }
}

TEST_P(GoldenTest, RoundTripOfNfcText) {
  // Decoding the encoding gives back the input, except where NFC changed it.
  Golden g = LoadGolden(GetParam());
  int same = 0;
  for (size_t i = 0; i < g.texts.size(); ++i) {
    auto ids = tok().Encode(g.texts[i]);
    ASSERT_TRUE(ids.ok());
    auto back = tok().Decode(*ids);
    ASSERT_TRUE(back.ok());
    if (g.names[i].rfind("nfd_", 0) == 0 || g.names[i].rfind("nfc_", 0) == 0) continue;
    EXPECT_EQ(*back, g.texts[i]) << g.names[i];
    ++same;
  }
  EXPECT_GT(same, 50);
}

TEST_P(GoldenTest, StreamingEqualsDecode) {
  Golden g = LoadGolden(GetParam());
  for (size_t i = 0; i < g.texts.size(); ++i) {
    EXPECT_EQ(Streamed(tok(), g.enc[i], false), g.dec[i]) << g.names[i];
    EXPECT_EQ(Streamed(tok(), g.enc[i], true), g.dec_skip[i]) << g.names[i];
  }
  for (const auto& c : g.cases) {
    EXPECT_EQ(Streamed(tok(), c.ids, false), c.text);
    EXPECT_EQ(Streamed(tok(), c.ids, true), c.text_skip);
  }
}

TEST_P(GoldenTest, AddedTokensMatchHuggingFace) {
  Golden g = LoadGolden(GetParam());
  const auto& o = g.raw.as_object();
  EXPECT_EQ(tok().vocab_size(), o.at("vocab_size_with_added").as_int64());
  for (const auto& a : o.at("added_tokens").as_array()) {
    int32_t id = static_cast<int32_t>(a.at("id").as_int64());
    std::string content = Str(a.at("content"));
    EXPECT_EQ(tok().TokenToId(content), id) << content;
    EXPECT_EQ(tok().IdToToken(id), content);
    EXPECT_EQ(tok().IsSpecial(id), a.at("special").as_bool()) << content;
    EXPECT_TRUE(tok().IsAdded(id)) << content;
  }
  // A vocabulary token is not an added one.
  EXPECT_FALSE(tok().IsAdded(0));
}

INSTANTIATE_TEST_SUITE_P(Tok, GoldenTest, ::testing::Values("qwen", "demo"));

TEST(TokDemoFiles, HaveDeepSeekAddedTokens) {
  const Tokenizer& t = Demo();
  const std::pair<int32_t, const char*> expected[] = {
      {151643, "<｜end▁of▁sentence｜>"}, {151644, "<｜User｜>"}, {151645, "<｜Assistant｜>"},
      {151646, "<｜begin▁of▁sentence｜>"}, {151647, "<|EOT|>"}, {151648, "<think>"},
      {151649, "</think>"}, {151664, "<|file_sep|>"}};
  for (const auto& [id, content] : expected) {
    EXPECT_EQ(t.IdToToken(id), content);
    EXPECT_EQ(t.TokenToId(content), id);
  }
  EXPECT_EQ(t.vocab_size(), 151665);
  EXPECT_TRUE(t.IsSpecial(151643));
  EXPECT_FALSE(t.IsSpecial(151648));
  // The Qwen vocabulary is unchanged.
  for (int32_t id : {0, 9707, 1879, 151642}) EXPECT_EQ(t.IdToToken(id), Qwen().IdToToken(id));
}

}  // namespace
}  // namespace r1::tokenizer::testing
