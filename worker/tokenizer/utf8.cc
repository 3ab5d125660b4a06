#include "worker/tokenizer/utf8.h"

namespace r1::tokenizer {

namespace {

// For a lead byte: the sequence length and the allowed range of the second byte; false when
// the byte can never start a sequence.
bool LeadByte(uint8_t b0, size_t* need, uint8_t* lo, uint8_t* hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    *need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    *need = 3;
    if (b0 == 0xE0) *lo = 0xA0;
    if (b0 == 0xED) *hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    *need = 4;
    if (b0 == 0xF0) *lo = 0x90;
    if (b0 == 0xF4) *hi = 0x8F;
  } else {
    return false;
  }
  return true;
}

}  // namespace

size_t Utf8SequenceLength(std::string_view s, size_t i, bool* incomplete) {
  if (incomplete) *incomplete = false;
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  uint8_t b0 = p[i];
  if (b0 < 0x80) return 1;
  size_t need;
  uint8_t lo, hi;
  if (!LeadByte(b0, &need, &lo, &hi)) return 0;
  for (size_t k = 1; k < need; ++k) {
    if (i + k >= n) {
      if (incomplete) *incomplete = true;
      return 0;
    }
    uint8_t b = p[i + k];
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
  }
  return need;
}

size_t FindInvalidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      __builtin_memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t len = Utf8SequenceLength(s, i);
    if (len == 0) return i;
    i += len;
  }
  return std::string_view::npos;
}

// Length of the maximal invalid subpart at s[i] (at least 1), as Rust's Utf8Chunks counts it.
static size_t InvalidSubpartLength(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t need;
  uint8_t lo, hi;
  if (!LeadByte(p[i], &need, &lo, &hi)) return 1;
  size_t k = 1;
  for (; k < need && i + k < n; ++k) {
    uint8_t b = p[i + k];
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
  }
  return k;
}

size_t AppendUtf8Lossy(std::string_view bytes, std::string* out, bool hold_incomplete_tail) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  size_t run = 0;  // start of the current run of valid bytes
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    bool incomplete = false;
    size_t len = Utf8SequenceLength(bytes, i, &incomplete);
    if (len) {
      i += len;
      continue;
    }
    out->append(bytes.data() + run, i - run);
    if (incomplete && hold_incomplete_tail) return i;
    i += InvalidSubpartLength(bytes, i);
    out->append("\xEF\xBF\xBD");
    run = i;
  }
  out->append(bytes.data() + run, n - run);
  return n;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace r1::tokenizer
