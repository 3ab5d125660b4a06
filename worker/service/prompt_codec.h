// The worker's tokenizer side: prompts (text or chat) to token ids, and incremental
// detokenization for the engine. Absent (null) when the checkpoint has no tokenizer files;
// token-id prompts still work then.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/engine/engine.h"

namespace r1::tokenizer {
class Tokenizer;
}

namespace r1::service {

struct ChatTurn {
  std::string role;
  std::string content;
};

class PromptCodec {
 public:
  virtual ~PromptCodec() = default;
  virtual absl::StatusOr<std::vector<int32_t>> EncodeText(const std::string& text) = 0;
  // Renders the chat template (ending in the assistant's turn) and encodes it.
  virtual absl::StatusOr<std::vector<int32_t>> EncodeChat(const std::vector<ChatTurn>& chat) = 0;
  virtual std::shared_ptr<engine::TextCodec> text_codec() = 0;
  // The tokenizer itself (the grammar vocabulary and the thought's tokens are made from it);
  // null for codecs without one (test fakes).
  virtual const tokenizer::Tokenizer* tokenizer() const { return nullptr; }
};

// Loads DIR's tokenizer and chat template (--chat-template auto|deepseek-r1|chatml). Returns
// null when DIR has no tokenizer.json.
absl::StatusOr<std::shared_ptr<PromptCodec>> LoadPromptCodec(const std::string& dir,
                                                              const std::string& chat_template);

}  // namespace r1::service
