// Finds added tokens in text the way Hugging Face tokenizers' AddedVocabulary does:
// leftmost match first, the longest one at that position, matches never overlap; lstrip,
// rstrip and single_word are honoured.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace r1::tokenizer {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

class AddedTokenMatcher {
 public:
  // `content` must not be empty.
  void Add(std::string content, int32_t id, bool lstrip, bool rstrip, bool single_word);
  bool empty() const { return tokens_.empty(); }

  struct Piece {
    size_t begin, end;
    int32_t id;  // -1: plain text
  };
  // Splits `text` into plain-text pieces and token pieces, in order. Empty plain-text pieces
  // are not produced.
  void Split(std::string_view text, std::vector<Piece>* out) const;

 private:
  struct Entry {
    std::string content;
    int32_t id;
    bool lstrip, rstrip, single_word;
  };
  std::vector<Entry> tokens_;
  // For each first byte, indices into tokens_, longest content first.
  std::array<std::vector<uint32_t>, 256> by_first_byte_;
};

}  // namespace r1::tokenizer
