#include "gateway/openai/reasoning.h"

namespace r1::gw {
namespace {
constexpr std::string_view kStart = "<think>";
constexpr std::string_view kEnd = "</think>";

void AppendWithoutStart(std::string* out, std::string_view s) {
  size_t pos;
  while ((pos = s.find(kStart)) != std::string_view::npos) {
    out->append(s.substr(0, pos));
    s.remove_prefix(pos + kStart.size());
  }
  out->append(s);
}
}  // namespace

SplitText ReasoningSplitter::Feed(std::string_view text) {
  SplitText out;
  if (!in_reasoning_) {
    out.content.assign(text);
    return out;
  }
  std::string buf = std::move(pending_);
  pending_.clear();
  buf.append(text);
  size_t end = buf.find(kEnd);
  if (end != std::string::npos) {
    AppendWithoutStart(&out.reasoning, std::string_view(buf).substr(0, end));
    out.content = buf.substr(end + kEnd.size());
    in_reasoning_ = false;
    return out;
  }
  // Hold back the longest suffix that could start "</think>" (or "<think>").
  size_t keep = 0;
  for (size_t k = std::min(buf.size(), kEnd.size() - 1); k > 0; --k) {
    std::string_view tail = std::string_view(buf).substr(buf.size() - k);
    if (kEnd.substr(0, k) == tail || kStart.substr(0, std::min(k, kStart.size())) == tail) {
      keep = k;
      break;
    }
  }
  AppendWithoutStart(&out.reasoning, std::string_view(buf).substr(0, buf.size() - keep));
  pending_ = buf.substr(buf.size() - keep);
  return out;
}

SplitText ReasoningSplitter::Finish() {
  SplitText out;
  if (in_reasoning_) AppendWithoutStart(&out.reasoning, pending_);
  pending_.clear();
  return out;
}

}  // namespace r1::gw
