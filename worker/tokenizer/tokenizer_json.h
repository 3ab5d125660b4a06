// Reads tokenizer.json in one streaming pass (Boost.JSON's SAX parser): the two big parts,
// model.vocab and model.merges, go straight into flat arrays over one string arena; the rest
// of the document (normalizer, pre-tokenizer, added tokens, ...) is built as a small DOM.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

#include "common/status.h"

namespace r1::tokenizer {

struct TokenizerJson {
  // The document with model.vocab and model.merges replaced by null.
  boost::json::value rest;
  std::string arena;  // token text of the vocab and merges, back to back
  struct VocabEntry {
    uint32_t off, len;
    int64_t id;
  };
  struct MergeEntry {
    uint32_t a_off, a_len, b_off, b_len;
  };
  bool has_vocab = false;   // model.vocab was an object
  bool has_merges = false;  // model.merges was an array
  std::vector<VocabEntry> vocab;
  std::vector<MergeEntry> merges;

  std::string_view Text(uint32_t off, uint32_t len) const {
    return std::string_view(arena.data() + off, len);
  }
};

// Errors name what is wrong (not valid JSON, a vocab id that is not an integer, a merge that is
// neither "a b" nor ["a", "b"]).
absl::Status ParseTokenizerJson(std::string_view text, TokenizerJson* out);

}  // namespace r1::tokenizer
