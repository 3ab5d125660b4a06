// The entry point: turns a response format into a CompiledGrammar for one vocabulary, with a
// thread-safe LRU cache keyed by the canonical text of the request (so a schema compiles once
// and every request with it shares the compiled masks).
//
//   auto vocab = TokenVocabulary::FromTokenizer(tokenizer, model_vocab_size);
//   GrammarCompiler compiler(*vocab);
//   auto g = compiler.CompileResponseFormat(R"({"type":"json_schema","json_schema":{...}})");
//   GrammarMatcher m(*g, {eos_id});
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "worker/grammar/compiled_grammar.h"
#include "worker/grammar/options.h"
#include "worker/grammar/token_vocabulary.h"

namespace r1::grammar {

struct CompilerOptions {
  GrammarOptions grammar;
  // Compiled grammars kept (least recently used dropped first).
  size_t cache_entries = 32;
  // Per grammar: bytes of cached masks (least recently used dropped first). The most memory
  // the cache holds is about cache_entries times this.
  size_t mask_cache_bytes = size_t{16} << 20;
};

struct CompilerCacheStats {
  uint64_t hits = 0, misses = 0;
  size_t entries = 0;
};

class GrammarCompiler {
 public:
  using GrammarPtr = std::shared_ptr<const CompiledGrammar>;

  explicit GrammarCompiler(std::shared_ptr<const TokenVocabulary> vocab, CompilerOptions options = {});

  // A JSON Schema document (text). Unsupported keywords and malformed schemas are
  // InvalidArgument naming the keyword and its JSON pointer.
  absl::StatusOr<GrammarPtr> CompileJsonSchema(std::string_view schema_json);
  // Any JSON object (OpenAI's {"type": "json_object"}).
  absl::StatusOr<GrammarPtr> CompileJsonObject();
  // Exactly one of the strings (vLLM's guided_choice).
  absl::StatusOr<GrammarPtr> CompileChoice(const std::vector<std::string>& choices);
  // Text the whole of which matches the pattern (vLLM's guided_regex; regex.h lists the subset).
  absl::StatusOr<GrammarPtr> CompileRegex(std::string_view pattern);
  // OpenAI's response_format object: {"type":"json_object"}, {"type":"json_schema",
  // "json_schema":{"name":...,"schema":{...},"strict":...,"description":...}}, or
  // {"type":"text"}, which constrains nothing and gives nullptr.
  absl::StatusOr<GrammarPtr> CompileResponseFormat(std::string_view response_format_json);

  CompilerCacheStats cache_stats() const;
  const CompilerOptions& options() const { return options_; }
  const std::shared_ptr<const TokenVocabulary>& vocabulary() const { return vocab_; }

 private:
  absl::StatusOr<GrammarPtr> Cached(const std::string& key,
                                    const std::function<absl::StatusOr<GrammarRules>()>& rules);
  absl::StatusOr<GrammarPtr> JsonSchemaValue(const boost::json::value& schema);

  std::shared_ptr<const TokenVocabulary> vocab_;
  CompilerOptions options_;
  mutable std::mutex mu_;
  std::list<std::string> lru_;  // most recent first
  struct Entry {
    GrammarPtr grammar;
    std::list<std::string>::iterator pos;
  };
  std::unordered_map<std::string, Entry> cache_;
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace r1::grammar
