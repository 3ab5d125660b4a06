// Loading checkpoints: config.json and safetensors, and every way they can be broken.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "worker/model/config.h"
#include "worker/model/safetensors.h"
#include "worker/model/safetensors_writer.h"

namespace r1::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const char* kConfig = R"({"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2",
  "vocab_size":100,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":2,
  "num_attention_heads":4,"num_key_value_heads":2,"rope_theta":500000.0,"rms_norm_eps":1e-5,
  "tie_word_embeddings":true,"eos_token_id":[7,9],"torch_dtype":"bfloat16"})";

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("r1ck_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(ConfigTest, ParsesQwen2Fields) {
  auto c = ParseModelConfig(kConfig, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 100);
  EXPECT_EQ(c->head_dim(), 4);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_THAT(c->eos_token_ids, ::testing::ElementsAre(7, 9));
}

TEST(ConfigTest, ReadsTransformers5RopeParameters) {
  std::string text = R"({"model_type":"qwen2","vocab_size":10,"hidden_size":8,
    "intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,
    "rope_parameters":{"rope_theta":1000000.0,"rope_type":"default"}})";
  auto c = ParseModelConfig(text, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->num_key_value_heads, 2);  // absent: one per attention head
}

TEST(ConfigTest, RefusesOtherArchitecturesNamingThem) {
  auto c = ParseModelConfig(R"({"model_type":"mistral","architectures":["MistralForCausalLM"]})",
                            "x/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("mistral"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("MistralForCausalLM"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("x/config.json"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("LlamaForCausalLM (model_type llama)"));
  // model_type and architectures must agree.
  auto mixed = ParseModelConfig(R"({"model_type":"qwen2","architectures":["LlamaForCausalLM"]})",
                                "x/config.json");
  ASSERT_FALSE(mixed.ok());
  EXPECT_THAT(std::string(mixed.status().message()), HasSubstr("unsupported model"));
}

// deepseek-ai/DeepSeek-R1-Distill-Llama-8B's config.json, as the stored copy in
// huggingface.co/casperhansen/deepseek-r1-distill-llama-8b-awq shows it (its quantization_config
// left out).
const char* kLlama8B = R"({"architectures":["LlamaForCausalLM"],"attention_bias":false,
  "attention_dropout":0.0,"bos_token_id":128000,"eos_token_id":128001,"head_dim":128,
  "hidden_act":"silu","hidden_size":4096,"initializer_range":0.02,"intermediate_size":14336,
  "max_position_embeddings":131072,"mlp_bias":false,"model_type":"llama",
  "num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,"pretraining_tp":1,
  "rms_norm_eps":1e-05,"rope_scaling":{"factor":8.0,"high_freq_factor":4.0,"low_freq_factor":1.0,
  "original_max_position_embeddings":8192,"rope_type":"llama3"},"rope_theta":500000.0,
  "tie_word_embeddings":false,"torch_dtype":"bfloat16","transformers_version":"4.47.1",
  "use_cache":false,"vocab_size":128256})";

