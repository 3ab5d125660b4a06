#include "worker/grammar/compiler.h"

#include <boost/json/parse.hpp>

#include "absl/strings/str_cat.h"
#include "worker/grammar/json_text.h"
#include "worker/grammar/regex.h"
#include "worker/grammar/schema_compiler.h"

namespace r1::grammar {
namespace {

namespace json = boost::json;

absl::StatusOr<json::value> ParseJson(std::string_view text, std::string_view what) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat(std::string(what), " is not valid JSON: ", ec.message()));
  return v;
}

// One automaton rule from an NFA fragment.
absl::StatusOr<GrammarRules> SingleRule(const Nfa& nfa, Frag f, size_t max_states) {
  auto d = Determinize(nfa, f, max_states);
  if (!d.ok()) return d.status();
  GrammarRules r;
  r.rules.push_back(Minimize(Trim(*d)));
  return r;
}

}  // namespace

GrammarCompiler::GrammarCompiler(std::shared_ptr<const TokenVocabulary> vocab,
                                 CompilerOptions options)
    : vocab_(std::move(vocab)), options_(std::move(options)) {}

absl::StatusOr<GrammarCompiler::GrammarPtr> GrammarCompiler::Cached(
    const std::string& key, const std::function<absl::StatusOr<GrammarRules>()>& rules) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      ++hits_;
      lru_.splice(lru_.begin(), lru_, it->second.pos);
      return it->second.grammar;
    }
    ++misses_;
  }
  // Compiled outside the lock: two threads may compile the same schema once each; the first
  // stored wins.
  R1_RETURN_IF_ERROR(options_.grammar.Validate());
  R1_ASSIGN_OR_RETURN(GrammarRules r, rules());
  R1_ASSIGN_OR_RETURN(GrammarPtr g,
                      CompiledGrammar::Create(r, vocab_, options_.mask_cache_bytes));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(key);
  if (it != cache_.end()) return it->second.grammar;
  if (options_.cache_entries == 0) return g;
  lru_.push_front(key);
  cache_.emplace(key, Entry{g, lru_.begin()});
  while (cache_.size() > options_.cache_entries) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  return g;
}

absl::StatusOr<GrammarCompiler::GrammarPtr> GrammarCompiler::JsonSchemaValue(const json::value& schema) {
  return Cached("json_schema\n" + CanonicalJson(schema),
                [&] { return RulesForJsonSchema(schema, options_.grammar); });
}

absl::StatusOr<GrammarCompiler::GrammarPtr> GrammarCompiler::CompileJsonSchema(std::string_view schema_json) {
  R1_ASSIGN_OR_RETURN(json::value schema, ParseJson(schema_json, "json_schema"));
  return JsonSchemaValue(schema);
}

absl::StatusOr<GrammarCompiler::GrammarPtr> GrammarCompiler::CompileJsonObject() {
  return Cached("json_object", [&] { return RulesForJsonObject(options_.grammar); });
}

absl::StatusOr<GrammarCompiler::GrammarPtr> GrammarCompiler::CompileChoice(
    const std::vector<std::string>& choices) {
  if (choices.empty()) return absl::InvalidArgumentError("guided_choice: the list is empty");
  json::array key;
  for (const std::string& c : choices) key.emplace_back(c);
  return Cached("choice\n" + CanonicalJson(key), [&]() -> absl::StatusOr<GrammarRules> {
    Nfa nfa(static_cast<size_t>(options_.grammar.max_states));
    std::vector<Frag> alts;
    for (const std::string& c : choices) alts.push_back(nfa.Literal(c));
    return SingleRule(nfa, nfa.Alt(alts), nfa.max_states());
  });
}

absl::StatusOr<GrammarCompiler::GrammarPtr> GrammarCompiler::CompileRegex(std::string_view pattern) {
  return Cached("regex\n" + std::string(pattern), [&]() -> absl::StatusOr<GrammarRules> {
    Nfa nfa(static_cast<size_t>(options_.grammar.max_states));
    auto f = grammar::CompileRegex(nfa, pattern, RegexMode::kFullMatch, options_.grammar.max_repeat);
    if (!f.ok()) return absl::InvalidArgumentError(absl::StrCat("guided_regex: ", std::string(f.status().message())));
    if (nfa.overflow()) return absl::ResourceExhaustedError("guided_regex: the pattern is too large");
    return SingleRule(nfa, *f, nfa.max_states());
  });
}

absl::StatusOr<GrammarCompiler::GrammarPtr> GrammarCompiler::CompileResponseFormat(
    std::string_view response_format_json) {
  R1_ASSIGN_OR_RETURN(json::value rf, ParseJson(response_format_json, "response_format"));
  auto bad = [](std::string_view what) {
    return absl::InvalidArgumentError("response_format: " + std::string(what));
  };
  if (!rf.is_object()) return bad("must be an object");
  const json::object& o = rf.get_object();
  const json::value* type = o.if_contains("type");
  if (!type || !type->is_string()) return bad("\"type\" must be \"text\", \"json_object\" or \"json_schema\"");
  const std::string_view t = type->get_string();
  for (const auto& kv : o)
    if (kv.key() != "type" && !(t == "json_schema" && kv.key() == "json_schema"))
      return bad("unknown field \"" + std::string(kv.key()) + "\" for type \"" + std::string(t) + "\"");
  if (t == "text") return GrammarPtr();
  if (t == "json_object") return CompileJsonObject();
  if (t != "json_schema") return bad("\"type\" must be \"text\", \"json_object\" or \"json_schema\"");
  const json::value* js = o.if_contains("json_schema");
  if (!js || !js->is_object()) return bad("\"json_schema\" must be an object");
  const json::value* schema = nullptr;
  for (const auto& kv : js->get_object()) {
    const std::string_view k = kv.key();
    if (k == "schema") {
      schema = &kv.value();
    } else if (k == "name" || k == "description") {
      if (!kv.value().is_string()) return bad("json_schema." + std::string(k) + " must be a string");
    } else if (k == "strict") {
      // Output is always enforced exactly; the flag changes nothing.
      if (!kv.value().is_bool() && !kv.value().is_null()) return bad("json_schema.strict must be a boolean");
    } else {
      return bad("unknown field json_schema." + std::string(k));
    }
  }
  if (!schema) return bad("json_schema.schema is required");
  return JsonSchemaValue(*schema);
}

CompilerCacheStats GrammarCompiler::cache_stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {hits_, misses_, cache_.size()};
}

}  // namespace r1::grammar
