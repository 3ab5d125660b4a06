// Tokenizer files for demo checkpoints (r1-mkmodel): the Qwen vocabulary and merges of the npm
// package's tokenizer.json with DeepSeek-R1-Distill-Qwen's added tokens, and a
// tokenizer_config.json with the real DeepSeek-R1-Distill-Qwen-1.5B chat template, so a demo
// model speaks the real model's format.
#pragma once

#include <string>

#include "common/status.h"

namespace r1::tokenizer {

// Writes out_dir/tokenizer.json and out_dir/tokenizer_config.json (out_dir must exist).
absl::Status WriteDemoTokenizerFiles(const std::string& qwen_tokenizer_json,
                                     const std::string& out_dir);

}  // namespace r1::tokenizer
