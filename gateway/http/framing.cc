#include "gateway/http/framing.h"

#include <boost/beast/core/string.hpp>

namespace r1::gw::http {

namespace bhttp = boost::beast::http;

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// uri-host [ ":" port ]: unreserved, pct-encoded, sub-delims, and the ":" "[" "]" of ports
// and IP literals (RFC 3986 3.2.2). Spaces, "/", "@", "?" and controls are not allowed.
bool ValidHost(std::string_view v) {
  for (char c : v) {
    unsigned char u = static_cast<unsigned char>(c);
    bool ok = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9');
    if (!ok) {
      static constexpr std::string_view kOther = "-._~%!$&'()*+,;=:[]";
      ok = kOther.find(c) != std::string_view::npos;
    }
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string FramingError(const bhttp::fields& fields, unsigned version) {
  const size_t te = fields.count(bhttp::field::transfer_encoding);
  if (te > 0) {
    if (version < 11) return "Transfer-Encoding is not allowed in an HTTP/1.0 request";
    auto v = fields[bhttp::field::transfer_encoding];
    if (te > 1 || !boost::beast::iequals(Trim(std::string_view(v.data(), v.size())), "chunked"))
      return "unsupported Transfer-Encoding (only \"chunked\" is accepted)";
    if (fields.count(bhttp::field::content_length) > 0)
      return "Transfer-Encoding and Content-Length together";
  }
  const size_t hosts = fields.count(bhttp::field::host);
  if (hosts > 1) return "more than one Host header";
  if (hosts == 0 && version >= 11) return "missing Host header";
  if (hosts == 1) {
    auto v = fields[bhttp::field::host];
    if (!ValidHost(Trim(std::string_view(v.data(), v.size())))) return "invalid Host header";
  }
  return "";
}

std::string OriginForm(std::string_view target) {
  // The scheme is case-insensitive (RFC 9110 4.2.3); anything else is left to the router.
  size_t scheme = 0;
  if (boost::beast::iequals(target.substr(0, 7), "http://")) scheme = 7;
  else if (boost::beast::iequals(target.substr(0, 8), "https://")) scheme = 8;
  else return std::string(target);
  size_t path = target.find_first_of("/?", scheme);
  if (path == std::string_view::npos) return "/";
  std::string out(target.substr(path));
  if (out.front() == '?') out.insert(out.begin(), '/');  // "http://h?q": an empty path is "/"
  return out;
}

}  // namespace r1::gw::http
