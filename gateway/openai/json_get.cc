#include "gateway/openai/json_get.h"

#include <cmath>
#include <limits>

#include "gateway/openai/cat.h"
#include "gateway/openai/request.h"

namespace r1::gw {
namespace json = boost::json;

const json::value* Field(const json::object& o, std::string_view name) {
  auto it = o.find(name);
  if (it == o.end() || it->value().is_null()) return nullptr;  // null means "not given"
  return &it->value();
}

absl::Status AsNumber(const json::value& v, std::string_view name, double* out) {
  if (v.is_double()) *out = v.get_double();
  else if (v.is_int64()) *out = static_cast<double>(v.get_int64());
  else if (v.is_uint64()) *out = static_cast<double>(v.get_uint64());
  else return InvalidParam(name, Cat("'", name, "' must be a number"));
  return absl::OkStatus();
}

absl::Status GetDouble(const json::object& o, std::string_view name, double lo, double hi,
                       std::optional<double>* out) {
  const json::value* v = Field(o, name);
  if (!v) return absl::OkStatus();
  double d;
  R1_RETURN_IF_ERROR(AsNumber(*v, name, &d));
  if (!std::isfinite(d) || d < lo || d > hi)
    return InvalidParam(name, Cat("'", name, "' must be between ", lo, " and ", hi,
                                           ", got ", d));
  *out = d;
  return absl::OkStatus();
}

// Integers as JSON integers (or doubles with an integral value).
absl::Status AsInt(const json::value& v, std::string_view name, int64_t* out) {
  if (v.is_int64()) {
    *out = v.get_int64();
  } else if (v.is_uint64()) {
    if (v.get_uint64() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return InvalidParam(name, Cat("'", name, "' is too large"));
    *out = static_cast<int64_t>(v.get_uint64());
  } else if (v.is_double() && std::isfinite(v.get_double()) &&
             std::floor(v.get_double()) == v.get_double() && std::fabs(v.get_double()) < 9e15) {
    *out = static_cast<int64_t>(v.get_double());
  } else {
    return InvalidParam(name, Cat("'", name, "' must be an integer"));
  }
  return absl::OkStatus();
}

absl::Status GetInt(const json::object& o, std::string_view name, int64_t lo, int64_t hi,
                    std::optional<int64_t>* out) {
  const json::value* v = Field(o, name);
  if (!v) return absl::OkStatus();
  int64_t i = 0;
  R1_RETURN_IF_ERROR(AsInt(*v, name, &i));
  if (i < lo || i > hi)
    return InvalidParam(name, Cat("'", name, "' must be between ", lo, " and ", hi,
                                           ", got ", i));
  *out = i;
  return absl::OkStatus();
}

absl::Status GetBool(const json::object& o, std::string_view name, bool* out) {
  const json::value* v = Field(o, name);
  if (!v) return absl::OkStatus();
  if (!v->is_bool()) return InvalidParam(name, Cat("'", name, "' must be a boolean"));
  *out = v->get_bool();
  return absl::OkStatus();
}

}  // namespace r1::gw
