#include "tools/mkmodel/presets.h"

#include "absl/strings/str_join.h"

namespace r1::mkmodel {
namespace json = boost::json;

namespace {

// Qwen2 presets: the distills' config.json keeps bos and eos at <|endoftext|> (151643);
// generation_config.json starts with <｜begin▁of▁sentence｜> (151646).
Preset Qwen(std::string name, int64_t vocab, int64_t hidden, int64_t inter, int64_t layers,
            int64_t heads, int64_t kv, int64_t max_pos, double theta, double eps, bool tied,
            double init_std) {
  Preset p{std::move(name), "qwen2", vocab, hidden, inter, layers, heads, kv, 0, max_pos,
           theta, eps, tied, init_std};
  p.bos = 151643;
  p.eos = {151643};
  p.gen_bos = 151646;
  p.gen_eos = 151643;
  return p;
}

// Llama presets: Llama 3.1's llama3 RoPE scaling and ids (BOS 128000, EOS 128001).
Preset Llama(std::string name, int64_t vocab, int64_t hidden, int64_t inter, int64_t layers,
             int64_t heads, int64_t kv, int64_t head_dim, double init_std, std::vector<int64_t> eos) {
  Preset p{std::move(name), "llama", vocab, hidden, inter, layers, heads, kv, head_dim, 131072,
           500000.0, 1e-5, false, init_std};
  p.llama3_factor = 8.0;
  p.low_freq_factor = 1.0;
  p.high_freq_factor = 4.0;
  p.original_max_pos = 8192;
  p.bos = 128000;
  p.eos = std::move(eos);
  p.gen_bos = 128000;
  p.gen_eos = 128001;
  return p;
}

}  // namespace

// The distills' shapes are their published config.json files (deepseek-ai/DeepSeek-R1-Distill-*
// on Hugging Face; tests/tools/mkmodel_presets_test.cc names the copies they were read from).
const std::vector<Preset>& Presets() {
  static const auto* presets = new std::vector<Preset>{
      // A few MB with the real Qwen vocabulary, so the demo tokenizer fits.
      Qwen("tiny", 151936, 32, 96, 2, 4, 2, 32768, 10000.0, 1e-6, true, 0.5),
      Qwen("r1-distill-qwen-1.5b", 151936, 1536, 8960, 28, 12, 2, 131072, 10000.0, 1e-6, false, 0.02),
      Qwen("r1-distill-qwen-7b", 152064, 3584, 18944, 28, 28, 4, 131072, 10000.0, 1e-6, false, 0.02),
      Qwen("r1-distill-qwen-14b", 152064, 5120, 13824, 48, 40, 8, 131072, 1e6, 1e-5, false, 0.02),
      Qwen("r1-distill-qwen-32b", 152064, 5120, 27648, 64, 40, 8, 131072, 1e6, 1e-5, false, 0.02),
      Llama("r1-distill-llama-8b", 128256, 4096, 14336, 32, 32, 8, 128, 0.02, {128001}),
      Llama("r1-distill-llama-70b", 128256, 8192, 28672, 80, 64, 8, 128, 0.02,
            {128001, 128008, 128009}),
      // A few MB of Llama with the real Llama 3 vocabulary (the distill's tokenizer fits), an
      // explicit head_dim unlike hidden / heads, and llama3 RoPE: the Llama demo model.
      Llama("tiny-llama", 128256, 32, 96, 2, 4, 2, 16, 0.5, {128001}),
      // Two layers with the distills' head_dim of 128 and a group of 3 query heads per KV head,
      // a small vocabulary (token-id prompts only): the GPU tests' long-context model.
      Qwen("d128-test", 4096, 768, 1536, 2, 6, 2, 65536, 10000.0, 1e-6, false, 0.02),
  };
  return *presets;
}

const Preset* FindPreset(const std::string& name) {
  for (const Preset& p : Presets())
    if (p.name == name) return &p;
  return nullptr;
}

std::string PresetNames() {
  std::vector<std::string> names;
  for (const Preset& p : Presets()) names.push_back(p.name);
  return absl::StrJoin(names, " | ");
}

json::object ConfigJson(const Preset& p, const std::string& dtype_name) {
  json::array eos;
  for (int64_t e : p.eos) eos.push_back(e);
  json::value eos_value = eos.size() == 1 ? json::value(eos[0]) : json::value(eos);
  json::object c{{"attention_dropout", 0.0},
                 {"bos_token_id", p.bos},
                 {"eos_token_id", eos_value},
                 {"hidden_act", "silu"},
                 {"hidden_size", p.hidden},
                 {"initializer_range", 0.02},
                 {"intermediate_size", p.intermediate},
                 {"max_position_embeddings", p.max_pos},
                 {"model_type", p.arch},
                 {"num_attention_heads", p.heads},
                 {"num_hidden_layers", p.layers},
                 {"num_key_value_heads", p.kv_heads},
                 {"rms_norm_eps", p.rms_eps},
                 {"rope_theta", p.rope_theta},
                 {"tie_word_embeddings", p.tied},
                 {"torch_dtype", dtype_name},
                 {"use_cache", true},
                 {"vocab_size", p.vocab}};
  if (p.arch == "qwen2") {
    c["architectures"] = json::array{"Qwen2ForCausalLM"};
    c["max_window_layers"] = p.layers;
    c["sliding_window"] = 4096;
    c["use_sliding_window"] = false;
  } else {
    c["architectures"] = json::array{"LlamaForCausalLM"};
    c["attention_bias"] = false;
    c["mlp_bias"] = false;
    c["head_dim"] = p.Dim();
    c["pretraining_tp"] = 1;
  }
  if (p.llama3_factor > 0) {
    c["rope_scaling"] = json::object{{"factor", p.llama3_factor},
                                     {"high_freq_factor", p.high_freq_factor},
                                     {"low_freq_factor", p.low_freq_factor},
                                     {"original_max_position_embeddings", p.original_max_pos},
                                     {"rope_type", "llama3"}};
  }
  return c;
}

namespace {
// compressed-tensors' W8A8 config for weights and activations of `type` ("int" or "float").
json::object W8A8QuantizationConfig(const char* type, const char* format) {
  auto scheme = [&](const char* strategy, bool dynamic) {
    return json::object{{"actorder", nullptr}, {"block_structure", nullptr}, {"dynamic", dynamic},
                        {"group_size", nullptr}, {"num_bits", 8}, {"observer", dynamic ? nullptr : json::value("minmax")},
                        {"observer_kwargs", json::object{}}, {"strategy", strategy},
                        {"symmetric", true}, {"type", type}};
  };
  json::object group{{"input_activations", scheme("token", true)}, {"output_activations", nullptr},
                     {"targets", json::array{"Linear"}}, {"weights", scheme("channel", false)}};
  return json::object{{"config_groups", json::object{{"group_0", std::move(group)}}},
                      {"format", format},
                      {"global_compression_ratio", nullptr},
                      {"ignore", json::array{"lm_head"}},
                      {"kv_cache_scheme", nullptr},
                      {"quant_method", "compressed-tensors"},
                      {"quantization_status", "compressed"}};
}
}  // namespace

json::object Int8QuantizationConfig() { return W8A8QuantizationConfig("int", "int-quantized"); }
json::object Fp8QuantizationConfig() { return W8A8QuantizationConfig("float", "float-quantized"); }

// What AutoAWQ writes into config.json for a GEMM checkpoint.
json::object AwqQuantizationConfig(int64_t group_size) {
  return json::object{{"bits", 4}, {"group_size", group_size}, {"modules_to_not_convert", nullptr},
                      {"quant_method", "awq"}, {"version", "gemm"}, {"zero_point", true}};
}

json::object GenerationConfigJson(const Preset& p) {
  return json::object{{"bos_token_id", p.gen_bos}, {"eos_token_id", p.gen_eos},
                      {"do_sample", true}, {"temperature", 0.6}, {"top_p", 0.95}};
}

}  // namespace r1::mkmodel
