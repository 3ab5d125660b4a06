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
  if (m == it->second.end()) {
    *status = 405;
    return nullptr;
  }
  return &m->second;
}

std::string_view PathOf(std::string_view target) {
  size_t q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

}  // namespace r1::gw::http
