// Schemas the engine cannot enforce, and malformed ones, are errors that name the keyword and
// its JSON pointer (never silently ignored).
#include <gtest/gtest.h>

#include "tests/grammar/grammar_test_util.h"

namespace r1::grammar::testing {
namespace {

struct BadSchema {
  const char* schema;
  std::vector<std::string> message_has;  // substrings the error must contain
};

void PrintTo(const BadSchema& b, std::ostream* os) { *os << b.schema; }

class GrammarSchemaError : public ::testing::TestWithParam<BadSchema> {};

TEST_P(GrammarSchemaError, ErrorNamesTheProblem) {
  GrammarCompiler compiler(ByteVocab());
  auto g = compiler.CompileJsonSchema(GetParam().schema);
  ASSERT_FALSE(g.ok()) << GetParam().schema;
  EXPECT_TRUE(absl::IsInvalidArgument(g.status()) || absl::IsResourceExhausted(g.status()))
      << g.status();
  for (const std::string& want : GetParam().message_has)
    EXPECT_NE(g.status().message().find(want), absl::string_view::npos)
        << "\"" << g.status().message() << "\" lacks \"" << want << "\"";
}

const BadSchema kUnsupported[] = {
    {R"j({"type":"object","properties":{"d":{"type":"string","format":"date"}}})j",
     {"\"format\"", "#/properties/d/format", "not supported"}},
    {R"j({"type":"object","patternProperties":{"^x":{"type":"integer"}}})j",
     {"\"patternProperties\"", "#/patternProperties"}},
    {R"j({"if":{"type":"string"},"then":{"minLength":1}})j", {"#/if"}},
    {R"j({"not":{"type":"null"}})j", {"\"not\"", "#/not"}},
    {R"j({"type":"array","items":{"type":"integer"},"uniqueItems":true})j", {"\"uniqueItems\"", "#/uniqueItems"}},
    {R"j({"type":"object","dependentRequired":{"a":["b"]}})j", {"\"dependentRequired\""}},
    {R"j({"allOf":[{"type":"integer"}]})j", {"\"allOf\"", "#/allOf"}},
    {R"j({"type":"object","minProperties":1})j", {"\"minProperties\""}},
    {R"j({"type":"number","multipleOf":2})j", {"\"multipleOf\""}},
    {R"j({"type":"array","contains":{"type":"integer"}})j", {"\"contains\""}},
    {R"j({"type":"object","propertyNames":{"maxLength":3}})j", {"\"propertyNames\""}},
    {R"j({"type":"object","properties":{"a":{"type":"integer","requried":true}}})j",
     {"\"requried\"", "#/properties/a/requried"}},
    {R"j({"anyOf":[{"type":"integer"}],"type":"integer"})j", {"\"type\"", "next to \"anyOf\""}},
    {R"j({"$defs":{"a":{"type":"integer"}},"properties":{"x":{"$ref":"#/$defs/a","minimum":3}}})j",
     {"\"minimum\"", "#/properties/x/minimum", "next to \"$ref\""}},
    {R"j({"type":"object","properties":{"p~/q":{"format":"email"}}})j", {"#/properties/p~0~1q/format"}},
    {R"j({"$id":"https://x/root","properties":{"a":{"$id":"a.json","type":"integer"}}})j",
     {"\"$id\"", "#/properties/a/$id", "only at the root"}},
};
INSTANTIATE_TEST_SUITE_P(Unsupported, GrammarSchemaError, ::testing::ValuesIn(kUnsupported));

const BadSchema kMalformed[] = {
    {R"j({"type":"object",)j", {"json_schema", "not valid JSON"}},
    {R"j(42)j", {"not an object or a boolean"}},
    {R"j({"type":"strin"})j", {"\"type\"", "unknown type \"strin\""}},
    {R"j({"type":[]})j", {"\"type\""}},
    {R"j({"type":"object","properties":[1]})j", {"\"properties\"", "must be an object"}},
    {R"j({"type":"object","required":"a"})j", {"\"required\"", "array of strings"}},
    {R"j({"type":"object","properties":{"a":{}},"required":["b"],"additionalProperties":false})j",
     {"\"required\"", "\"b\" is required"}},
    {R"j({"type":"string","minLength":-1})j", {"\"minLength\"", "non-negative integer"}},
    {R"j({"type":"string","minLength":5,"maxLength":2})j", {"\"maxLength\"", "below minLength"}},
    {R"j({"type":"string","pattern":"(ab"})j", {"\"pattern\"", "missing ')'"}},
    {R"j({"type":"string","pattern":"a(?=b)"})j", {"\"pattern\"", "lookaround"}},
    {R"j({"type":"string","pattern":"(a)\\1"})j", {"\"pattern\"", "backreferences"}},
    {R"j({"type":"string","pattern":"a^b"})j", {"\"pattern\"", "'^' and '$'"}},
    {R"j({"type":"string","pattern":"\\bword"})j", {"word boundaries"}},
    {R"j({"$ref":"#/$defs/missing"})j", {"\"$ref\"", "no such location"}},
    {R"j({"$ref":"https://example.com/schema.json"})j", {"\"$ref\"", "inside the schema"}},
    {R"j({"enum":[]})j", {"\"enum\"", "non-empty array"}},
    {R"j({"type":"string","enum":[1,2]})j", {"\"enum\"", "no value satisfies"}},
    {R"j({"type":"integer","minimum":10,"maximum":3})j", {"no integer satisfies"}},
    {R"j({"type":"integer","minimum":1,"exclusiveMaximum":2,"exclusiveMinimum":1})j", {"no integer"}},
    {R"j({"type":"number","exclusiveMinimum":true})j", {"\"exclusiveMinimum\"", "boolean form"}},
    {R"j({"type":"array","minItems":3,"maxItems":1})j", {"\"maxItems\"", "no array satisfies"}},
    {R"j({"type":"array","prefixItems":[{}],"items":false,"minItems":2})j", {"no array satisfies"}},
    {R"j({"anyOf":[]})j", {"\"anyOf\"", "non-empty array"}},
    {R"j({"oneOf":[{"type":"integer"},{"type":"number"}]})j", {"\"oneOf\"", "branches 0 and 1"}},
    {R"j({"anyOf":[{"$ref":"#"},{"type":"null"}]})j", {"left recursion"}},
    {R"j({"type":"string","maxLength":100000000})j", {"automaton states"}},
    {R"j(false)j", {"no value satisfies"}},
};
INSTANTIATE_TEST_SUITE_P(Malformed, GrammarSchemaError, ::testing::ValuesIn(kMalformed));

TEST(GrammarResponseFormat, ShapesAndErrors) {
  GrammarCompiler compiler(ByteVocab());
  auto text = compiler.CompileResponseFormat(R"j({"type":"text"})j");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, nullptr);  // no constraint
  auto obj = compiler.CompileResponseFormat(R"j({"type":"json_object"})j");
  ASSERT_TRUE(obj.ok());
  EXPECT_NE(*obj, nullptr);
  auto schema = compiler.CompileResponseFormat(
      R"j({"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"integer"}}})j");
  ASSERT_TRUE(schema.ok()) << schema.status();
  GrammarMatcher m(*schema, {kByteEos});
  EXPECT_TRUE(m.AcceptBytes("42"));
  EXPECT_TRUE(m.IsComplete());

  const std::pair<const char*, const char*> bad[] = {
      {R"j({"type":"yaml"})j", "\"type\" must be"},
      {R"j({"type":"json_schema"})j", "\"json_schema\" must be an object"},
      {R"j({"type":"json_schema","json_schema":{"name":"x"}})j", "json_schema.schema is required"},
      {R"j({"type":"json_schema","json_schema":{"schema":{},"extra":1}})j", "unknown field json_schema.extra"},
      {R"j({"type":"json_object","schema":{}})j", "unknown field \"schema\""},
      {R"j([1])j", "must be an object"},
  };
  for (const auto& [rf, want] : bad) {
    auto g = compiler.CompileResponseFormat(rf);
    ASSERT_FALSE(g.ok()) << rf;
    EXPECT_NE(g.status().message().find(want), absl::string_view::npos) << g.status();
  }
}

TEST(GrammarRegexAndChoice, Errors) {
  GrammarCompiler compiler(ByteVocab());
  EXPECT_FALSE(compiler.CompileChoice({}).ok());
  auto re = compiler.CompileRegex("a{5,2}");
  ASSERT_FALSE(re.ok());
  EXPECT_NE(re.status().message().find("guided_regex"), absl::string_view::npos) << re.status();
  EXPECT_FALSE(compiler.CompileRegex("a{1,1000001}").ok());
  EXPECT_FALSE(compiler.CompileRegex("\\p{L}").ok());
}

}  // namespace
}  // namespace r1::grammar::testing
