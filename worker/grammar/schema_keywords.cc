#include "worker/grammar/schema_keywords.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "worker/grammar/json_pointer.h"

namespace r1::grammar {
namespace {

constexpr std::string_view kAnnotations[] = {
    "title", "description", "$comment", "examples", "default", "deprecated", "readOnly",
    "writeOnly", "$schema", "$id", "$defs", "definitions", "contentMediaType"};

constexpr std::string_view kSupported[] = {
    "type", "enum", "const", "$ref", "anyOf", "oneOf",
    "properties", "required", "additionalProperties",
    "items", "prefixItems", "minItems", "maxItems",
    "minLength", "maxLength", "pattern",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};

bool In(std::string_view key, const auto& list) {
  for (std::string_view k : list)
    if (k == key) return true;
  return false;
}

struct Inferred {
  std::string_view key;
  TypeSet type;
};
constexpr Inferred kInferred[] = {
    {"properties", kObject}, {"required", kObject}, {"additionalProperties", kObject},
    {"items", kArray}, {"prefixItems", kArray}, {"minItems", kArray}, {"maxItems", kArray},
    {"minLength", kString}, {"maxLength", kString}, {"pattern", kString},
    {"minimum", kNumber}, {"maximum", kNumber}, {"exclusiveMinimum", kNumber},
    {"exclusiveMaximum", kNumber}};

absl::StatusOr<TypeSet> TypeName(std::string_view name, std::string_view ptr) {
  if (name == "null") return kNull;
  if (name == "boolean") return kBoolean;
  if (name == "integer") return kInteger;
  if (name == "number") return kNumber;
  if (name == "string") return kString;
  if (name == "array") return kArray;
  if (name == "object") return kObject;
  return KeywordError(ptr, "type", "unknown type \"" + std::string(name) + "\"");
}

}  // namespace

absl::Status KeywordError(std::string_view ptr, std::string_view key, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("json_schema: \"", std::string(key), "\" at ", PointerText(PointerChild(ptr, key)),
                   ": ", std::string(what)));
}

bool IsAnnotation(std::string_view key) { return In(key, kAnnotations); }

absl::Status CheckKeywords(const boost::json::object& schema, std::string_view ptr) {
  for (const auto& kv : schema) {
    const std::string_view key = kv.key();
    // "$id" below the root would start a new base for "$ref"s, which are resolved from the root.
    if (key == "$id" && !ptr.empty())
      return KeywordError(ptr, key, "is supported only at the root of the schema");
    if (In(key, kSupported) || IsAnnotation(key)) continue;
    // A keyword that asks for nothing is harmless.
    if (key == "uniqueItems" && kv.value().is_bool() && !kv.value().get_bool()) continue;
    return KeywordError(ptr, key, "this keyword is not supported");
  }
  for (std::string_view defs : {"$defs", "definitions"}) {
    const boost::json::value* d = schema.if_contains(defs);
    if (d && !d->is_object()) return KeywordError(ptr, defs, "must be an object");
  }
  return absl::OkStatus();
}

absl::StatusOr<TypeSet> SchemaTypes(const boost::json::object& schema, std::string_view ptr) {
  if (const boost::json::value* t = schema.if_contains("type")) {
    if (t->is_string()) return TypeName(t->get_string(), ptr);
    if (!t->is_array() || t->get_array().empty())
      return KeywordError(ptr, "type", "must be a type name or a non-empty array of them");
    TypeSet set = 0;
    for (const auto& e : t->get_array()) {
      if (!e.is_string()) return KeywordError(ptr, "type", "must hold type names");
      R1_ASSIGN_OR_RETURN(TypeSet one, TypeName(e.get_string(), ptr));
      set |= one;
    }
    return set;
  }
  TypeSet set = 0;
  for (const Inferred& i : kInferred)
    if (schema.contains(i.key)) set |= i.type;
  return set ? set : kAnyType;
}

bool ValueHasType(const boost::json::value& v, TypeSet types) {
  switch (v.kind()) {
    case boost::json::kind::null: return types & kNull;
    case boost::json::kind::bool_: return types & kBoolean;
    case boost::json::kind::int64:
    case boost::json::kind::uint64: return types & (kInteger | kNumber);
    case boost::json::kind::double_: {
      const double d = v.get_double();
      return (types & kNumber) || ((types & kInteger) && std::floor(d) == d);
    }
    case boost::json::kind::string: return types & kString;
    case boost::json::kind::array: return types & kArray;
    case boost::json::kind::object: return types & kObject;
  }
  return false;
}

absl::StatusOr<std::optional<int64_t>> CountKeyword(const boost::json::object& schema,
                                                    std::string_view key, std::string_view ptr) {
  const boost::json::value* v = schema.if_contains(key);
  if (!v) return std::optional<int64_t>();
  if (v->is_int64() && v->get_int64() >= 0) return std::optional<int64_t>(v->get_int64());
  if (v->is_uint64()) return std::optional<int64_t>(INT64_MAX);
  if (v->is_double() && v->get_double() >= 0 && std::floor(v->get_double()) == v->get_double())
    return std::optional<int64_t>(v->get_double() > 9e18 ? INT64_MAX
                                                           : static_cast<int64_t>(v->get_double()));
  return KeywordError(ptr, key, "must be a non-negative integer");
}

}  // namespace r1::grammar
