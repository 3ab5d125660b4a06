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
  // A route for every path that starts with `prefix` (e.g. "/v1/models/"), tried when no
  // exact path matches.
  void AddPrefix(beast::http::verb method, std::string prefix, Route route);
  // Looks the request up. Returns the route, or null with *status set to 404 or 405.
  const Route* Find(beast::http::verb method, std::string_view path, unsigned* status) const;
  // The methods a path takes, for a 405's Allow header: "GET, HEAD", "POST".
  std::string Allow(std::string_view path) const;

 private:
  using Methods = std::map<beast::http::verb, Route>;
  const Methods* Lookup(std::string_view path) const;

  std::map<std::string, Methods, std::less<>> routes_;
  std::map<std::string, Methods, std::less<>> prefixes_;
};

// The request target without the query string.
std::string_view PathOf(std::string_view target);
// %XX escapes decoded (a model id in a path: "org%2Fname"); a bad escape is kept as is.
std::string PercentDecode(std::string_view s);

}  // namespace r1::gw::http
