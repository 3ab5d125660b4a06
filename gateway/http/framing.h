// RFC 9112 rules about a request's framing and target that Beast's parser leaves to the
// server. A request that breaks them is answered 400 and the connection closed: its body
// length cannot be trusted, so whatever follows on the connection could be a smuggled request.
#pragma once

#include <string>
#include <string_view>

#include <boost/beast/http/fields.hpp>

namespace r1::gw::http {

// Why a request head must be refused, or empty when it is acceptable:
//  - Transfer-Encoding other than exactly one "chunked" (RFC 9112 6.3: "chunked" must be the
//    final coding; we implement no other), Transfer-Encoding together with Content-Length
//    (6.1), or Transfer-Encoding in an HTTP/1.0 request (6.1: treat its framing as faulty);
//  - no Host in an HTTP/1.1 request, more than one Host, or a Host value that is not
//    uri-host[:port] (3.2).
// `version` is Beast's: 11 for HTTP/1.1.
std::string FramingError(const boost::beast::http::fields& fields, unsigned version);

// The origin-form of an absolute-form target (RFC 9112 3.2.2: servers MUST accept it):
// "http://host:80/v1/models?x" -> "/v1/models?x", "http://host" -> "/", "http://host?q" -> "/?q". Other targets are
// returned as they are.
std::string OriginForm(std::string_view target);

}  // namespace r1::gw::http
