// The model's config.json (and generation_config.json) as a typed struct. Torch-free.
//
// Two architectures share one model code: Qwen2ForCausalLM and LlamaForCausalLM are the same
// decoder (RMSNorm, rotate-half RoPE, GQA attention, SwiGLU) and differ only in what this
// struct says: a q/k/v bias (Qwen2 always, Llama never), the RoPE frequencies (Llama 3's
// "llama3" scaling), head_dim, and defaults of the fields a config.json may leave out.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace r1::model {

// rope_scaling / rope_parameters. "default": plain RoPE; "llama3": Llama 3.1's frequency
// scaling (the fields below, as transformers' _compute_llama3_parameters reads them).
struct RopeScaling {
  std::string type = "default";
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 1.0;
  int64_t original_max_position_embeddings = 0;
};

// How the checkpoint's linear-layer weights are stored (config.json's quantization_config).
//   "none": floating point (no quantization_config).
//   "int8": compressed-tensors W8A8 int8 ("int-quantized"): int8 weights with one scale per
//           output channel (`weight_scale`), activations quantized per token at run time,
//           lm_head and embeddings in floating point. The CPU path runs it (cpu_int8.h).
//   "awq":  AutoAWQ GEMM int4 (quant_method "awq", version "gemm", zero points): per linear
//           layer `qweight` int32 [K, N / 8], `qzeros` int32 [K / group, N / 8] and `scales`
//           [K / group, N]; lm_head and embeddings in floating point. The CPU path converts it
//           to its int4 layout at load (awq.h, cpu_int4.h).
//   "fp8":  compressed-tensors FP8 dynamic ("float-quantized"): F8_E4M3 weights with one scale
//           per output channel (`weight_scale`), activations quantized per token at run time,
//           lm_head and embeddings in floating point. The CUDA path runs it (--quantization fp8).
// Any other quantization_config is refused with what it names (GPTQ, static FP8, other AWQ
// kernels...).
struct CheckpointQuantization {
  std::string kind = "none";
  int64_t group_size = 0;  // "awq": columns of K per scale (32, 64 or 128)
};

struct ModelConfig {
  std::string model_type;  // "qwen2" or "llama" once validated
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t max_position_embeddings = 0;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  // q_proj, k_proj and v_proj have a bias (Qwen2: always; Llama: never, attention_bias=true
  // is refused because it biases o_proj too).
  bool qkv_bias = true;
  // config.json's head_dim; 0 when absent (then hidden_size / num_attention_heads).
  int64_t explicit_head_dim = 0;
  std::string torch_dtype;  // as written in config.json ("bfloat16", ...), may be empty
  int32_t bos_token_id = -1;
  // End-of-sequence ids: generation_config.json's eos_token_id when present, else config.json's.
  std::vector<int32_t> eos_token_ids;
  CheckpointQuantization quantization;

  int64_t head_dim() const {
    return explicit_head_dim > 0 ? explicit_head_dim : hidden_size / num_attention_heads;
  }
};

// Parses config.json text. `source` names the file in error messages.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json, const std::string& source);
// Reads DIR/config.json and, when present, DIR/generation_config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);

}  // namespace r1::model
