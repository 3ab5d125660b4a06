// UTF-8 helpers for the tokenizer: strict validation and lossy decoding as Rust's
// String::from_utf8_lossy does it (which is what Hugging Face tokenizers' decoders use).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace r1::tokenizer {

// Returns the byte offset of the first invalid sequence, or std::string_view::npos when
// `s` is valid UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF).
size_t FindInvalidUtf8(std::string_view s);

// Length of the valid UTF-8 sequence starting at s[i], or 0 when none starts there. When
// `incomplete` is given it is set to true when the bytes from i on are a proper prefix of
// a valid sequence that runs past the end of s.
size_t Utf8SequenceLength(std::string_view s, size_t i, bool* incomplete = nullptr);

// Appends `bytes` to *out, replacing every maximal invalid subpart with U+FFFD.
// When `hold_incomplete_tail` is true, a trailing proper prefix of a valid sequence is not
// consumed; the return value is the number of bytes consumed.
size_t AppendUtf8Lossy(std::string_view bytes, std::string* out,
                       bool hold_incomplete_tail = false);

// Decodes the code point at s[i] (which must be valid UTF-8) and advances i.
inline uint32_t DecodeUtf8(std::string_view s, size_t& i) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  uint32_t b0 = p[i];
  if (b0 < 0x80) {
    i += 1;
    return b0;
  }
  if (b0 < 0xE0) {
    uint32_t cp = ((b0 & 0x1F) << 6) | (p[i + 1] & 0x3F);
    i += 2;
    return cp;
  }
  if (b0 < 0xF0) {
    uint32_t cp = ((b0 & 0x0F) << 12) | ((p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
    i += 3;
    return cp;
  }
  uint32_t cp = ((b0 & 0x07) << 18) | ((p[i + 1] & 0x3F) << 12) | ((p[i + 2] & 0x3F) << 6) |
                (p[i + 3] & 0x3F);
  i += 4;
  return cp;
}

void AppendUtf8(uint32_t cp, std::string* out);

}  // namespace r1::tokenizer
