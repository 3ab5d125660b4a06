// Splits model output into reasoning and answer, as vLLM's deepseek_r1 reasoning parser does:
// text up to "</think>" is reasoning_content, the rest is content. The opening "<think>" is
// usually part of the prompt; when the model emits it, it is dropped. Works on streamed
// pieces: a "</think>" split across pieces is still found.
#pragma once

#include <string>
#include <string_view>

namespace r1::gw {

struct SplitText {
  std::string reasoning;
  std::string content;
};

class ReasoningSplitter {
 public:
  // With enabled=false everything is content.
  explicit ReasoningSplitter(bool enabled) : enabled_(enabled), in_reasoning_(enabled) {}
  // The reasoning and content made available by one more piece of output.
  SplitText Feed(std::string_view text);
  // Whatever was held back at the end of the output.
  SplitText Finish();
  bool enabled() const { return enabled_; }
  // True once "</think>" was seen.
  bool saw_end() const { return enabled_ && !in_reasoning_; }

 private:
  bool enabled_;
  bool in_reasoning_;
  std::string pending_;  // a possible prefix of "</think>" at the end of what was fed
};

}  // namespace r1::gw
