#include "gateway/http/router.h"

namespace r1::gw::http {

void Router::Add(beast::http::verb method, std::string path, Route route) {
  routes_[std::move(path)][method] = std::move(route);
}

const Router::Route* Router::Find(beast::http::verb method, std::string_view path,
                                  unsigned* status) const {
  auto it = routes_.find(path);
  if (it == routes_.end()) {
    *status = 404;
    return nullptr;
  }
  auto m = it->second.find(method);
  if (m == it->second.end() && method == beast::http::verb::head)
    m = it->second.find(beast::http::verb::get);
  if (m == it->second.end()) {
    *status = 405;
    return nullptr;
  }
  return &m->second;
}

std::string Router::Allow(std::string_view path) const {
  std::string out;
  auto it = routes_.find(path);
  if (it == routes_.end()) return out;
  auto add = [&out](beast::http::verb v) {
    if (!out.empty()) out += ", ";
    auto name = beast::http::to_string(v);
    out.append(name.data(), name.size());
  };
  for (const auto& [verb, route] : it->second) add(verb);
  if (it->second.count(beast::http::verb::get) && !it->second.count(beast::http::verb::head))
    add(beast::http::verb::head);
  return out;
}

std::string_view PathOf(std::string_view target) {
  size_t q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

}  // namespace r1::gw::http
