// Finds the tool calls in a chat answer (the content after the reasoning), for the two
// formats the known chat templates teach:
//   ChatML (Qwen, Hermes):  <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
//   DeepSeek-R1:            <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f
//                           \n```json\n{...}\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
// As vLLM's hermes and deepseek_v3 parsers: the text before the first call is content; from
// the first call on, the output is calls. Works on streamed pieces (a marker split across
// pieces is held back until it is known). A call that does not parse is given back as
// content, so no output is lost.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace r1::gw {

struct ParsedToolCall {
  int index = 0;
  std::string id;
  std::string name;
  std::string arguments;  // JSON text
};

struct ToolDelta {
  std::string content;
  std::vector<ParsedToolCall> calls;  // completed since the last piece
};

class ToolCallParser {
 public:
  // Disabled: everything is content. `new_id` names each call ("call_...").
  ToolCallParser(bool enabled, std::function<std::string()> new_id);
  ToolDelta Feed(std::string_view text);
  // The end of the output: a call left open is given back as content.
  ToolDelta Finish();
  bool enabled() const { return enabled_; }
  int num_calls() const { return calls_; }

 private:
  void ScanCalls(ToolDelta* out);
  bool ParseCall(std::string_view body, bool deepseek, ParsedToolCall* call) const;

  bool enabled_;
  std::function<std::string()> new_id_;
  bool in_calls_ = false;  // a call marker was seen: the rest is calls
  std::string pending_;
  int calls_ = 0;
};

}  // namespace r1::gw
