#include "worker/tokenizer/nfc.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "worker/tokenizer/utf8.h"

namespace r1::tokenizer {
namespace {

#include "worker/tokenizer/unicode_tables.inc"

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

struct Tables {
  std::vector<uint64_t> bmp_unsafe;  // one bit per BMP code point
  std::vector<uint8_t> bmp_ccc;      // combining class of every BMP code point
  absl::flat_hash_map<uint32_t, uint8_t> ccc;
  absl::flat_hash_map<uint32_t, std::pair<uint32_t, uint32_t>> decomp;  // offset, length
  absl::flat_hash_map<uint64_t, uint32_t> compose;

  Tables() : bmp_unsafe(65536 / 64, 0), bmp_ccc(65536, 0) {
    for (const auto& r : kNfcUnsafeRanges) {
      for (uint32_t cp = r[0]; cp <= r[1] && cp < 65536; ++cp) {
        bmp_unsafe[cp >> 6] |= uint64_t{1} << (cp & 63);
      }
    }
    for (const auto& e : kCccTable) {
      ccc[e[0]] = static_cast<uint8_t>(e[1]);
      if (e[0] < 65536) bmp_ccc[e[0]] = static_cast<uint8_t>(e[1]);
    }
    for (const auto& e : kDecompTable) decomp[e[0]] = {e[1], e[2]};
    for (const auto& e : kComposeTable) compose[(uint64_t{e[0]} << 32) | e[1]] = e[2];
  }
};

const Tables& T() {
  static const Tables* t = new Tables();
  return *t;
}

bool Unsafe(uint32_t cp) {
  if (cp < 0x300) return false;
  if (cp < 65536) return (T().bmp_unsafe[cp >> 6] >> (cp & 63)) & 1;
  // Supplementary planes: binary search over the ranges.
  const auto* begin = kNfcUnsafeRanges;
  const auto* end = kNfcUnsafeRanges + sizeof(kNfcUnsafeRanges) / sizeof(kNfcUnsafeRanges[0]);
  const auto* it = std::upper_bound(begin, end, cp,
                                    [](uint32_t v, const uint32_t(&r)[2]) { return v < r[0]; });
  if (it == begin) return false;
  --it;
  return cp <= (*it)[1];
}

uint8_t Ccc(uint32_t cp) {
  if (cp < 0x300) return 0;
  if (cp < 65536) return T().bmp_ccc[cp];
  auto it = T().ccc.find(cp);
  return it == T().ccc.end() ? 0 : it->second;
}

void Decompose(uint32_t cp, std::vector<uint32_t>* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    uint32_t s = cp - kSBase;
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out->push_back(kTBase + s % kTCount);
    return;
  }
  if (cp >= 0xC0) {
    auto it = T().decomp.find(cp);
    if (it != T().decomp.end()) {
      out->insert(out->end(), kDecompData + it->second.first,
                  kDecompData + it->second.first + it->second.second);
      return;
    }
  }
  out->push_back(cp);
}

// 0 when the pair does not compose.
uint32_t Compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  auto it = T().compose.find((uint64_t{a} << 32) | b);
  return it == T().compose.end() ? 0 : it->second;
}

}  // namespace

const char* NfcUnicodeVersion() { return kUnicodeVersion; }

bool IsNfcQuick(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    if (p[i] < 0xCC) {  // every code point below U+0300 is safe
      i += p[i] < 0x80 ? 1 : 2;
      continue;
    }
    if (Unsafe(DecodeUtf8(s, i))) return false;
  }
  return true;
}

namespace {

// Full NFC of a short stretch that starts at a safe code point (or at the start of the text).
void NormalizeStretch(std::string_view s, std::string* out) {
  // Canonical decomposition.
  thread_local std::vector<uint32_t> d, c;
  d.clear();
  c.clear();
  for (size_t i = 0; i < s.size();) Decompose(DecodeUtf8(s, i), &d);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (Ccc(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && Ccc(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j,
                     [](uint32_t a, uint32_t b) { return Ccc(a) < Ccc(b); });
    i = j;
  }
  // Canonical composition.
  size_t starter = SIZE_MAX;  // index in c of the last starter
  int last_ccc = -1;          // ccc of the last character kept after the starter
  for (uint32_t cp : d) {
    uint8_t cc = Ccc(cp);
    if (starter != SIZE_MAX) {
      bool blocked = last_ccc != -1 && (last_ccc == 0 || last_ccc >= cc);
      if (!blocked) {
        if (uint32_t comp = Compose(c[starter], cp)) {
          c[starter] = comp;
          continue;
        }
      }
    }
    c.push_back(cp);
    if (cc == 0) {
      starter = c.size() - 1;
      last_ccc = -1;
    } else {
      last_ccc = cc;
    }
  }
  for (uint32_t cp : c) AppendUtf8(cp, out);
}

}  // namespace

// Safe code points (combining class 0, NFC quick check Yes, never composing with what comes
// before) are normalisation boundaries: text between them is copied, and only the stretches
// around unsafe code points go through the full algorithm.
void AppendNfc(std::string_view s, std::string* out) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t flushed = 0;    // s[0, flushed) is in *out
  size_t last_safe = 0;  // start of the last safe code point at or after `flushed`
  size_t i = 0;
  while (i < n) {
    size_t at = i;
    uint32_t cp;
    if (p[i] < 0x80) {
      cp = p[i++];
    } else {
      cp = DecodeUtf8(s, i);
    }
    if (!Unsafe(cp)) {
      last_safe = at;
      continue;
    }
    // An unsafe stretch: from the safe code point before it to the next safe one.
    size_t begin = std::max(last_safe, flushed);
    while (i < n) {
      size_t j = i;
      uint32_t next = DecodeUtf8(s, j);
      if (!Unsafe(next)) break;
      i = j;
    }
    out->append(s.data() + flushed, begin - flushed);
    NormalizeStretch(s.substr(begin, i - begin), out);
    flushed = last_safe = i;
  }
  out->append(s.data() + flushed, n - flushed);
}

}  // namespace r1::tokenizer
