// Which JSON Schema keywords the compiler understands, and reading their values. Every keyword
// of a schema object is either understood, an annotation (title, description, ... - they do not
// change what is valid), or an error naming the keyword and its JSON pointer: a keyword the
// engine cannot enforce is never silently ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "common/status.h"

namespace r1::grammar {

enum JsonType : uint8_t {
  kNull = 1,
  kBoolean = 2,
  kInteger = 4,
  kNumber = 8,  // includes integers
  kString = 16,
  kArray = 32,
  kObject = 64,
};
using TypeSet = uint8_t;
constexpr TypeSet kAnyType = 0x7F;

// Every keyword of `schema` is supported (ptr: the schema's pointer).
absl::Status CheckKeywords(const boost::json::object& schema, std::string_view ptr);
// True for keywords that only annotate.
bool IsAnnotation(std::string_view key);
// The types the schema allows: "type" when given, otherwise the types its keywords constrain
// (properties -> object, minLength -> string, ...), otherwise every type.
absl::StatusOr<TypeSet> SchemaTypes(const boost::json::object& schema, std::string_view ptr);
// True when the JSON value is of one of the types.
bool ValueHasType(const boost::json::value& v, TypeSet types);
// A keyword whose value must be a non-negative integer; nullopt when absent.
absl::StatusOr<std::optional<int64_t>> CountKeyword(const boost::json::object& schema,
                                                    std::string_view key, std::string_view ptr);
// An error naming the keyword at ptr.
absl::Status KeywordError(std::string_view ptr, std::string_view key, std::string_view what);

}  // namespace r1::grammar
