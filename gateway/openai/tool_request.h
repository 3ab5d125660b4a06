// The request side of tool calling (chat): "tools", "tool_choice" and "parallel_tool_calls",
// validated as vLLM validates them, into GenParams (the tools travel to the worker as JSON
// text, which its chat template renders).
#pragma once

#include <boost/json/object.hpp>

#include "common/status.h"
#include "gateway/openai/request.h"

namespace r1::gw {

absl::Status ParseTools(const boost::json::object& body, GenParams* p);

}  // namespace r1::gw
