// Drives the gateway over HTTP/1.1 with the OpenAI API and "stream": true: one connection per
// request in flight, all on the caller's io_context (Boost.Beast, C++20 coroutines). The
// first SSE chunk with content is the first token.
#pragma once

#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "loadtest/backend.h"
#include "loadtest/options.h"

namespace r1::loadtest {

// Resolves the target's host at once (a bad host is an error here, not per request).
// The first model id of the target's GET /v1/models (one blocking request, 5 s at most); an
// error when it lists none or cannot be reached.
absl::StatusOr<std::string> FirstModelId(const Target& target, const std::string& api_key);

absl::StatusOr<std::unique_ptr<Backend>> MakeHttpBackend(boost::asio::io_context& io,
                                                         const Target& target,
                                                         const Options& options);

// Builds the JSON body of one streaming request.
std::string BuildRequestBody(const Options& options, const RequestSpec& spec);

// Applies one SSE event's data to a result: content chunks count as tokens, "usage" sets
// the token counts, an "error" object fails the request. Sets *done on "[DONE]".
void ApplySseEvent(const std::string& data, SteadyClock::time_point now, RequestResult& r,
                   bool* done);

}  // namespace r1::loadtest
