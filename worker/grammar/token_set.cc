#include "worker/grammar/token_set.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "worker/grammar/bitmask.h"

namespace r1::grammar {

TokenSet TokenSet::FromBits(const uint32_t* bits, const TokenVocabulary& vocab) {
  const std::vector<uint32_t>& all = vocab.all_tokens();
  size_t in = 0;
  for (size_t w = 0; w < all.size(); ++w) in += std::popcount(bits[w]);
  const size_t out = vocab.num_grammar_tokens() - in;
  TokenSet s;
  // A list wins while it is smaller than the bitmask.
  if (std::min(in, out) >= all.size()) {
    s.kind_ = Kind::kBits;
    s.ids_.assign(bits, bits + all.size());
    return s;
  }
  s.kind_ = in <= out ? Kind::kIn : Kind::kNotIn;
  s.ids_.reserve(std::min(in, out));
  for (size_t w = 0; w < all.size(); ++w) {
    // kNotIn lists the grammar tokens that are missing.
    uint32_t word = s.kind_ == Kind::kIn ? bits[w] : all[w] & ~bits[w];
    while (word) {
      s.ids_.push_back(static_cast<uint32_t>(w * 32 + std::countr_zero(word)));
      word &= word - 1;
    }
  }
  return s;
}

TokenSet TokenSet::FromCandidates(const uint32_t* bits, const std::vector<int32_t>& candidates) {
  TokenSet s;
  s.kind_ = Kind::kIn;
  for (int32_t id : candidates)
    if (TestBit(bits, id)) s.ids_.push_back(static_cast<uint32_t>(id));
  std::sort(s.ids_.begin(), s.ids_.end());
  return s;
}

void TokenSet::WriteTo(uint32_t* bits, const TokenVocabulary& vocab) const {
  const std::vector<uint32_t>& all = vocab.all_tokens();
  switch (kind_) {
    case Kind::kBits:
      std::memcpy(bits, ids_.data(), all.size() * sizeof(uint32_t));
      return;
    case Kind::kIn:
      std::memset(bits, 0, all.size() * sizeof(uint32_t));
      for (uint32_t id : ids_) SetBit(bits, static_cast<int32_t>(id));
      return;
    case Kind::kNotIn:
      std::memcpy(bits, all.data(), all.size() * sizeof(uint32_t));
      for (uint32_t id : ids_) ClearBit(bits, static_cast<int32_t>(id));
      return;
  }
}

void TokenSet::OrInto(uint32_t* bits, const TokenVocabulary& vocab) const {
  const std::vector<uint32_t>& all = vocab.all_tokens();
  switch (kind_) {
    case Kind::kBits:
      for (size_t w = 0; w < all.size(); ++w) bits[w] |= ids_[w];
      return;
    case Kind::kIn:
      for (uint32_t id : ids_) SetBit(bits, static_cast<int32_t>(id));
      return;
    case Kind::kNotIn: {
      // all minus the listed ids, merged word by word.
      size_t k = 0;
      for (size_t w = 0; w < all.size(); ++w) {
        uint32_t word = all[w];
        while (k < ids_.size() && ids_[k] / 32 == w) word &= ~(1u << (ids_[k++] & 31));
        bits[w] |= word;
      }
      return;
    }
  }
}

}  // namespace r1::grammar
