// LoadPromptCodec for builds without the tokenizer library: token-id prompts only.
#include "worker/service/prompt_codec.h"

namespace r1::service {

absl::StatusOr<std::shared_ptr<PromptCodec>> LoadPromptCodec(const std::string&,
                                                              const std::string&) {
  return std::shared_ptr<PromptCodec>();
}

}  // namespace r1::service
