// r1-mkmodel --preset for every DeepSeek-R1 distill writes the published shape. The expected
// values are copied here from the released config.json files, as stored public copies show them:
//   Qwen-7B:   huggingface.co/mlfoundations-dev/DeepSeek-R1-Distill-Qwen-7B_OpenThoughts3
//              config.json (_name_or_path: the deepseek-ai/DeepSeek-R1-Distill-Qwen-7B snapshot
//              916b56a), and ABrain/HPGPT-DeepSeek-R1-Distill-Qwen-7B-R (same values)
//   Qwen-14B:  huggingface.co/neody/r1-14b-awq config.json (_name_or_path: the
//              deepseek-ai/DeepSeek-R1-Distill-Qwen-14B snapshot c79f47a)
//   Qwen-32B:  huggingface.co/AIFunOver/DeepSeek-R1-Distill-Qwen-32B-openvino-8bit config.json
//              (_name_or_path: deepseek-ai/DeepSeek-R1-Distill-Qwen-32B)
//   Llama-8B:  huggingface.co/casperhansen/deepseek-r1-distill-llama-8b-awq config.json
//              (_name_or_path: the deepseek-ai/DeepSeek-R1-Distill-Llama-8B snapshot 2f96d31)
//   Llama-70B: huggingface.co/casperhansen/deepseek-r1-distill-llama-70b-awq config.json
//              (_name_or_path: the deepseek-ai/DeepSeek-R1-Distill-Llama-70B snapshot 07a264a)
// (their quantization_config blocks aside, the files are the originals).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/cli_util.h"
#include "worker/model/config.h"

namespace r1 {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

struct Published {
  const char* preset;
  const char* model_type;
  int64_t vocab, hidden, intermediate, layers, heads, kv_heads;
  int64_t head_dim;  // 0: not in the file
  int64_t max_pos;
  double rope_theta, rms_eps;
  bool llama3;  // rope_scaling {factor 8, low 1, high 4, original 8192, llama3}; else null
};

const Published kPublished[] = {
    {"r1-distill-qwen-7b", "qwen2", 152064, 3584, 18944, 28, 28, 4, 0, 131072, 10000, 1e-6, false},
    {"r1-distill-qwen-14b", "qwen2", 152064, 5120, 13824, 48, 40, 8, 0, 131072, 1e6, 1e-5, false},
    {"r1-distill-qwen-32b", "qwen2", 152064, 5120, 27648, 64, 40, 8, 0, 131072, 1e6, 1e-5, false},
    {"r1-distill-llama-8b", "llama", 128256, 4096, 14336, 32, 32, 8, 128, 131072, 500000, 1e-5, true},
    {"r1-distill-llama-70b", "llama", 128256, 8192, 28672, 80, 64, 8, 128, 131072, 500000, 1e-5, true},
};

using testing::Bin;
using testing::RunCommand;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path TempDir(const std::string& name) {
  return fs::temp_directory_path() / ("r1_presets_" + std::to_string(::getpid()) + "_" + name);
}

TEST(MkmodelPresets, EveryDistillShapeIsThePublishedOne) {
  for (const Published& want : kPublished) {
    SCOPED_TRACE(want.preset);
    fs::path dir = TempDir(want.preset);
    auto r = RunCommand(Bin("r1-mkmodel") + " --preset " + want.preset + " --config-only --out " + dir.string());
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_FALSE(fs::exists(dir / "model.safetensors"));  // --config-only writes no weights
    std::string text = Slurp(dir / "config.json");
    json::object c = json::parse(text).as_object();
    EXPECT_EQ(c.at("model_type").as_string(), want.model_type);
    EXPECT_EQ(c.at("vocab_size").to_number<int64_t>(), want.vocab);
    EXPECT_EQ(c.at("hidden_size").to_number<int64_t>(), want.hidden);
    EXPECT_EQ(c.at("intermediate_size").to_number<int64_t>(), want.intermediate);
    EXPECT_EQ(c.at("num_hidden_layers").to_number<int64_t>(), want.layers);
    EXPECT_EQ(c.at("num_attention_heads").to_number<int64_t>(), want.heads);
    EXPECT_EQ(c.at("num_key_value_heads").to_number<int64_t>(), want.kv_heads);
    EXPECT_EQ(c.at("max_position_embeddings").to_number<int64_t>(), want.max_pos);
    EXPECT_DOUBLE_EQ(c.at("rope_theta").to_number<double>(), want.rope_theta);
    EXPECT_DOUBLE_EQ(c.at("rms_norm_eps").to_number<double>(), want.rms_eps);
    EXPECT_FALSE(c.at("tie_word_embeddings").as_bool());
    if (want.head_dim > 0) EXPECT_EQ(c.at("head_dim").to_number<int64_t>(), want.head_dim);
    if (want.llama3) {
      const json::object& rs = c.at("rope_scaling").as_object();
      EXPECT_EQ(rs.at("rope_type").as_string(), "llama3");
      EXPECT_DOUBLE_EQ(rs.at("factor").to_number<double>(), 8.0);
      EXPECT_DOUBLE_EQ(rs.at("low_freq_factor").to_number<double>(), 1.0);
      EXPECT_DOUBLE_EQ(rs.at("high_freq_factor").to_number<double>(), 4.0);
      EXPECT_EQ(rs.at("original_max_position_embeddings").to_number<int64_t>(), 8192);
      EXPECT_FALSE(c.at("attention_bias").as_bool());
    } else {
      EXPECT_FALSE(c.contains("rope_scaling"));
    }
    // And the worker reads it as that model.
    auto parsed = model::ParseModelConfig(text, "config.json");
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->model_type, want.model_type);
    EXPECT_EQ(parsed->head_dim(), 128);  // every distill's
    EXPECT_EQ(parsed->qkv_bias, std::string(want.model_type) == "qwen2");
    EXPECT_EQ(parsed->rope_scaling.type, want.llama3 ? "llama3" : "default");
    fs::remove_all(dir);
  }
}

TEST(MkmodelPresets, ATokenizerOfTheOtherFamilyIsRefused) {
  const std::string qwen = std::string(std::getenv("R1_SOURCE_DIR")) + "/.cache/tokenizer/tokenizer.json";
  ASSERT_TRUE(fs::exists(qwen)) << qwen << " is missing: run tools/install-deps.sh";
  fs::path dir = TempDir("wrong_tokenizer");
  auto r = RunCommand(Bin("r1-mkmodel") + " --preset tiny-llama --out " + dir.string() + " --tokenizer " + qwen);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, ::testing::HasSubstr("is not the vocabulary of --preset tiny-llama"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));  // refused before any weights
  auto unknown = RunCommand(Bin("r1-mkmodel") + " --preset llama-9000 --out " + dir.string());
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_THAT(unknown.out, ::testing::HasSubstr("r1-distill-llama-70b"));  // lists the presets
  fs::remove_all(dir);
}

}  // namespace
}  // namespace r1
