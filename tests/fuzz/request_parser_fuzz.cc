// libFuzzer target: the OpenAI request parser must never crash, hang or leak on any bytes,
// and what it accepts must satisfy the documented limits. The same bytes, as model output,
// go through the reasoning split in three pieces, which must give what one piece gives.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gateway/openai/reasoning.h"
#include "gateway/openai/request.h"

namespace {
r1::gw::SplitText SplitPieces(std::string_view text, size_t a, size_t b) {
  r1::gw::ReasoningSplitter s(true);
  r1::gw::SplitText out;
  for (std::string_view piece : {text.substr(0, a), text.substr(a, b - a), text.substr(b)}) {
    r1::gw::SplitText t = s.Feed(piece);
    out.reasoning += t.reasoning;
    out.content += t.content;
  }
  r1::gw::SplitText t = s.Finish();
  out.reasoning += t.reasoning;
  out.content += t.content;
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the route.
  auto kind = data[0] & 1 ? r1::gw::ApiKind::kChat : r1::gw::ApiKind::kCompletion;
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  auto r = r1::gw::ParseGenRequest(kind, body);
  if (r.ok()) {
    const auto& p = *r;
    const auto& o = p.sampling;
    bool sane = !p.model.empty() && o.temperature >= 0 && o.temperature <= 2 && o.top_p > 0 &&
                o.top_p <= 1 && p.stop.size() <= 16 && p.n >= 1 && o.top_logprobs <= 20 &&
                (kind == r1::gw::ApiKind::kChat
                     ? !p.messages.empty() && p.n <= r1::gw::kMaxChoices
                     : !p.prompts.empty() && p.prompts.size() * p.n <= r1::gw::kMaxChoices);
    for (const auto& pr : p.prompts)
      if (!pr.text && pr.ids.empty()) std::abort();
    if (!sane) std::abort();
  } else if (r.status().code() != absl::StatusCode::kInvalidArgument) {
    std::abort();
  }
  size_t a = body.empty() ? 0 : data[0] % (body.size() + 1);
  size_t b = a + (body.size() - a) / 2;
  r1::gw::SplitText whole = SplitPieces(body, body.size(), body.size());
  r1::gw::SplitText pieces = SplitPieces(body, a, b);
  if (whole.reasoning != pieces.reasoning || whole.content != pieces.content) std::abort();
  return 0;
}
