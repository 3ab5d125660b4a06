#include "worker/grammar/utf8_ranges.h"

#include <algorithm>

namespace r1::grammar {
namespace {

constexpr uint32_t kSurrogateLo = 0xD800, kSurrogateHi = 0xDFFF;

int Utf8Length(uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

// Encodes cp into exactly n bytes.
void Encode(uint32_t cp, int n, uint8_t* out) {
  if (n == 1) {
    out[0] = static_cast<uint8_t>(cp);
    return;
  }
  for (int i = n - 1; i > 0; --i) {
    out[i] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    cp >>= 6;
  }
  static const uint8_t kLead[] = {0, 0, 0xC0, 0xE0, 0xF0};
  out[0] = static_cast<uint8_t>(kLead[n] | cp);
}

// [lo, hi] with one encoded length: split until every byte position is an independent range
// (the classic construction of RE2 and Rust's regex-syntax).
void AddSameLength(Nfa& nfa, int32_t from, int32_t to, uint32_t lo, uint32_t hi) {
  const int n = Utf8Length(lo);
  for (int i = 1; i < n; ++i) {
    const uint32_t m = (1u << (6 * i)) - 1;  // the low bits that continuation bytes hold
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        AddSameLength(nfa, from, to, lo, lo | m);
        AddSameLength(nfa, from, to, (lo | m) + 1, hi);
        return;
      }
      if ((hi & m) != m) {
        AddSameLength(nfa, from, to, lo, (hi & ~m) - 1);
        AddSameLength(nfa, from, to, hi & ~m, hi);
        return;
      }
    }
  }
  uint8_t a[4], b[4];
  Encode(lo, n, a);
  Encode(hi, n, b);
  int32_t cur = from;
  for (int i = 0; i < n; ++i) {
    const int32_t next = i + 1 == n ? to : nfa.NewState();
    nfa.AddBytes(cur, a[i], b[i], next);
    cur = next;
  }
}

}  // namespace

CodepointSet CodepointSet::Of(uint32_t lo, uint32_t hi) {
  CodepointSet s;
  s.Add(lo, hi);
  return s;
}

CodepointSet CodepointSet::All() { return Of(0, kMaxCodepoint); }

void CodepointSet::Add(uint32_t lo, uint32_t hi) {
  hi = std::min(hi, kMaxCodepoint);
  if (lo > hi) return;
  ranges_.push_back({lo, hi});
  Normalize();
}

void CodepointSet::Add(const CodepointSet& other) {
  ranges_.insert(ranges_.end(), other.ranges_.begin(), other.ranges_.end());
  Normalize();
}

void CodepointSet::Normalize() {
  // Cut out the surrogates, then sort and merge.
  std::vector<std::pair<uint32_t, uint32_t>> cut;
  for (auto [lo, hi] : ranges_) {
    if (hi < kSurrogateLo || lo > kSurrogateHi) {
      cut.push_back({lo, hi});
      continue;
    }
    if (lo < kSurrogateLo) cut.push_back({lo, kSurrogateLo - 1});
    if (hi > kSurrogateHi) cut.push_back({kSurrogateHi + 1, hi});
  }
  std::sort(cut.begin(), cut.end());
  ranges_.clear();
  for (auto r : cut) {
    if (!ranges_.empty() && r.first <= ranges_.back().second + 1)
      ranges_.back().second = std::max(ranges_.back().second, r.second);
    else
      ranges_.push_back(r);
  }
}

CodepointSet CodepointSet::Complement() const {
  CodepointSet out;
  uint32_t next = 0;
  for (auto [lo, hi] : ranges_) {
    if (lo > next) out.ranges_.push_back({next, lo - 1});
    next = hi + 1;
  }
  if (next <= kMaxCodepoint) out.ranges_.push_back({next, kMaxCodepoint});
  out.Normalize();
  return out;
}

void AddUtf8Paths(Nfa& nfa, int32_t from, int32_t to, const CodepointSet& set) {
  static const uint32_t kLengthEnds[] = {0x7F, 0x7FF, 0xFFFF, kMaxCodepoint};
  for (auto [lo, hi] : set.ranges()) {
    // Split at the encoded-length boundaries first.
    for (uint32_t end : kLengthEnds) {
      if (lo > hi) break;
      if (lo > end) continue;
      const uint32_t piece_hi = std::min(hi, end);
      AddSameLength(nfa, from, to, lo, piece_hi);
      lo = piece_hi + 1;
    }
  }
}

Frag CodepointFrag(Nfa& nfa, const CodepointSet& set) {
  Frag f{nfa.NewState(), nfa.NewState()};
  AddUtf8Paths(nfa, f.in, f.out, set);
  return f;
}

}  // namespace r1::grammar
