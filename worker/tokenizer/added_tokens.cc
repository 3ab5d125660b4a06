#include "worker/tokenizer/added_tokens.h"

#include <algorithm>
#include <cstring>

namespace r1::tokenizer {
namespace {

bool IsSpaceByte(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
bool IsWordByte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

}  // namespace

void AddedTokenMatcher::Add(std::string content, int32_t id, bool lstrip, bool rstrip,
                            bool single_word) {
  // A later token with the same content replaces the earlier one.
  for (Entry& e : tokens_) {
    if (e.content == content) {
      e = Entry{std::move(content), id, lstrip, rstrip, single_word};
      return;
    }
  }
  unsigned char first = static_cast<unsigned char>(content[0]);
  tokens_.push_back(Entry{std::move(content), id, lstrip, rstrip, single_word});
  auto& list = by_first_byte_[first];
  list.push_back(static_cast<uint32_t>(tokens_.size() - 1));
  std::stable_sort(list.begin(), list.end(), [this](uint32_t a, uint32_t b) {
    return tokens_[a].content.size() > tokens_[b].content.size();
  });
}

void AddedTokenMatcher::Split(std::string_view text, std::vector<Piece>* out) const {
  const size_t n = text.size();
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  size_t start_offset = 0;
  size_t i = 0;
  while (i < n) {
    const auto& cands = by_first_byte_[p[i]];
    if (cands.empty()) {
      ++i;
      continue;
    }
    const Entry* hit = nullptr;
    for (uint32_t k : cands) {
      const Entry& e = tokens_[k];
      if (e.content.size() <= n - i && std::memcmp(p + i, e.content.data(), e.content.size()) == 0) {
        hit = &e;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t start = i, stop = i + hit->content.size();
    i = stop;  // the next search starts after this match, as aho-corasick's find_iter does
    if (hit->single_word) {
      bool start_ok = start == 0 || !IsWordByte(p[start - 1]);
      bool stop_ok = stop == n || !IsWordByte(p[stop]);
      if (!start_ok || !stop_ok) continue;
    }
    if (hit->lstrip) {
      size_t s = start;
      while (s > start_offset && IsSpaceByte(p[s - 1])) --s;
      start = s;
    }
    if (hit->rstrip) {
      while (stop < n && IsSpaceByte(p[stop])) ++stop;
      i = std::max(i, stop);
    }
    if (start_offset < start) out->push_back(Piece{start_offset, start, -1});
    out->push_back(Piece{start, stop, hit->id});
    start_offset = stop;
  }
  if (start_offset < n) out->push_back(Piece{start_offset, n, -1});
}

}  // namespace r1::tokenizer
