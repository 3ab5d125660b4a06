// The model's config.json (and generation_config.json) as a typed struct. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace r1::model {

struct ModelConfig {
  std::string model_type;  // always "qwen2" once validated
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t max_position_embeddings = 0;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  std::string torch_dtype;  // as written in config.json ("bfloat16", ...), may be empty
  int32_t bos_token_id = -1;
  // End-of-sequence ids: generation_config.json's eos_token_id when present, else config.json's.
  std::vector<int32_t> eos_token_ids;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

// Parses config.json text. `source` names the file in error messages.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json, const std::string& source);
// Reads DIR/config.json and, when present, DIR/generation_config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);

}  // namespace r1::model
