#include "worker/grammar/token_vocabulary.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "worker/grammar/bitmask.h"
#include "worker/tokenizer/tokenizer.h"

namespace r1::grammar {
namespace {

// Builds the preorder trie from token ids sorted by their bytes.
TokenTrie BuildTrie(const std::vector<std::string>& bytes, const std::vector<int32_t>& sorted,
                    std::vector<std::pair<int32_t, int32_t>>* duplicates) {
  TokenTrie t;
  auto add_node = [&t](uint8_t b, uint16_t d) {
    t.byte.push_back(b);
    t.depth.push_back(d);
    t.end.push_back(0);
    t.token.push_back(-1);
    return static_cast<uint32_t>(t.byte.size() - 1);
  };
  std::vector<uint32_t> path = {add_node(0, 0)};  // path[d]: the open node at depth d
  std::string_view prev;
  for (int32_t id : sorted) {
    std::string_view s = bytes[id];
    size_t lcp = 0;
    while (lcp < s.size() && lcp < prev.size() && s[lcp] == prev[lcp]) ++lcp;
    if (lcp == s.size() && s.size() == prev.size()) {  // same bytes as the previous token
      duplicates->emplace_back(t.token[path.back()], id);
      continue;
    }
    // Close the nodes below the common prefix: their subtrees are complete.
    while (path.size() > lcp + 1) {
      t.end[path.back()] = static_cast<uint32_t>(t.byte.size());
      path.pop_back();
    }
    for (size_t k = lcp; k < s.size(); ++k)
      path.push_back(add_node(static_cast<uint8_t>(s[k]), static_cast<uint16_t>(k + 1)));
    t.token[path.back()] = id;
    prev = s;
  }
  while (!path.empty()) {
    t.end[path.back()] = static_cast<uint32_t>(t.byte.size());
    path.pop_back();
  }
  return t;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const TokenVocabulary>> TokenVocabulary::Create(
    std::vector<std::optional<std::string>> tokens, int64_t vocab_size) {
  if (vocab_size < static_cast<int64_t>(tokens.size()))
    return absl::InvalidArgumentError(absl::StrCat("vocab_size ", vocab_size, " is below the ",
                                                   tokens.size(), " tokens given"));
  if (vocab_size <= 0 || vocab_size > (int64_t{1} << 30))
    return absl::InvalidArgumentError(absl::StrCat("vocab_size ", vocab_size, " is out of range"));
  std::shared_ptr<TokenVocabulary> v(new TokenVocabulary());
  v->vocab_size_ = vocab_size;
  v->bytes_.resize(tokens.size());
  v->all_.assign(BitmaskWords(vocab_size), 0);
  std::fill(std::begin(v->byte_token_), std::end(v->byte_token_), -1);
  std::vector<int32_t> ids;
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (!tokens[id] || tokens[id]->empty()) continue;  // a token of no bytes never moves on
    if (tokens[id]->size() > 0xFFFF)
      return absl::InvalidArgumentError(absl::StrCat("token ", id, " is longer than 65535 bytes"));
    v->bytes_[id] = std::move(*tokens[id]);
    ids.push_back(static_cast<int32_t>(id));
    SetBit(v->all_.data(), static_cast<int32_t>(id));
    v->max_token_bytes_ = std::max(v->max_token_bytes_, v->bytes_[id].size());
    if (v->bytes_[id].size() == 1) {
      int32_t& slot = v->byte_token_[static_cast<uint8_t>(v->bytes_[id][0])];
      if (slot < 0) slot = static_cast<int32_t>(id);
    }
  }
  v->num_tokens_ = ids.size();
  std::stable_sort(ids.begin(), ids.end(),
                   [&](int32_t a, int32_t b) { return v->bytes_[a] < v->bytes_[b]; });
  std::vector<int32_t> short_ids, long_ids;
  for (int32_t id : ids) (v->bytes_[id].size() <= kShortTokenBytes ? short_ids : long_ids).push_back(id);
  v->short_trie_ = BuildTrie(v->bytes_, short_ids, &v->duplicates_);
  v->long_trie_ = BuildTrie(v->bytes_, long_ids, &v->duplicates_);
  v->long_ids_ = std::move(long_ids);
  return std::shared_ptr<const TokenVocabulary>(std::move(v));
}

absl::StatusOr<std::shared_ptr<const TokenVocabulary>> TokenVocabulary::FromTokenizer(
    const tokenizer::Tokenizer& tok, int64_t vocab_size) {
  const int64_t n = tok.vocab_size();
  if (vocab_size == 0) vocab_size = n;
  std::vector<std::optional<std::string>> tokens(static_cast<size_t>(n));
  for (int64_t id = 0; id < n; ++id) {
    const int32_t i = static_cast<int32_t>(id);
    if (!tok.IsKnown(i) || tok.IsAdded(i)) continue;
    tokens[id] = std::string(tok.TokenBytes(i));
  }
  return Create(std::move(tokens), vocab_size);
}

bool TokenVocabulary::IsGrammarToken(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < bytes_.size() && !bytes_[id].empty();
}

std::string_view TokenVocabulary::TokenBytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= bytes_.size()) return {};
  return bytes_[id];
}

void TokenVocabulary::CopyDuplicates(uint32_t* bits) const {
  for (const auto& [first, dup] : duplicates_)
    if (TestBit(bits, first)) SetBit(bits, dup);
}

}  // namespace r1::grammar
