// Cat(...): concatenates strings, std::string_view and numbers (absl::StrCat does not take
// std::string_view with this abseil version).
#pragma once

#include <cstdio>
#include <string>
#include <string_view>
#include <type_traits>

namespace r1::gw {

template <typename T>
void CatAppend(std::string* out, const T& v) {
  if constexpr (std::is_same_v<T, bool>) {
    out->append(v ? "true" : "false");
  } else if constexpr (std::is_integral_v<T>) {
    out->append(std::to_string(v));
  } else if constexpr (std::is_floating_point_v<T>) {
    char buf[32];
    int n = std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
    out->append(buf, n);
  } else {
    out->append(std::string_view(v));
  }
}

template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  (CatAppend(&out, args), ...);
  return out;
}

}  // namespace r1::gw
