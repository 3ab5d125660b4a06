// Reading typed fields of a request body (Boost.JSON). Each error is an InvalidParam status
// naming the field, worded as OpenAI words them. A field given as null counts as not given.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "common/status.h"

namespace r1::gw {

// The field's value, or null when it is absent or null.
const boost::json::value* Field(const boost::json::object& o, std::string_view name);

// A JSON number, named `name` in errors.
absl::Status AsNumber(const boost::json::value& v, std::string_view name, double* out);
// An integer (a JSON integer, or a double with an integral value).
absl::Status AsInt(const boost::json::value& v, std::string_view name, int64_t* out);

// Optional fields: `out` is left alone when the field is not given.
absl::Status GetDouble(const boost::json::object& o, std::string_view name, double lo, double hi,
                       std::optional<double>* out);
absl::Status GetInt(const boost::json::object& o, std::string_view name, int64_t lo, int64_t hi,
                    std::optional<int64_t>* out);
absl::Status GetBool(const boost::json::object& o, std::string_view name, bool* out);

// A number field in [lo, hi] stored as `Number`.
template <typename Number>
absl::Status GetNumber(const boost::json::object& o, std::string_view name, double lo, double hi,
                       Number* out) {
  std::optional<double> d;
  R1_RETURN_IF_ERROR(GetDouble(o, name, lo, hi, &d));
  if (d) *out = static_cast<Number>(*d);
  return absl::OkStatus();
}

}  // namespace r1::gw
