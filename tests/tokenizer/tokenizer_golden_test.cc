// Goldens made by Hugging Face tokenizers (make_tokenizer_fixtures.py on the GPU machine):
// encodings of every hard string, decodings, and streaming detokenization, with the npm Qwen
// tokenizer.json, the demo DeepSeek-R1-Distill(-Qwen) tokenizer.json that our
// WriteDemoTokenizerFiles writes, the npm Llama 3.1 tokenizer.json and the
// DeepSeek-R1-Distill-Llama tokenizer.json WriteDemoTokenizerFiles makes from it. Until the Llama
// goldens are made, their tests fail naming the missing file.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "tests/tokenizer/test_util.h"
#include "worker/tokenizer/detokenizer.h"
#include "worker/tokenizer/utf8.h"

namespace r1::tokenizer::testing {

namespace json = boost::json;

namespace {

// A tokenizer read once per path and kept for the whole test program.
const Tokenizer& Cached(const std::string& path) {
  static auto* cache = new std::map<std::string, std::unique_ptr<Tokenizer>>();
  auto& slot = (*cache)[path];
  if (!slot) {
    auto r = Tokenizer::FromPath(path);
    if (!r.ok()) {
      ADD_FAILURE() << r.status() << " (run tools/install-deps.sh to fetch the npm tokenizers)";
      std::abort();
    }
    slot = std::move(*r);
  }
  return *slot;
}

std::vector<std::string>& DemoDirs() {
  static auto* dirs = new std::vector<std::string>();  // never destroyed: the atexit hook reads it
  return *dirs;
}

// The demo tokenizer files made from `base` by WriteDemoTokenizerFiles, in a temp directory
// removed when the test program exits.
std::string WriteDemoDir(const std::string& base) {
  static const bool registered =
      (std::atexit([] { for (const auto& d : DemoDirs()) std::filesystem::remove_all(d); }), true);
  (void)registered;
  char tmpl[] = "/tmp/r1_demo_tokenizer_XXXXXX";
  char* d = mkdtemp(tmpl);
  if (!d) std::abort();
  DemoDirs().push_back(d);
  absl::Status s = WriteDemoTokenizerFiles(base, d);
  if (!s.ok()) {
    ADD_FAILURE() << s;
    std::abort();
  }
  return d;
}

}  // namespace

const Tokenizer& Qwen() { return Cached(QwenTokenizerPath()); }
const std::string& DemoDir() {
  static const std::string dir = WriteDemoDir(QwenTokenizerPath());
  return dir;
}
const Tokenizer& Demo() { return Cached(DemoDir()); }
const Tokenizer& Llama() { return Cached(LlamaTokenizerPath()); }
const std::string& LlamaDistillDir() {
  static const std::string dir = WriteDemoDir(LlamaTokenizerPath());
  return dir;
}
const Tokenizer& LlamaDistill() { return Cached(LlamaDistillDir()); }

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

bool IsLlama(const std::string& which) { return which.rfind("llama", 0) == 0; }

// Why goldens_<which>.json cannot be read yet ("" when it can).
std::string MissingGolden(const std::string& which) {
  return MissingLlamaFixture(FixtureDir() + "/goldens_" + which + ".json");
}

Golden LoadGolden(const std::string& which) {
  Golden g;
  // The Llama goldens cover strings_llama.json too, after strings.json.
  std::vector<std::string> files = {"/strings.json"};
  if (IsLlama(which)) files.push_back("/strings_llama.json");
  for (const std::string& f : files) {
    json::value strings = ReadJson(FixtureDir() + f);
    for (const auto& s : strings.at("strings").as_array()) {
      g.names.push_back(Str(s.at("name")));
      g.texts.push_back(Str(s.at("text")));
    }
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
  void SetUp() override {
    if (std::string why = MissingGolden(GetParam()); !why.empty()) GTEST_FAIL() << why;
  }
  const Tokenizer& tok() const {
    const std::string& w = GetParam();
    return w == "qwen" ? Qwen() : w == "demo" ? Demo() : w == "llama" ? Llama() : LlamaDistill();
  }
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

INSTANTIATE_TEST_SUITE_P(Tok, GoldenTest,
                         ::testing::Values("qwen", "demo", "llama", "llama_distill"));

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

// DeepSeek-R1-Distill-Llama-8B's added tokens as transformers 4.48.2 lists them for the real
// checkpoint (its LlamaTokenizerFast added_tokens_decoder, in a stored public course note that
// loads ./DeepSeek-R1-Distill-Llama-8B): DeepSeek's tokens in Llama 3.1's special ids.
TEST(TokLlamaDistillFiles, HaveDeepSeekTokensInLlamaIds) {
  const Tokenizer& t = LlamaDistill();
  const std::tuple<int32_t, const char*, bool> expected[] = {
      {128000, "<｜begin▁of▁sentence｜>", true}, {128001, "<｜end▁of▁sentence｜>", true},
      {128002, "<|reserved_special_token_0|>", true}, {128004, "<|finetune_right_pad_id|>", true},
      {128005, "<|reserved_special_token_2|>", true}, {128009, "<|eot_id|>", true},
      {128010, "<|python_tag|>", true}, {128011, "<｜User｜>", false},
      {128012, "<｜Assistant｜>", false}, {128013, "<think>", false}, {128014, "</think>", false},
      {128015, "<｜▁pad▁｜>", true}, {128016, "<|reserved_special_token_8|>", true},
      {128250, "<|reserved_special_token_242|>", true}, {128255, "<|reserved_special_token_247|>", true}};
  for (const auto& [id, content, special] : expected) {
    EXPECT_EQ(t.IdToToken(id), content) << id;
    EXPECT_EQ(t.TokenToId(content), id) << content;
    EXPECT_EQ(t.IsSpecial(id), special) << content;
    EXPECT_TRUE(t.IsAdded(id)) << content;
  }
  EXPECT_EQ(t.vocab_size(), 128256);
  // Llama 3's own names for the ids DeepSeek took are plain text now.
  EXPECT_FALSE(t.TokenToId("<|begin_of_text|>"));
  EXPECT_GT(t.Encode("<|reserved_special_token_3|>")->size(), 1u);
  // The Llama 3 vocabulary is unchanged.
  for (int32_t id : {0, 15225, 127999}) EXPECT_EQ(t.IdToToken(id), Llama().IdToToken(id));
}

TEST(TokLlamaDistillFiles, EncodeAsTransformersDidOnTheRealCheckpoint) {
  // The same course note prints tokenizer(["请问如何证明根号2是无理数？"]) for the real
  // checkpoint: BOS (128000, added by its post-processor) and these ids.
  EXPECT_EQ(*LlamaDistill().Encode("请问如何证明根号2是无理数？"),
            (std::vector<int32_t>{15225, 57107, 109425, 125544, 102831, 18476, 17, 21043, 43292,
                                  22649, 9039, 11571}));
  EXPECT_EQ(LlamaDistill().TokenToId("<｜begin▁of▁sentence｜>"), 128000);
}

}  // namespace
}  // namespace r1::tokenizer::testing
