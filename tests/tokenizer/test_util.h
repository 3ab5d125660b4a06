// Shared helpers for the tokenizer tests: fixture paths and loading.
#pragma once

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "worker/tokenizer/demo_files.h"
#include "worker/tokenizer/tokenizer.h"

namespace r1::tokenizer::testing {

inline std::string SourceDir() {
  const char* d = std::getenv("R1_SOURCE_DIR");
  return d ? d : ".";
}

inline std::string QwenTokenizerPath() { return SourceDir() + "/.cache/tokenizer/tokenizer.json"; }
inline std::string LlamaTokenizerPath() {
  return SourceDir() + "/.cache/tokenizer/llama3_1/tokenizer.json";
}
inline std::string FixtureDir() { return SourceDir() + "/tests/fixtures/tokenizer"; }

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline boost::json::value ReadJson(const std::string& path) {
  std::string text = ReadAll(path);
  if (text.empty()) ADD_FAILURE() << "missing or empty fixture " << path;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec) ADD_FAILURE() << path << ": " << ec.message();
  return v;
}

// Why a Llama fixture file cannot be read yet ("" when it exists): those are made by one run on
// the GPU machine, and their tests fail until then.
inline std::string MissingLlamaFixture(const std::string& path) {
  if (std::ifstream(path).good()) return "";
  return path + " is missing: make it on the GPU machine with `bash " +
         "tests/fixtures/make_llama_fixtures.sh OUT`, then `tar -xzf OUT/llama_fixtures.tar.gz` " +
         "in the repository root";
}

// The npm Qwen tokenizer (tools/install-deps.sh puts it in .cache/tokenizer/).
const Tokenizer& Qwen();
// The demo DeepSeek-R1-Distill(-Qwen) tokenizer, written by WriteDemoTokenizerFiles to a temp dir.
const Tokenizer& Demo();
const std::string& DemoDir();
// The npm Llama 3.1 tokenizer (.cache/tokenizer/llama3_1/) and the DeepSeek-R1-Distill-Llama
// tokenizer WriteDemoTokenizerFiles makes from it.
const Tokenizer& Llama();
const Tokenizer& LlamaDistill();
const std::string& LlamaDistillDir();

}  // namespace r1::tokenizer::testing