TEST(ConfigTest, ParsesTheLlamaDistillConfig) {
  auto c = ParseModelConfig(kLlama8B, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_EQ(c->head_dim(), 128);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_EQ(c->rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c->rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c->rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_THAT(c->eos_token_ids, ::testing::ElementsAre(128001));
}

TEST(ConfigTest, LlamaFieldsLeftOutTakeLlamaConfigDefaults) {
  // transformers' LlamaConfig: max_position_embeddings 2048, head_dim hidden / heads, one KV
  // head per head, plain RoPE, no bias. An explicit head_dim need not divide hidden_size.
  auto c = ParseModelConfig(R"({"model_type":"llama","vocab_size":10,"hidden_size":8,
    "intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2})", "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_EQ(c->head_dim(), 4);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->rope_scaling.type, "default");
  EXPECT_FALSE(c->qkv_bias);
  auto wide = ParseModelConfig(R"({"architectures":["LlamaForCausalLM"],"vocab_size":10,
    "hidden_size":10,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":3,
    "num_key_value_heads":1,"head_dim":6})", "config.json");
  ASSERT_TRUE(wide.ok()) << wide.status();
  EXPECT_EQ(wide->head_dim(), 6);
  EXPECT_EQ(wide->model_type, "llama");
}

TEST(ConfigTest, ReadsTransformers5Llama3RopeParameters) {
  auto c = ParseModelConfig(R"({"model_type":"llama","vocab_size":10,"hidden_size":8,
    "intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,
    "rope_parameters":{"rope_type":"llama3","rope_theta":250000.0,"factor":4.0,
    "low_freq_factor":1.0,"high_freq_factor":2.0,"original_max_position_embeddings":1024}})",
                            "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->rope_theta, 250000.0);
  EXPECT_EQ(c->rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 4.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 1024);
}

TEST(ConfigTest, LlamaVariantsWeDoNotServeAreNamed) {
  const std::string head = R"({"model_type":"llama","vocab_size":10,"hidden_size":8,
    "intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,)";
  struct Case {
    std::string fields, message;
  } cases[] = {
      {R"("attention_bias":true)", "attention_bias=true is not supported"},
      {R"("mlp_bias":true)", "mlp_bias=true is not supported"},
      {R"("hidden_act":"gelu")", "hidden_act \"gelu\" is not supported"},
      {R"("partial_rotary_factor":0.5)", "partial_rotary_factor 0.5 is not supported"},
      {R"("rope_scaling":{"rope_type":"dynamic","factor":2.0})",
       "unsupported RoPE type \"dynamic\" in \"rope_scaling\" (supported: default, llama3)"},
      {R"("rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0})",
       "\"rope_scaling\": missing field \"original_max_position_embeddings\""},
      {R"("rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":4.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192})",
       "high_freq_factor 4 must be greater than low_freq_factor 4"},
      {R"("head_dim":5)", "head dimension 5 must be even"},
  };
  for (const Case& c : cases) {
    auto r = ParseModelConfig(head + c.fields + "}", "l/config.json");
    ASSERT_FALSE(r.ok()) << c.fields;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.message)) << c.fields;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("l/config.json")) << c.fields;
  }
}

TEST(ConfigTest, MissingAndBadFieldsAreNamed) {
  auto missing = ParseModelConfig(R"({"model_type":"qwen2","vocab_size":10})", "c.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("missing field \"hidden_size\""));
  auto bad = ParseModelConfig(R"({"model_type":"qwen2","vocab_size":"many"})", "c.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("\"vocab_size\" must be a positive integer"));
  auto heads = ParseModelConfig(R"({"model_type":"qwen2","vocab_size":10,"hidden_size":10,
    "intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":3})", "c.json");
  ASSERT_FALSE(heads.ok());
  EXPECT_THAT(std::string(heads.status().message()), HasSubstr("not a multiple of num_attention_heads"));
  auto rope = ParseModelConfig(R"({"model_type":"qwen2","vocab_size":10,"hidden_size":8,
    "intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,
    "rope_scaling":{"type":"yarn","factor":4}})", "c.json");
  ASSERT_FALSE(rope.ok());
  EXPECT_THAT(std::string(rope.status().message()), HasSubstr("unsupported RoPE type \"yarn\""));
  auto json = ParseModelConfig("{not json", "c.json");
  ASSERT_FALSE(json.ok());
  EXPECT_THAT(std::string(json.status().message()), HasSubstr("invalid JSON"));
}

TEST(ConfigTest, GenerationConfigEosWins) {
  TempDir d;
  WriteText(d.File("config.json"), kConfig);
  WriteText(d.File("generation_config.json"), R"({"eos_token_id": 3, "bos_token_id": 5})");
  auto c = LoadModelConfig(d.str());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(c->eos_token_ids, ::testing::ElementsAre(3));
  EXPECT_EQ(c->bos_token_id, 5);
  auto none = LoadModelConfig(d.File("nowhere"));
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("does not exist"));
}

// A small valid file: a [2,3] F32 tensor "a" and a [4] BF16 tensor "b".
std::string WriteSmall(const TempDir& d, const std::string& name = "model.safetensors") {
  std::vector<TensorSpec> specs = {{"a", DType::kF32, {2, 3}}, {"b", DType::kBF16, {4}}};
  auto s = WriteSafetensors(d.File(name), specs, [&](size_t i, void* buf) {
    if (i == 0) {
      float v[6] = {1, 2, 3, 4, 5, 6};
      std::memcpy(buf, v, sizeof v);
    } else {
      std::memset(buf, 0x3f, 8);
    }
  });
  EXPECT_TRUE(s.ok()) << s;
  return d.File(name);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(SafetensorsTest, RoundTripsWhatTheWriterWrote) {
  TempDir d;
  WriteSmall(d);
  auto ck = Checkpoint::Open(d.str());
  ASSERT_TRUE(ck.ok()) << ck.status();
  auto a = (*ck)->GetShaped("a", {2, 3});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->dtype, DType::kF32);
  EXPECT_EQ(static_cast<const float*>((*a)->data)[5], 6.f);
  EXPECT_EQ((*ck)->total_bytes(), 24u + 8u);
}

