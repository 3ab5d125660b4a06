// JSON pointers (RFC 6901) for schema locations: error messages name a keyword by its pointer
// ("#/properties/date/format"), and "$ref": "#/$defs/node" is resolved with one.
#pragma once

#include <string>
#include <string_view>

#include <boost/json/value.hpp>

#include "common/status.h"

namespace r1::grammar {

// ptr + "/" + token, with ~ and / escaped.
std::string PointerChild(std::string_view ptr, std::string_view token);
// The pointer as a URI fragment for messages: "#" + ptr.
std::string PointerText(std::string_view ptr);

struct Resolved {
  const boost::json::value* value;
  std::string pointer;  // normalised
};
// Resolves a "$ref" of the form "#" or "#/a/b" (percent-escapes decoded) inside doc.
absl::StatusOr<Resolved> ResolveRef(const boost::json::value& doc, std::string_view ref);

}  // namespace r1::grammar
