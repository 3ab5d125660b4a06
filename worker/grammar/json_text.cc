#include "worker/grammar/json_text.h"

#include <charconv>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace r1::grammar {

std::string JsonEscape(uint8_t b) {
  switch (b) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\b': return "\\b";
    case '\f': return "\\f";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    default: break;
  }
  if (b >= 0x20) return "";
  static const char kHex[] = "0123456789abcdef";
  return std::string("\\u00") + kHex[b >> 4] + kHex[b & 15];
}

std::string QuoteJsonString(std::string_view utf8) {
  std::string out = "\"";
  for (char c : utf8) {
    std::string e = JsonEscape(static_cast<uint8_t>(c));
    if (e.empty()) out.push_back(c);
    else out += e;
  }
  out.push_back('"');
  return out;
}

std::string CanonicalJson(const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::null: return "null";
    case boost::json::kind::bool_: return v.get_bool() ? "true" : "false";
    case boost::json::kind::int64: return absl::StrCat(v.get_int64());
    case boost::json::kind::uint64: return absl::StrCat(v.get_uint64());
    case boost::json::kind::double_: {
      // Shortest text that reads back as the same double (the parser rejects NaN and inf).
      char buf[64];
      auto r = std::to_chars(buf, buf + sizeof buf, v.get_double());
      return std::string(buf, r.ptr);
    }
    case boost::json::kind::string: return QuoteJsonString(v.get_string());
    case boost::json::kind::array: {
      std::string out = "[";
      for (const auto& e : v.get_array()) {
        if (out.size() > 1) out += ",";
        out += CanonicalJson(e);
      }
      return out + "]";
    }
    case boost::json::kind::object: {
      std::string out = "{";
      for (const auto& kv : v.get_object()) {
        if (out.size() > 1) out += ",";
        out += QuoteJsonString(kv.key()) + ":" + CanonicalJson(kv.value());
      }
      return out + "}";
    }
  }
  return "null";
}

}  // namespace r1::grammar
