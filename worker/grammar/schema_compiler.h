// JSON Schema (and "any JSON object") to grammar rules. Each rule is a DFA; a schema is inlined
// into as few rules as possible, and only these become rules of their own, reached by calls:
//   - "$ref" targets on a reference cycle (recursion),
//   - "any JSON value" (recursive by nature: additionalProperties: true, items: true, {}),
//   - an array item schema repeated so often (maxItems) that copies would be too large.
// Objects write their listed properties in the schema's order (optional ones may be left
// out), so the generated text is a subset of what the schema allows, never more.
#pragma once

#include <cstdint>
#include <vector>

#include <boost/json/value.hpp>

#include "common/status.h"
#include "worker/grammar/dfa.h"
#include "worker/grammar/options.h"

namespace r1::grammar {

struct GrammarRules {
  std::vector<Dfa> rules;
  int32_t root = 0;
};

// {"type": "json_schema"}: the schema document (an object or a boolean).
absl::StatusOr<GrammarRules> RulesForJsonSchema(const boost::json::value& schema,
                                                const GrammarOptions& options);
// {"type": "json_object"}: any JSON object.
absl::StatusOr<GrammarRules> RulesForJsonObject(const GrammarOptions& options);

}  // namespace r1::grammar
