// r1-mkmodel's presets: the shapes of the DeepSeek-R1 distills (and small test shapes), and
// the config.json / generation_config.json each one writes. Torch-free.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace r1::mkmodel {

struct Preset {
  std::string name;
  std::string arch;  // "qwen2" or "llama"
  int64_t vocab, hidden, intermediate, layers, heads, kv_heads;
  int64_t head_dim;  // written to config.json when > 0 (Llama); else hidden / heads
  int64_t max_pos;
  double rope_theta, rms_eps;
  bool tied;
  double init_std;
  // Llama 3.1's rope_scaling ("llama3") when llama3_factor > 0.
  double llama3_factor = 0, low_freq_factor = 0, high_freq_factor = 0;
  int64_t original_max_pos = 0;
  // config.json's bos / eos, generation_config.json's bos / eos (as the released model has them).
  int64_t bos = 0;
  std::vector<int64_t> eos = {};
  int64_t gen_bos = 0, gen_eos = 0;

  int64_t Dim() const { return head_dim > 0 ? head_dim : hidden / heads; }
  bool qkv_bias() const { return arch == "qwen2"; }
};

// Every preset, in the order --help lists them.
const std::vector<Preset>& Presets();
// The preset called `name`, or null.
const Preset* FindPreset(const std::string& name);
// "tiny | r1-distill-qwen-1.5b | ..." for --help.
std::string PresetNames();

boost::json::object ConfigJson(const Preset& p, const std::string& dtype_name);
boost::json::object GenerationConfigJson(const Preset& p);
// config.json's quantization_config for an int8 checkpoint: compressed-tensors W8A8, as
// llm-compressor writes it (int8 channel-wise weights, dynamic per-token int8 activations,
// lm_head not quantized).
boost::json::object Int8QuantizationConfig();
// compressed-tensors FP8 dynamic, as RedHatAI publishes the R1 distills: "float-quantized",
// e4m3 weights per channel, activations e4m3 per token at run time, lm_head ignored.
boost::json::object Fp8QuantizationConfig();
// AutoAWQ GEMM int4 (4 bits, zero points) in groups of `group_size` input columns.
boost::json::object AwqQuantizationConfig(int64_t group_size);

}  // namespace r1::mkmodel
