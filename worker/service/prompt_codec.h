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

struct ChatToolCall {
  std::string name, arguments;  // arguments: JSON text
};

struct ChatTurn {
  std::string role;
  std::string content;
  bool has_content = true;  // false: an assistant turn that only calls tools
  std::vector<ChatToolCall> tool_calls;
};

class PromptCodec {
 public:
  virtual ~PromptCodec() = default;
  virtual absl::StatusOr<std::vector<int32_t>> EncodeText(const std::string& text) = 0;
  // Renders the chat template (ending in the assistant's turn), with the tools array (JSON
  // text, "" for none), and encodes it.
  virtual absl::StatusOr<std::vector<int32_t>> EncodeChat(const std::vector<ChatTurn>& chat,
                                                          const std::string& tools_json) = 0;
  // Ids to text, special tokens kept. InvalidArgument for an id outside the vocabulary.
  virtual absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) = 0;
  virtual std::shared_ptr<engine::TextCodec> text_codec() = 0;
  // The chat template's name ("" when none was recognised) and whether it renders tools.
  virtual std::string chat_template_name() const = 0;
  virtual bool supports_tools() const = 0;
  // The tokenizer itself (the grammar vocabulary and the thought's tokens are made from it);
  // null for codecs without one (test fakes).
  virtual const tokenizer::Tokenizer* tokenizer() const { return nullptr; }
};

// Loads DIR's tokenizer and chat template (--chat-template auto|deepseek-r1|chatml). Returns
// null when DIR has no tokenizer.json.
absl::StatusOr<std::shared_ptr<PromptCodec>> LoadPromptCodec(const std::string& dir,
                                                              const std::string& chat_template);

}  // namespace r1::service
