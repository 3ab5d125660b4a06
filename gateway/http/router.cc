#include "gateway/http/router.h"

namespace r1::gw::http {

void Router::Add(beast::http::verb method, std::string path, Route route) {
  routes_[std::move(path)][method] = std::move(route);
}

void Router::AddPrefix(beast::http::verb method, std::string prefix, Route route) {
  prefixes_[std::move(prefix)][method] = std::move(route);
}

const Router::Methods* Router::Lookup(std::string_view path) const {
  if (auto it = routes_.find(path); it != routes_.end()) return &it->second;
  const Methods* best = nullptr;
  size_t best_len = 0;
  for (const auto& [prefix, methods] : prefixes_) {
    if (path.size() > prefix.size() && path.substr(0, prefix.size()) == prefix &&
        prefix.size() > best_len) {
      best = &methods;
      best_len = prefix.size();
    }
  }
  return best;
}

const Router::Route* Router::Find(beast::http::verb method, std::string_view path,
                                  unsigned* status) const {
  const Methods* methods = Lookup(path);
  if (!methods) {
    *status = 404;
    return nullptr;
  }
  auto m = methods->find(method);
  if (m == methods->end() && method == beast::http::verb::head)
    m = methods->find(beast::http::verb::get);
  if (m == methods->end()) {
    *status = 405;
    return nullptr;
  }
  return &m->second;
}

std::string Router::Allow(std::string_view path) const {
  std::string out;
  const Methods* methods = Lookup(path);
  if (!methods) return out;
  auto add = [&out](beast::http::verb v) {
    if (!out.empty()) out += ", ";
    auto name = beast::http::to_string(v);
    out.append(name.data(), name.size());
  };
  for (const auto& [verb, route] : *methods) add(verb);
  if (methods->count(beast::http::verb::get) && !methods->count(beast::http::verb::head))
    add(beast::http::verb::head);
  return out;
}

std::string_view PathOf(std::string_view target) {
  size_t q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

std::string PercentDecode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 &&
        hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace r1::gw::http
