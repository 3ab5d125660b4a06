// Streaming detokenization: text deltas that only ever end at whole UTF-8 characters.
// The deltas of Add() followed by Finish() concatenate to exactly Tokenizer::Decode(ids).
#pragma once

#include <cstdint>
#include <string>

#include "worker/tokenizer/tokenizer.h"

namespace r1::tokenizer {

class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens = false);

  // Returns the new complete text (possibly empty). A character split across tokens is held
  // back until it is whole; bytes that can never become valid come out as U+FFFD at once.
  // An unknown id adds nothing.
  std::string Add(int32_t id);
  // Whatever is held back, decoded as Hugging Face does (U+FFFD for incomplete bytes).
  std::string Finish();
  // Bytes held back right now.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace r1::tokenizer