TEST(SafetensorsTest, TruncatedFileNamesFileAndTensor) {
  TempDir d;
  std::string path = WriteSmall(d);
  std::string bytes = ReadAll(path);
  WriteText(path, bytes.substr(0, bytes.size() - 4));
  auto f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("tensor b"));
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("truncated"));
  WriteText(path, "abc");
  EXPECT_THAT(std::string(SafetensorsFile::Open(path).status().message()), HasSubstr("truncated"));
}

TEST(SafetensorsTest, CorruptHeaderIsAnError) {
  TempDir d;
  std::string path = WriteSmall(d);
  std::string bytes = ReadAll(path);
  bytes[8] = '#';  // the JSON header's opening brace
  WriteText(path, bytes);
  auto f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("corrupt header"));
  // A header length larger than the file.
  uint64_t huge = 1ull << 40;
  std::memcpy(bytes.data(), &huge, 8);
  WriteText(path, bytes);
  EXPECT_THAT(std::string(SafetensorsFile::Open(path).status().message()), HasSubstr("header length"));
}

TEST(SafetensorsTest, UnsupportedDtypeAndBadSizeAreNamed) {
  TempDir d;
  std::string header = R"({"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})";
  std::string body(8, '\0');
  uint64_t n = header.size();
  std::string bytes(reinterpret_cast<const char*>(&n), 8);
  WriteText(d.File("model.safetensors"), bytes + header + body);
  auto f = SafetensorsFile::Open(d.File("model.safetensors"));
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("tensor x: unsupported dtype I64"));
  header = R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
  n = header.size();
  bytes.assign(reinterpret_cast<const char*>(&n), 8);
  WriteText(d.File("model.safetensors"), bytes + header + body);
  f = SafetensorsFile::Open(d.File("model.safetensors"));
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("needs 12 bytes"));
}

TEST(SafetensorsTest, MissingTensorAndWrongShapeAreNamed) {
  TempDir d;
  WriteSmall(d);
  auto ck = Checkpoint::Open(d.str());
  ASSERT_TRUE(ck.ok());
  auto missing = (*ck)->Get("lm_head.weight");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("no tensor lm_head.weight"));
  auto shape = (*ck)->GetShaped("a", {3, 2});
  ASSERT_FALSE(shape.ok());
  EXPECT_THAT(std::string(shape.status().message()), HasSubstr("tensor a"));
  EXPECT_THAT(std::string(shape.status().message()), HasSubstr("[2, 3]"));
  EXPECT_THAT(std::string(shape.status().message()), HasSubstr("expected [3, 2]"));
}

TEST(SafetensorsTest, ShardedIndexIsFollowedAndChecked) {
  TempDir d;
  WriteSmall(d, "part-1.safetensors");
  WriteText(d.File("model.safetensors.index.json"),
            R"({"weight_map":{"a":"part-1.safetensors","b":"part-1.safetensors"}})");
  auto ck = Checkpoint::Open(d.str());
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_TRUE((*ck)->Has("b"));
  WriteText(d.File("model.safetensors.index.json"),
            R"({"weight_map":{"a":"part-1.safetensors","c":"part-1.safetensors"}})");
  auto bad = Checkpoint::Open(d.str());
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("does not have it"));
  WriteText(d.File("model.safetensors.index.json"), R"({"weight_map":{"a":"part-2.safetensors"}})");
  EXPECT_THAT(std::string(Checkpoint::Open(d.str()).status().message()), HasSubstr("cannot open"));
  WriteText(d.File("model.safetensors.index.json"), R"({"weight_map":{"a":"../etc/x"}})");
  EXPECT_THAT(std::string(Checkpoint::Open(d.str()).status().message()), HasSubstr("plain file name"));
}

TEST(SafetensorsTest, EmptyDirectoryIsAnError) {
  TempDir d;
  auto ck = Checkpoint::Open(d.str());
  ASSERT_FALSE(ck.ok());
  EXPECT_THAT(std::string(ck.status().message()), HasSubstr("no model.safetensors"));
}

}  // namespace
}  // namespace r1::model
