#include "worker/grammar/test_cases.h"

#include <fstream>
#include <sstream>

#include <boost/json.hpp>

namespace r1::grammar {

absl::StatusOr<boost::json::value> LoadTestCases(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  boost::json::value doc = boost::json::parse(ss.str(), ec);
  if (ec) return absl::InvalidArgumentError(path + ": " + ec.message());
  if (!doc.is_object() || !doc.as_object().contains("cases") || !doc.at("cases").is_array())
    return absl::InvalidArgumentError(path + ": no \"cases\" array");
  return doc;
}

absl::StatusOr<GrammarCompiler::GrammarPtr> CompileTestCase(GrammarCompiler& compiler,
                                                            const boost::json::object& test_case) {
  const boost::json::value* kind = test_case.if_contains("kind");
  if (!kind || !kind->is_string()) return absl::InvalidArgumentError("a case without \"kind\"");
  if (*kind == "json_schema") return compiler.CompileJsonSchema(boost::json::serialize(test_case.at("schema")));
  if (*kind == "json_object") return compiler.CompileJsonObject();
  if (*kind == "regex") return compiler.CompileRegex(std::string(test_case.at("pattern").as_string()));
  if (*kind == "choice") {
    std::vector<std::string> choices;
    for (const auto& s : test_case.at("choices").as_array()) choices.emplace_back(s.as_string());
    return compiler.CompileChoice(choices);
  }
  return absl::InvalidArgumentError("unknown case kind " + boost::json::serialize(*kind));
}

}  // namespace r1::grammar
