// The CUDA path of Qwen2Model (built only when libtorch has CUDA; see worker/model/CMakeLists.txt).
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>

#include <cmath>
#include <limits>
#include <map>

#include "worker/model/qwen2_internal.h"

namespace r1::model {

// Captured decode graphs, keyed by (batch size, context bucket). A graph bakes in the
// addresses of the KV cache it was captured with: a different cache drops them all.
struct Qwen2Model::CudaState {
  struct Entry {
    std::unique_ptr<at::cuda::CUDAGraph> graph;
    at::Tensor packed;  // the static input buffer the graph reads
    at::Tensor out;     // the static logits it writes
  };
  std::map<std::pair<int64_t, int64_t>, Entry> entries;
  std::vector<const void*> cache_key;  // every layer's K and V address, then the block count
  decltype(at::cuda::graph_pool_handle()) pool;  // one memory pool shared by all graphs
  bool has_pool = false;
};

// Decode graphs are captured for batch sizes 1, 2, 4, ... up to this one (a batch is padded up
// to the next captured size) and context buckets 64, 128, ... up to kMaxGraphContext; beyond
// either, the step runs eagerly.
constexpr int64_t kMaxGraphBatch = 256;
constexpr int64_t kMaxGraphContext = 32768;


at::Tensor Qwen2Model::DecodeBody(const at::Tensor& packed, int64_t B, int64_t C, KvCache& cache) {
  const ModelConfig& c = config_;
  const Weights& w = *weights_;
  const int64_t nh = c.num_attention_heads, kvh = c.num_key_value_heads, D = c.head_dim();
  const int64_t g = nh / kvh;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  at::Tensor ids = packed.narrow(0, 0, B), pos = packed.narrow(0, B, B);
  at::Tensor slots = packed.narrow(0, 2 * B, B), lens = packed.narrow(0, 3 * B, B);
  at::Tensor ctx = packed.narrow(0, 4 * B, B * C);
  // Keys at or past each sequence's length are padding: -inf before the softmax.
  at::Tensor mask = at::zeros({B, C}, packed.options().dtype(at::kFloat))
                        .masked_fill_(at::arange(C, packed.options()).unsqueeze(0) >= lens.unsqueeze(1),
                                      -std::numeric_limits<float>::infinity())
                        .view({B, 1, 1, C});
  // RoPE for q and k at once, in three kernels: x * cos2 + rotate(x) * sin2, where
  // rotate(x) = [x2, x1], cos2 = [cos, cos], sin2 = [-sin, sin].
  at::Tensor freqs = pos.to(at::kFloat).unsqueeze(1) * w.inv_freq.unsqueeze(0);  // [B, D/2]
  at::Tensor cos = freqs.cos(), sin = freqs.sin();
  at::Tensor cos2 = at::cat({cos, cos}, -1).to(dtype_).unsqueeze(1);
  at::Tensor sin2 = at::cat({-sin, sin}, -1).to(dtype_).unsqueeze(1);
  const int64_t half = D / 2;
  at::Tensor x = at::embedding(w.embed, ids);  // [B, H]
  for (size_t li = 0; li < w.layers.size(); ++li) {
    const Layer& l = w.layers[li];
    at::Tensor h = RmsNorm(x, l.input_norm, c.rms_norm_eps);
    at::Tensor qkv = at::linear(h, l.wqkv, l.bqkv);
    at::Tensor qk = qkv.narrow(1, 0, (nh + kvh) * D).view({B, nh + kvh, D});
    at::Tensor rot = at::cat({qk.narrow(-1, half, half), qk.narrow(-1, 0, half)}, -1);
    qk = at::addcmul(qk * cos2, rot, sin2);
    at::Tensor q = qk.narrow(1, 0, nh), k = qk.narrow(1, nh, kvh);
    at::Tensor v = qkv.narrow(1, (nh + kvh) * D, kvh * D).view({B, kvh, D});
    at::Tensor& kc = cache.k(static_cast<int64_t>(li));
    at::Tensor& vc = cache.v(static_cast<int64_t>(li));
    kc.index_copy_(0, slots, k);
    vc.index_copy_(0, slots, v);
    at::Tensor keys = kc.index_select(0, ctx).view({B, C, kvh, D});
    at::Tensor vals = vc.index_select(0, ctx).view({B, C, kvh, D});
    at::Tensor scores = at::matmul(q.reshape({B, kvh, g, D}), keys.permute({0, 2, 3, 1}));
    // mask + scale * scores, in float32 (one kernel), then the softmax.
    at::Tensor probs = at::softmax(at::add(mask, scores, scale), -1).to(dtype_);  // [B, kvh, g, C]
    at::Tensor out = at::matmul(probs, vals.permute({0, 2, 1, 3}));                   // [B, kvh, g, D]
    x.add_(at::linear(out.reshape({B, nh * D}), l.wo));
    h = RmsNorm(x, l.post_norm, c.rms_norm_eps);
    at::Tensor act;
    if (l.wgate_up.defined()) {
      at::Tensor gu = at::linear(h, l.wgate_up);
      const int64_t I = l.wgate.size(0);
      act = at::silu(gu.narrow(1, 0, I)).mul_(gu.narrow(1, I, I));
    } else {
      act = at::silu(at::linear(h, l.wgate)).mul_(at::linear(h, l.wup));
    }
    x.add_(at::linear(act, l.wdown));
  }
  return at::linear(RmsNorm(x, w.norm, c.rms_norm_eps), w.lm_head).to(at::kFloat);
}

at::Tensor Qwen2Model::GraphDecode(const StepBatch& batch, KvCache& cache) {
  const int64_t real_b = static_cast<int64_t>(batch.seqs.size());
  if (real_b > kMaxGraphBatch) return {};
  int64_t B = 1;
  while (B < real_b) B *= 2;
  int64_t max_len = 0;
  for (const SequenceStep& s : batch.seqs) {
    if (s.num_new != 1 || s.num_cached == 0 || !s.want_logits) return {};
    max_len = std::max(max_len, s.num_cached + 1);
  }
  int64_t C = 64;
  while (C < max_len) C *= 2;
  if (C > kMaxGraphContext) return {};
  if (!cuda_) cuda_ = std::make_shared<CudaState>();
  CudaState& gs = *cuda_;
  std::vector<const void*> key;
  for (int64_t li = 0; li < config_.num_hidden_layers; ++li) {
    key.push_back(cache.k(li).data_ptr());
    key.push_back(cache.v(li).data_ptr());
  }
  key.push_back(reinterpret_cast<const void*>(cache.num_blocks() * 4096 + cache.block_size()));
  if (key != gs.cache_key) {
    gs.entries.clear();
    gs.cache_key = std::move(key);
  }
  // Inputs, packed: ids, positions, slots, lengths [B] each, then each sequence's C context
  // slots (padding repeats its first slot; the mask hides it). Padding rows (real_b..B) repeat
  // sequence 0 exactly: they write the same K/V into the same slot, so they change nothing.
  const int64_t bs = cache.block_size();
  std::vector<int64_t> host(static_cast<size_t>(4 * B + B * C));
  for (int64_t i = 0; i < B; ++i) {
    const int64_t r = i < real_b ? i : 0;
    const SequenceStep& s = batch.seqs[static_cast<size_t>(r)];
    auto slot_of = [&](int64_t p) { return int64_t{s.block_table[static_cast<size_t>(p / bs)]} * bs + p % bs; };
    const int64_t len = s.num_cached + 1;
    host[static_cast<size_t>(i)] = batch.tokens[static_cast<size_t>(r)];
    host[static_cast<size_t>(B + i)] = s.num_cached;
    host[static_cast<size_t>(2 * B + i)] = slot_of(s.num_cached);
    host[static_cast<size_t>(3 * B + i)] = len;
    int64_t* row = host.data() + 4 * B + i * C;
    for (int64_t p = 0; p < C; ++p) row[p] = p < len ? slot_of(p) : row[0];
  }
  at::Tensor src = at::from_blob(host.data(), {static_cast<int64_t>(host.size())}, at::kLong);
  auto it = gs.entries.find({B, C});
  if (it == gs.entries.end()) {
    c10::cuda::CUDAGuard device_guard(device_);
    CudaState::Entry e;
    e.packed = src.to(device_);
    at::cuda::getCurrentCUDAStream().synchronize();
    at::cuda::CUDAStream side = at::cuda::getStreamFromPool(false, device_.index());
    {
      c10::cuda::CUDAStreamGuard stream_guard(side);
      // Warm-up off the graph (it writes the same K/V the replay writes), then capture.
      DecodeBody(e.packed, B, C, cache);
      side.synchronize();
      if (!gs.has_pool) {
        gs.pool = at::cuda::graph_pool_handle();
        gs.has_pool = true;
      }
      e.graph = std::make_unique<at::cuda::CUDAGraph>();
      e.graph->capture_begin(gs.pool, cudaStreamCaptureModeThreadLocal);
      e.out = DecodeBody(e.packed, B, C, cache);
      e.graph->capture_end();
    }
    side.synchronize();
    it = gs.entries.emplace(std::make_pair(B, C), std::move(e)).first;
  } else {
    it->second.packed.copy_(src);
  }
  it->second.graph->replay();
  return it->second.out.narrow(0, 0, real_b).clone();  // the next replay overwrites `out`
}

at::Tensor Qwen2Model::CudaForward(const StepBatch& batch, KvCache& cache) {
  if (cuda_graphs_) {
    at::Tensor out = GraphDecode(batch, cache);
    if (out.defined()) return out;
  }
  return EagerForward(batch, cache);
}

}  // namespace r1::model
