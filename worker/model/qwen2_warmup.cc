// Qwen2Model::WarmUp: the first steps a server runs, before any request arrives.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "worker/model/qwen2.h"

namespace r1::model {

absl::Status Qwen2Model::WarmUp(KvCache& cache, int64_t max_batch, int64_t max_tokens,
                                int64_t max_context) {
  if (!device_.is_cuda()) return absl::OkStatus();
  const int64_t bs = cache.block_size();
  const int64_t blocks = cache.num_blocks();
  auto table = [&](int64_t len) {  // every sequence shares the first blocks: nothing is live yet
    std::vector<int32_t> t;
    for (int64_t b = 0; b < (len + bs - 1) / bs; ++b) t.push_back(static_cast<int32_t>(b % blocks));
    return t;
  };
  // One big prompt step: the activations of the largest step the scheduler plans.
  max_tokens = std::min({max_tokens, config_.max_position_embeddings, blocks * bs});
  if (max_tokens > 1) {
    StepBatch b;
    b.tokens.assign(static_cast<size_t>(max_tokens), 0);
    SequenceStep s;
    s.num_new = max_tokens;
    s.block_table = table(max_tokens);
    b.seqs.push_back(s);
    auto r = Forward(b, cache);
    if (!r.ok()) return absl::Status(r.status().code(), absl::StrCat("warm-up prefill: ", r.status().message()));
  }
  if (!cuda_graphs_) return absl::OkStatus();
  // Decode steps at each captured batch size and context bucket (64, 128, ...).
  max_context = std::min({max_context, config_.max_position_embeddings, blocks * bs});
  for (int64_t batch = 1; batch <= max_batch; batch *= 2) {
    for (int64_t ctx = 64; ctx / 2 < max_context; ctx *= 2) {
      const int64_t len = std::min(ctx, max_context);  // the bucket's longest context
      StepBatch b;
      b.tokens.assign(static_cast<size_t>(batch), 0);
      for (int64_t i = 0; i < batch; ++i) {
        SequenceStep s;
        s.num_cached = len - 1;
        s.num_new = 1;
        s.block_table = table(len);
        b.seqs.push_back(std::move(s));
      }
      auto r = Forward(b, cache);
      if (!r.ok())
        return absl::Status(r.status().code(), absl::StrCat("warm-up decode (batch ", batch,
                                                            ", context ", len, "): ", r.status().message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace r1::model
