#include "worker/tokenizer/detokenizer.h"

#include "worker/tokenizer/utf8.h"

namespace r1::tokenizer {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer,
                                               bool skip_special_tokens)
    : tok_(tokenizer), skip_special_(skip_special_tokens) {}

std::string IncrementalDetokenizer::Add(int32_t id) {
  if (!tok_.IsKnown(id) || (skip_special_ && tok_.IsSpecial(id))) return {};
  std::string_view bytes = tok_.TokenBytes(id);
  std::string out;
  if (pending_.empty()) {
    size_t used = AppendUtf8Lossy(bytes, &out, /*hold_incomplete_tail=*/true);
    pending_.assign(bytes.substr(used));
    return out;
  }
  pending_.append(bytes);
  size_t used = AppendUtf8Lossy(pending_, &out, /*hold_incomplete_tail=*/true);
  pending_.erase(0, used);
  return out;
}

std::string IncrementalDetokenizer::Finish() {
  std::string out;
  AppendUtf8Lossy(pending_, &out);
  pending_.clear();
  return out;
}

}  // namespace r1::tokenizer
