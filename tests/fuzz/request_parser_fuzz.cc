// libFuzzer target: the OpenAI request parser must never crash, hang or leak on any bytes,
// and what it accepts must satisfy the documented limits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gateway/openai/request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the route.
  auto kind = data[0] & 1 ? r1::gw::ApiKind::kChat : r1::gw::ApiKind::kCompletion;
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  auto r = r1::gw::ParseGenRequest(kind, body);
  if (r.ok()) {
    const auto& p = *r;
    bool sane = !p.model.empty() && p.temperature >= 0 && p.temperature <= 2 && p.top_p > 0 &&
                p.top_p <= 1 && p.stop.size() <= 16 && p.n >= 1 && p.top_logprobs <= 20 &&
                (kind == r1::gw::ApiKind::kChat
                     ? !p.messages.empty() && p.n <= r1::gw::kMaxChoices
                     : !p.prompts.empty() && p.prompts.size() * p.n <= r1::gw::kMaxChoices);
    for (const auto& pr : p.prompts)
      if (!pr.text && pr.ids.empty()) std::abort();
    if (!sane) std::abort();
  } else if (r.status().code() != absl::StatusCode::kInvalidArgument) {
    std::abort();
  }
  return 0;
}
