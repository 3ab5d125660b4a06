#include "worker/grammar/json_pointer.h"

#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"

namespace r1::grammar {
namespace {

absl::StatusOr<std::string> PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return absl::InvalidArgumentError("bad %-escape");
    const std::string hex(s.substr(i + 1, 2));
    char* end = nullptr;
    const long v = std::strtol(hex.c_str(), &end, 16);
    if (hex.size() != 2 || end != hex.c_str() + 2) return absl::InvalidArgumentError("bad %-escape");
    out.push_back(static_cast<char>(v));
    i += 2;
  }
  return out;
}

}  // namespace

std::string PointerChild(std::string_view ptr, std::string_view token) {
  std::string out(ptr);
  out.push_back('/');
  for (char c : token) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out.push_back(c);
  }
  return out;
}

std::string PointerText(std::string_view ptr) { return "#" + std::string(ptr); }

absl::StatusOr<Resolved> ResolveRef(const boost::json::value& doc, std::string_view ref) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError("$ref \"" + std::string(ref) + "\": " + std::string(why));
  };
  if (ref.empty() || ref[0] != '#')
    return bad("only references inside the schema (\"#/...\") are supported");
  auto decoded = PercentDecode(ref.substr(1));
  if (!decoded.ok()) return bad(std::string(decoded.status().message()));
  const std::string& ptr = *decoded;
  if (!ptr.empty() && ptr[0] != '/') return bad("anchors are not supported, use \"#/$defs/...\"");
  const boost::json::value* cur = &doc;
  std::string norm;
  size_t pos = 0;
  while (pos < ptr.size()) {
    const size_t next = ptr.find('/', pos + 1);
    std::string raw = ptr.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
    std::string token;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '~' && i + 1 < raw.size() && (raw[i + 1] == '0' || raw[i + 1] == '1')) {
        token.push_back(raw[i + 1] == '0' ? '~' : '/');
        ++i;
      } else if (raw[i] == '~') {
        return bad("bad ~ escape");
      } else {
        token.push_back(raw[i]);
      }
    }
    if (cur->is_object()) {
      const boost::json::value* v = cur->as_object().if_contains(token);
      if (!v) return bad("no such location in the schema");
      cur = v;
    } else if (cur->is_array()) {
      char* end = nullptr;
      const unsigned long i = std::strtoul(token.c_str(), &end, 10);
      if (token.empty() || *end != 0 || i >= cur->as_array().size())
        return bad("no such location in the schema");
      cur = &cur->as_array()[i];
    } else {
      return bad("no such location in the schema");
    }
    norm = PointerChild(norm, token);
    pos = next == std::string::npos ? ptr.size() : next;
  }
  return Resolved{cur, norm};
}

}  // namespace r1::grammar
