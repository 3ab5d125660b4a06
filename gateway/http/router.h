// Maps (method, path) to handlers. Unknown paths give 404, known paths with another method 405
// (with Allow() for its header). HEAD is served by the GET route: the session then sends the
// response's header without its body.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "gateway/http/session.h"

namespace r1::gw::http {

class Router {
 public:
  using Route = std::function<void(const std::shared_ptr<Session>&, Request&&)>;
  void Add(beast::http::verb method, std::string path, Route route);
  // Looks the request up. Returns the route, or null with *status set to 404 or 405.
  const Route* Find(beast::http::verb method, std::string_view path, unsigned* status) const;
  // The methods a path takes, for a 405's Allow header: "GET, HEAD", "POST".
  std::string Allow(std::string_view path) const;

 private:
  std::map<std::string, std::map<beast::http::verb, Route>, std::less<>> routes_;
};

// The request target without the query string.
std::string_view PathOf(std::string_view target);

}  // namespace r1::gw::http
