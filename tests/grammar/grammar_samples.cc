// Writes random walks of every case of cases.json over the real Qwen vocabulary to a JSON file:
//   {"cases": [{...the case..., "outputs": ["text", ...]}]}
// validate_samples.mjs then checks each output with ajv (JSON Schema 2020-12), JSON.parse, a
// RegExp or the choice list: the reference for what the grammar generates. Exits 1 when a walk
// does not end with end-of-sequence.
#include <fstream>
#include <iostream>
#include <random>

#include <boost/json.hpp>

#include "common/flags.h"
#include "worker/grammar/compiler.h"
#include "worker/grammar/random_walk.h"
#include "worker/grammar/test_cases.h"
#include "worker/tokenizer/tokenizer.h"

namespace json = boost::json;
using namespace r1::grammar;

int main(int argc, char** argv) {
  r1::Flags flags("grammar_samples", "Random walks of the grammar test cases, for ajv.");
  std::string* tokenizer = flags.String("tokenizer", ".cache/tokenizer/tokenizer.json", "tokenizer.json");
  std::string* cases = flags.String("cases", "tests/grammar/cases.json", "the test cases");
  std::string* out_path = flags.String("out", "", "output JSON file (required)");
  int64_t* walks = flags.Int("walks", 40, "walks per case");
  int64_t* vocab_size = flags.Int("vocab-size", 151936, "the model's vocabulary size");
  int64_t* eos = flags.Int("eos", 151643, "end-of-sequence token id");
  int64_t* seed = flags.Int("seed", 1, "random seed");
  flags.ParseOrExit(argc, argv);
  if (out_path->empty()) flags.Fail("--out is required");

  auto tok = r1::tokenizer::Tokenizer::FromPath(*tokenizer);
  if (!tok.ok()) flags.Fail(std::string(tok.status().message()));
  auto vocab = TokenVocabulary::FromTokenizer(**tok, *vocab_size);
  if (!vocab.ok()) flags.Fail(std::string(vocab.status().message()));
  auto doc = LoadTestCases(*cases);
  if (!doc.ok()) flags.Fail(std::string(doc.status().message()));

  GrammarCompiler compiler(*vocab);
  std::mt19937_64 rng(static_cast<uint64_t>(*seed));
  json::array out_cases;
  int failures = 0;
  for (const auto& c : doc->at("cases").as_array()) {
    json::object tc = c.as_object();
    const std::string name(tc.at("name").as_string());
    auto g = CompileTestCase(compiler, tc);
    if (!g.ok()) {
      std::cerr << name << ": " << g.status() << "\n";
      ++failures;
      continue;
    }
    json::array outputs;
    for (int64_t w = 0; w < *walks; ++w) {
      GrammarMatcher m(*g, {static_cast<int32_t>(*eos)});
      WalkOptions opt;
      opt.max_tokens = 10 + static_cast<int>(w % 8) * 25;  // short and long texts
      WalkResult r = RandomWalk(m, static_cast<int32_t>(*eos), rng, opt);
      if (!r.complete) {
        std::cerr << name << ": walk " << w << " did not complete: \"" << r.text << "\"\n";
        ++failures;
        continue;
      }
      outputs.emplace_back(r.text);
    }
    tc["outputs"] = std::move(outputs);
    out_cases.push_back(std::move(tc));
  }
  std::ofstream out(*out_path);
  out << json::serialize(json::object{{"cases", std::move(out_cases)}}) << "\n";
  if (!out) flags.Fail("cannot write " + *out_path);
  return failures ? 1 : 0;
}
