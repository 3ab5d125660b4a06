// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json (Qwen2 / DeepSeek-R1-Distill
// layout), encoding and decoding exactly as the `tokenizers` library does:
//   added tokens (special or not) are found in the text first, longest match first;
//   the rest is NFC-normalised, split by the pre-tokenizer's regex (PCRE2 with JIT),
//   mapped to bytes and merged with the BPE merge ranks;
//   decoding maps tokens back to bytes and replaces broken UTF-8 with U+FFFD.
// Thread-safe: one Tokenizer may be used from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace r1::tokenizer {

class Tokenizer {
 public:
  struct Impl;

  // Reads a tokenizer.json file.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& tokenizer_json);
  // Reads dir/tokenizer.json.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromDir(const std::string& dir);
  // FromDir when `path` is a directory, FromFile otherwise.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromPath(const std::string& path);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // No special tokens are added; added and special tokens written in the text are recognised
  // as Hugging Face tokenizers does. Input that is not valid UTF-8 is InvalidArgument.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text) const;
  // Appends to *ids (no clearing). Same contract as Encode.
  absl::Status EncodeAppend(std::string_view text, std::vector<int32_t>* ids) const;

  // An id this tokenizer does not know is InvalidArgument naming it.
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids,
                                     bool skip_special_tokens = false) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The token as written in tokenizer.json; "" for an unknown id.
  std::string IdToToken(int32_t id) const;
  // Highest id + 1.
  int64_t vocab_size() const;
  // True for added tokens marked "special" (those skip_special_tokens drops).
  bool IsSpecial(int32_t id) const;
  // True for every added token, special or not (e.g. <think>): text the model writes as a
  // whole, never as vocabulary pieces.
  bool IsAdded(int32_t id) const;
  // True when the id is known (a vocabulary or added token).
  bool IsKnown(int32_t id) const;
  // The bytes a token decodes to (before UTF-8 repair); empty for an unknown id.
  std::string_view TokenBytes(int32_t id) const;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace r1::tokenizer
