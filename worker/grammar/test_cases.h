// The structured-output cases of tests/grammar/cases.json, shared by the tests, the samples
// tool and the bench: {"cases": [{"name", "kind": json_schema|json_object|choice|regex,
// "schema"|"choices"|"pattern"}]}.
#pragma once

#include <string>

#include <boost/json/value.hpp>

#include "common/status.h"
#include "worker/grammar/compiler.h"

namespace r1::grammar {

// The parsed file; InvalidArgument naming the file when it cannot be read or parsed.
absl::StatusOr<boost::json::value> LoadTestCases(const std::string& path);
absl::StatusOr<GrammarCompiler::GrammarPtr> CompileTestCase(GrammarCompiler& compiler,
                                                            const boost::json::object& test_case);

}  // namespace r1::grammar
