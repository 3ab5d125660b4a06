// The vocabulary side of the grammar engine, prepared once per tokenizer and shared (immutable)
// by every compiled grammar and matcher: each token's bytes, and all of them in byte tries so
// that a mask is a walk over shared prefixes that stops at the first byte the grammar refuses.
// Tokens of up to kShortTokenBytes bytes (all but ~240 of Qwen's) are in one trie, the longer
// ones in another: grammar states that differ only beyond kShortTokenBytes bytes then share
// the mask of the short tokens (see mask_classes.h).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace r1::tokenizer {
class Tokenizer;
}

namespace r1::grammar {

// Token byte strings in preorder. Node 0 is the root (the empty prefix). The children of node i
// are i+1, end[i+1], end[end[i+1]], ... while below end[i]; depth[c] == depth[i] + 1.
struct TokenTrie {
  std::vector<uint8_t> byte;    // the byte on the edge into the node (0 for the root)
  std::vector<uint16_t> depth;  // bytes from the root
  std::vector<uint32_t> end;    // one past the node's last descendant
  std::vector<int32_t> token;   // the token whose bytes end here, -1 if none

  size_t size() const { return byte.size(); }
};

class TokenVocabulary {
 public:
  static constexpr size_t kShortTokenBytes = 32;

  // tokens[id]: the bytes of a token the grammar may allow; nullopt (or empty) for ids it never
  // allows (special and added tokens). Ids from tokens.size() up to vocab_size are never allowed
  // (the model's embedding is usually padded past the tokenizer).
  static absl::StatusOr<std::shared_ptr<const TokenVocabulary>> Create(
      std::vector<std::optional<std::string>> tokens, int64_t vocab_size);
  // Every vocabulary token of `tok`; added tokens (special or not) are left out. vocab_size 0
  // means the tokenizer's own.
  static absl::StatusOr<std::shared_ptr<const TokenVocabulary>> FromTokenizer(
      const tokenizer::Tokenizer& tok, int64_t vocab_size = 0);

  int64_t vocab_size() const { return vocab_size_; }
  size_t bitmask_words() const { return all_.size(); }
  // A token the grammar may allow (it has bytes and is not special or added).
  bool IsGrammarToken(int32_t id) const;
  std::string_view TokenBytes(int32_t id) const;
  // The token that is exactly this one byte, -1 if there is none.
  int32_t ByteToken(uint8_t b) const { return byte_token_[b]; }
  // Tokens of at most kShortTokenBytes bytes, and the longer ones.
  const TokenTrie& short_trie() const { return short_trie_; }
  const TokenTrie& long_trie() const { return long_trie_; }
  // The ids in long_trie().
  const std::vector<int32_t>& long_tokens() const { return long_ids_; }
  // The bits of every grammar token.
  const std::vector<uint32_t>& all_tokens() const { return all_; }
  size_t num_grammar_tokens() const { return num_tokens_; }
  size_t max_token_bytes() const { return max_token_bytes_; }
  // Tokens with the same bytes as another share its trie node: give them its bit.
  void CopyDuplicates(uint32_t* bits) const;

 private:
  TokenVocabulary() = default;

  int64_t vocab_size_ = 0;
  std::vector<std::string> bytes_;  // by id; empty for ids never allowed
  std::vector<uint32_t> all_;
  std::vector<std::pair<int32_t, int32_t>> duplicates_;  // (token in the trie, same bytes)
  int32_t byte_token_[256];
  TokenTrie short_trie_, long_trie_;
  std::vector<int32_t> long_ids_;
  size_t num_tokens_ = 0;
  size_t max_token_bytes_ = 0;
};

}  // namespace r1::grammar
