// Every top-level request field the gateway knows, and what it does with it (issue 13: no
// field is silently ignored). A field is honoured (it changes the output as OpenAI or vLLM
// say), accepted (it changes nothing about the output, as OpenAI and vLLM treat it: store,
// metadata, ...), refused unless it has its default value (a known field r1serve does not
// implement: suffix, best_of > 1, ...), or parsed by the structured-outputs code
// (response_format, logit_bias, min_tokens, the thinking budget, guided_*). A field the
// table does not know is refused as OpenAI refuses it, unless the gateway runs with
// --ignore-unknown-fields (vLLM's behaviour: logged and ignored).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include "common/status.h"
#include "gateway/openai/request.h"

namespace r1::gw {

enum class FieldUse { kHonoured, kAccepted, kRefusedUnlessDefault, kStructured };

struct FieldRule {
  std::string_view name;
  bool chat;        // a field of POST /v1/chat/completions
  bool completion;  // a field of POST /v1/completions
  FieldUse use;
  // kRefusedUnlessDefault: true when the value changes nothing (null is always default).
  bool (*is_default)(const boost::json::value&);
  std::string_view why;  // kRefusedUnlessDefault: the 400's explanation
};

// The whole table, in README order.
const std::vector<FieldRule>& FieldRules();

// Checks every top-level field of a request body. Unknown fields are an error naming the
// field unless `ignore_unknown`, when their names are appended to `ignored`.
absl::Status CheckFields(ApiKind kind, const boost::json::object& body, bool ignore_unknown,
                         std::vector<std::string>* ignored);

}  // namespace r1::gw
