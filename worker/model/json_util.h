// Small Boost.JSON helpers shared by the checkpoint readers. Torch-free.
#pragma once

#include <boost/json.hpp>
#include <optional>
#include <string>

#include "common/status.h"

namespace r1::model {

// Reads a whole file; NotFound / Internal naming the path on failure.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Parses JSON text; InvalidArgument naming `source` and the error on failure.
absl::StatusOr<boost::json::value> ParseJson(std::string_view text, const std::string& source);

// A JSON number as int64 / double, or nullopt when `v` is not a number (or not integral).
std::optional<int64_t> JsonInt(const boost::json::value& v);
std::optional<double> JsonDouble(const boost::json::value& v);

}  // namespace r1::model
