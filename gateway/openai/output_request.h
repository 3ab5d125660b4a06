// The output constraints of an OpenAI request: the answer's format (issue 14: response_format;
// vLLM's guided_json, guided_regex, guided_choice and structured_outputs), logit_bias,
// min_tokens and the thinking budget (issue 13: thinking_token_budget, or
// max_reasoning_tokens). Their shape and ranges are checked here (a 400 naming the field);
// the format itself is compiled by the worker, the one place that knows its --grammar-*
// limits and the vocabulary, whose errors name the schema keyword and come back through
// ParamOfWorkerError.
#pragma once

#include <string>

#include <boost/json/object.hpp>

#include "common/status.h"
#include "gateway/openai/request.h"

namespace r1::gw {

// Fills p's structured, logit_bias, min_tokens and thinking_token_budget from the body; reads
// p->max_tokens and p->ignore_eos, already parsed.
absl::Status ParseOutputConstraints(const boost::json::object& body, GenParams* p);

// A worker's INVALID_ARGUMENT message about one of these fields, for the client: the request
// field it is about ("" when none of these), and *message without the worker's
// "structured_output: " prefix (the client named the format otherwise).
std::string ParamOfWorkerError(const GenParams& p, std::string* message);

}  // namespace r1::gw
