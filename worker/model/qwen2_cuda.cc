// The CUDA path of Qwen2Model (built only when libtorch has CUDA; see worker/model/CMakeLists.txt).
//
// One step, whatever mix of prefills and decodes it holds, runs a fixed set of kernels per layer:
//   qkv GEMM (+bias) -> RoPE + KV-cache write (kernels.cu) -> attention -> o GEMM
//   -> residual add + RMSNorm (kernels.cu) -> gate/up GEMM -> SiLU-and-mul (kernels.cu)
//   -> down GEMM -> residual add + RMSNorm with the next layer's weight (kernels.cu).
// Attention: every query goes through one paged-attention launch that reads only its own
// sequence's live KV blocks, except long prompt chunks with nothing cached (fresh prefills of
// more than kSdpaMinTokens), which go through scaled_dot_product_attention (flash) instead.
// The host's index arithmetic (ids, positions, slots, block tables, logit rows) travels to the
// device as one int32 buffer in one copy.
//
// Decode steps (each sequence feeds one token) replay a CUDA graph captured for (batch size,
// context bucket): batch sizes 1, 2, 4, ..., 256 (padding rows repeat row 0: they write the same
// K/V into the same slot, so they change nothing) and contexts 64, 128, ..., 32768 keys (the
// width of the block-table rows). Larger batches or contexts run the same code eagerly.
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/version.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <utility>

#include "worker/model/cuda/kernels.h"
#include "worker/model/qwen2_internal.h"

namespace r1::model {

// scaled_dot_product_attention (flash on CUDA) for fresh prompt chunks longer than
// kSdpaMinTokens (shorter ones are cheap in the paged kernel, and each SDPA call costs ~20 ATen
// ops of host time a layer): libtorch >= 2.0; older ones send every query through the paged
// kernel.
constexpr int64_t kSdpaMinTokens = 256;
#if TORCH_VERSION_MAJOR >= 2
constexpr bool kHaveSdpa = true;
#else
constexpr bool kHaveSdpa = false;
#endif
constexpr int64_t kMaxGraphBatch = 256;
constexpr int64_t kMaxGraphContext = 32768;

struct Qwen2Model::CudaState {
  // Where each input sits in the packed int32 buffer of a step.
  struct Layout {
    int64_t T = 0;   // tokens fed
    int64_t Bq = 0;  // paged-attention queries
    int64_t S = 0;   // block-table rows
    int64_t MB = 0;  // blocks per row
    int64_t R = 0;   // logit rows
    int nsplit = 1;  // paged-attention key splits
    bool identity_logits = false;  // logit rows are 0..T-1
    int64_t size() const { return 3 * T + 3 * Bq + S * MB + R; }
  };
  struct Plan {
    Layout lay;
    std::vector<int32_t> host;                     // the packed buffer
    std::vector<std::pair<int64_t, int64_t>> sdpa;  // (first row, rows) of fresh prompt chunks
  };
  struct Entry {
    std::unique_ptr<at::cuda::CUDAGraph> graph;
    Layout lay;
    at::Tensor packed;  // the static input buffer the graph reads
    at::Tensor out;     // the static logits it writes
  };

  Qwen2Model& m;
  int num_sms = 0;
  std::map<std::pair<int64_t, int64_t>, Entry> entries;
  std::vector<const void*> cache_key;  // every layer's K and V address, then the cache geometry
  decltype(at::cuda::graph_pool_handle()) pool;  // one memory pool shared by all graphs
  bool has_pool = false;

  // Paged attention's per-(query, kv head) counters for merging key splits: zero between launches.
  // Allocated once, for the most queries a launch takes, so captured graphs keep their address.
  at::Tensor split_counters;
  // Steps of at most this many tokens use the fused GEMVs (R1_GEMV_MAX_ROWS overrides it).
  int gemv_max_rows = 1;
  // Outputs per warp of the projections' GEMVs (R1_GEMV_UNITS overrides it; 0: the kernel's).
  int gemv_units = 0;
  // Paged attention's key splits (R1_ATTN_SPLITS overrides the heuristic; 0: SplitsFor's).
  int attn_splits = 0;

  explicit CudaState(Qwen2Model& model) : m(model) {
    num_sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
    split_counters = at::zeros({65536 * m.config_.num_key_value_heads},
                               at::TensorOptions().dtype(at::kInt).device(m.device_));
    if (const char* env = std::getenv("R1_GEMV_MAX_ROWS"))
      gemv_max_rows = std::clamp(std::atoi(env), 0, cuda::kGemvMaxRows);
    if (const char* env = std::getenv("R1_GEMV_UNITS")) gemv_units = std::clamp(std::atoi(env), 0, 64);
    if (const char* env = std::getenv("R1_ATTN_SPLITS")) attn_splits = std::clamp(std::atoi(env), 0, 64);
  }

  cuda::DType KernelDType() const {
    switch (m.dtype_) {
      case at::kBFloat16: return cuda::DType::kBF16;
      case at::kHalf: return cuda::DType::kF16;
      default: return cuda::DType::kF32;
    }
  }

  // Key splits for the paged attention: enough thread blocks to fill the GPU twice when there
  // are few queries, and at least 8 keys a split (on the H100 at batch 1 and 129 keys: 16
  // splits 2.37 ms a step, 8 splits 2.54, 4 splits 2.42, 2 splits 2.75, 1 split 3.12).
  int SplitsFor(int64_t queries, int64_t max_len) const {
    if (attn_splits > 0) return std::min<int>(attn_splits, static_cast<int>(std::max<int64_t>(1, max_len)));
    const int64_t blocks = std::max<int64_t>(1, queries * m.config_.num_key_value_heads);
    const int64_t want = (2 * num_sms + blocks - 1) / blocks;
    const int64_t most = std::max<int64_t>(1, (max_len + 7) / 8);
    return static_cast<int>(std::clamp<int64_t>(std::min(want, most), 1, 64));
  }

  // Host-side arithmetic for a general step. Fresh prompt chunks (nothing cached, 2+ tokens)
  // go to SDPA; every other token is a paged-attention query.
  Plan MakePlan(const StepBatch& batch, int64_t bs) const {
    Plan p;
    Layout& L = p.lay;
    L.T = static_cast<int64_t>(batch.tokens.size());
    std::vector<int32_t> pos, slots, q_rows, q_lens, q_seq, logit_rows;
    std::vector<const SequenceStep*> paged;
    int64_t off = 0, max_len = 0;
    for (const SequenceStep& s : batch.seqs) {
      auto slot_of = [&](int64_t q) {
        return static_cast<int32_t>(int64_t{s.block_table[static_cast<size_t>(q / bs)]} * bs + q % bs);
      };
      const bool fresh = kHaveSdpa && s.num_cached == 0 && s.num_new > kSdpaMinTokens;
      for (int64_t j = 0; j < s.num_new; ++j) {
        pos.push_back(static_cast<int32_t>(s.num_cached + j));
        slots.push_back(slot_of(s.num_cached + j));
        if (!fresh) {
          q_rows.push_back(static_cast<int32_t>(off + j));
          q_lens.push_back(static_cast<int32_t>(s.num_cached + j + 1));
          q_seq.push_back(static_cast<int32_t>(paged.size()));
        }
      }
      if (fresh) {
        p.sdpa.emplace_back(off, s.num_new);
      } else {
        paged.push_back(&s);
        max_len = std::max(max_len, s.num_cached + s.num_new);
      }
      off += s.num_new;
      if (s.want_logits) logit_rows.push_back(static_cast<int32_t>(off - 1));
    }
    L.Bq = static_cast<int64_t>(q_rows.size());
    L.S = static_cast<int64_t>(paged.size());
    L.MB = (max_len + bs - 1) / bs;
    L.R = static_cast<int64_t>(logit_rows.size());
    L.nsplit = SplitsFor(L.Bq, max_len);
    L.identity_logits = L.R == L.T;
    for (int64_t i = 0; i < L.R && L.identity_logits; ++i) L.identity_logits = logit_rows[i] == i;
    p.host.reserve(static_cast<size_t>(L.size()));
    for (int32_t t : batch.tokens) p.host.push_back(t);
    auto append = [&](const std::vector<int32_t>& v) { p.host.insert(p.host.end(), v.begin(), v.end()); };
    append(pos);
    append(slots);
    append(q_rows);
    append(q_lens);
    append(q_seq);
    for (const SequenceStep* s : paged) {
      for (int64_t b = 0; b < L.MB; ++b)
        p.host.push_back(b < static_cast<int64_t>(s->block_table.size()) ? s->block_table[static_cast<size_t>(b)] : 0);
    }
    append(logit_rows);
    return p;
  }

  // A pinned host copy of the packed buffer (so the upload is asynchronous; libtorch's host
  // allocator keeps the block until the copy is done).
  static at::Tensor Pinned(const std::vector<int32_t>& v) {
    at::Tensor t = at::empty({static_cast<int64_t>(v.size())},
                             at::TensorOptions().dtype(at::kInt).pinned_memory(true));
    std::memcpy(t.data_ptr(), v.data(), v.size() * sizeof(int32_t));
    return t;
  }

  static void Check(int rc) { C10_CUDA_CHECK(static_cast<cudaError_t>(rc)); }

  // The step's body over the packed device buffer. Capturable: no host syncs, shapes fixed by
  // the layout; `sdpa` must be empty when capturing.
  at::Tensor Body(const at::Tensor& packed, const Layout& L,
                  const std::vector<std::pair<int64_t, int64_t>>& sdpa, KvCache& cache) {
    const ModelConfig& c = m.config_;
    const Weights& w = *m.weights_;
    const int64_t T = L.T, H = c.hidden_size, nh = c.num_attention_heads,
                  kvh = c.num_key_value_heads, D = c.head_dim(), g = nh / kvh;
    const float eps = static_cast<float>(c.rms_norm_eps);
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    const cuda::DType dt = KernelDType();
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();

    int64_t o = 0;
    auto take = [&](int64_t n) {
      at::Tensor v = packed.narrow(0, o, n);
      o += n;
      return v;
    };
    at::Tensor ids = take(T), pos = take(T), slots = take(T);
    at::Tensor q_rows = take(L.Bq), q_lens = take(L.Bq), q_seq = take(L.Bq);
    at::Tensor tables = take(L.S * L.MB), logit_rows = take(L.R);

    at::Tensor x = at::index_select(w.embed, 0, ids);  // [T, H], the residual stream
    at::Tensor attn = at::empty({T, nh * D}, x.options());
    at::Tensor act = at::empty({T, c.intermediate_size}, x.options());
    at::Tensor partial;
    if (L.nsplit > 1 && L.Bq > 0)
      partial = at::empty({L.Bq * nh * L.nsplit * (D + 2)}, x.options().dtype(at::kFloat));
    // A few rows (decode batches up to kGemvMaxRows): our GEMVs with the norms, the residual
    // adds and SiLU-and-mul fused in. More rows: cuBLAS GEMMs and the separate kernels.
    const int I = static_cast<int>(c.intermediate_size);
    const bool small = T <= gemv_max_rows &&
                       cuda::GemvSupported(dt, static_cast<int>(T), static_cast<int>(H)) &&
                       cuda::GemvSupported(dt, static_cast<int>(T), static_cast<int>(nh * D)) &&
                       cuda::GemvSupported(dt, static_cast<int>(T), I);
    at::Tensor h, qkv_buf;
    if (small) {
      qkv_buf = at::empty({T, (nh + 2 * kvh) * D}, x.options());
    } else {
      h = at::empty_like(x);
      Check(cuda::AddRmsNorm(dt, x.data_ptr(), nullptr, w.layers[0].input_norm.data_ptr(),
                             h.data_ptr(), T, H, eps, stream));
    }
    auto gemv = [&](const at::Tensor& in, const at::Tensor* norm, const at::Tensor& wt,
                    const at::Tensor* bias, at::Tensor& out, cuda::GemvOut mode) {
      cuda::GemvArgs ga;
      ga.dt = dt;
      ga.x = in.data_ptr();
      ga.ldx = in.size(1);
      ga.M = static_cast<int>(in.size(0));
      ga.K = static_cast<int>(in.size(1));
      ga.norm_w = norm != nullptr ? norm->data_ptr() : nullptr;
      ga.eps = eps;
      ga.w = wt.data_ptr();
      ga.N = mode == cuda::GemvOut::kSiluMul ? wt.size(0) / 2 : wt.size(0);
      ga.bias = bias != nullptr ? bias->data_ptr() : nullptr;
      ga.y = out.data_ptr();
      ga.ldy = out.size(1);
      ga.mode = mode;
      if (ga.N < 65536) ga.units = gemv_units;
      Check(cuda::Gemv(ga, stream));
    };

    cuda::PagedAttentionArgs pa;
    pa.dt = dt;
    pa.ld = (nh + 2 * kvh) * D;
    pa.q_rows = q_rows.data_ptr<int32_t>();
    pa.q_lens = q_lens.data_ptr<int32_t>();
    pa.q_seq = q_seq.data_ptr<int32_t>();
    pa.tables = tables.data_ptr<int32_t>();
    pa.table_stride = L.MB;
    pa.block_size = static_cast<int>(cache.block_size());
    pa.n_queries = static_cast<int>(L.Bq);
    pa.nh = static_cast<int>(nh);
    pa.kvh = static_cast<int>(kvh);
    pa.D = static_cast<int>(D);
    pa.scale = static_cast<float>(scale);
    pa.nsplit = L.nsplit;
    pa.partial = partial.defined() ? partial.data_ptr<float>() : nullptr;
    pa.counters = split_counters.data_ptr<int>();
    pa.out = attn.data_ptr();
    pa.out_ld = nh * D;

    for (size_t li = 0; li < w.layers.size(); ++li) {
      const Layer& l = w.layers[li];
      at::Tensor& kc = cache.k(static_cast<int64_t>(li));
      at::Tensor& vc = cache.v(static_cast<int64_t>(li));
      at::Tensor qkv;  // [T, (nh + 2 kvh) D]
      if (small) {
        qkv = qkv_buf;
        gemv(x, &l.input_norm, l.wqkv, &l.bqkv, qkv, cuda::GemvOut::kStore);
      } else {
        qkv = at::addmm(l.bqkv, h, l.wqkv.t());
      }
      Check(cuda::RopeKvWrite(dt, qkv.data_ptr(), pa.ld, pos.data_ptr<int32_t>(),
                              slots.data_ptr<int32_t>(), w.inv_freq.data_ptr<float>(),
                              kc.data_ptr(), vc.data_ptr(), T, static_cast<int>(nh),
                              static_cast<int>(kvh), static_cast<int>(D), stream));
      pa.qkv = qkv.data_ptr();
      pa.k_cache = kc.data_ptr();
      pa.v_cache = vc.data_ptr();
      Check(cuda::PagedAttention(pa, stream));
#if TORCH_VERSION_MAJOR >= 2
      for (const auto& [first, n] : sdpa) {
        at::Tensor rows = qkv.narrow(0, first, n);
        at::Tensor q = rows.narrow(1, 0, nh * D).view({n, nh, D}).transpose(0, 1).unsqueeze(0);
        auto heads = [&](int64_t at_col) {  // k or v heads repeated for their query group
          return rows.narrow(1, at_col, kvh * D).view({n, kvh, 1, D}).expand({n, kvh, g, D})
              .reshape({n, nh, D}).transpose(0, 1).unsqueeze(0);
        };
        at::Tensor out = at::scaled_dot_product_attention(q, heads(nh * D), heads((nh + kvh) * D),
                                                          {}, 0.0, /*is_causal=*/true, scale);
        attn.narrow(0, first, n).view({n, nh, D}).copy_(out.squeeze(0).transpose(0, 1));
      }
#else
      (void)sdpa;
      (void)g;
#endif
      if (small) {
        gemv(attn, nullptr, l.wo, nullptr, x, cuda::GemvOut::kResidual);
        gemv(x, &l.post_norm, l.wgate_up, nullptr, act, cuda::GemvOut::kSiluMul);
        gemv(act, nullptr, l.wdown, nullptr, x, cuda::GemvOut::kResidual);
        continue;
      }
      at::Tensor ao = at::mm(attn, l.wo.t());
      Check(cuda::AddRmsNorm(dt, x.data_ptr(), ao.data_ptr(), l.post_norm.data_ptr(), h.data_ptr(),
                             T, H, eps, stream));
      at::Tensor gu = at::mm(h, l.wgate_up.t());
      Check(cuda::SiluMul(dt, gu.data_ptr(), act.data_ptr(), T, c.intermediate_size, stream));
      at::Tensor down = at::mm(act, l.wdown.t());
      const at::Tensor& next = li + 1 < w.layers.size() ? w.layers[li + 1].input_norm : w.norm;
      Check(cuda::AddRmsNorm(dt, x.data_ptr(), down.data_ptr(), next.data_ptr(), h.data_ptr(), T,
                             H, eps, stream));
    }
    if (small) {  // the final norm inside the lm_head GEMV, logits straight to float32
      at::Tensor last = L.identity_logits ? x : at::index_select(x, 0, logit_rows);
      at::Tensor logits = at::empty({L.R, c.vocab_size}, x.options().dtype(at::kFloat));
      if (L.R > 0) gemv(last, &w.norm, w.lm_head, nullptr, logits, cuda::GemvOut::kStoreF32);
      return logits;
    }
    // h is the final norm of every row.
    at::Tensor last = L.identity_logits ? h : at::index_select(h, 0, logit_rows);
    return at::mm(last, w.lm_head.t()).to(at::kFloat);
  }

  at::Tensor Eager(const StepBatch& batch, KvCache& cache) {
    // (A step with no logit rows still runs: it writes the K/V of its prompt chunks.)
    Plan p = MakePlan(batch, cache.block_size());
    at::Tensor packed = Pinned(p.host).to(m.device_, /*non_blocking=*/true);
    at::Tensor out = Body(packed, p.lay, p.sdpa, cache);
    return out;
  }

  // A decode step from a captured graph; an undefined tensor when the step does not qualify.
  at::Tensor Graph(const StepBatch& batch, KvCache& cache) {
    const int64_t real_b = static_cast<int64_t>(batch.seqs.size());
    if (real_b > kMaxGraphBatch) return {};
    int64_t max_len = 0;
    for (const SequenceStep& s : batch.seqs) {
      if (s.num_new != 1 || !s.want_logits) return {};
      max_len = std::max(max_len, s.num_cached + 1);
    }
    int64_t B = 1;
    while (B < real_b) B *= 2;
    int64_t C = 64;
    while (C < max_len) C *= 2;
    if (C > kMaxGraphContext) return {};
    const int64_t bs = cache.block_size();

    std::vector<const void*> key;
    for (int64_t li = 0; li < m.config_.num_hidden_layers; ++li) {
      key.push_back(cache.k(li).data_ptr());
      key.push_back(cache.v(li).data_ptr());
    }
    key.push_back(reinterpret_cast<const void*>(cache.num_blocks()));
    key.push_back(reinterpret_cast<const void*>(bs));
    if (key != cache_key) {
      // Drop the graphs and their pool: a pool whose graphs are all gone must not be captured
      // into again (libtorch asserts on it); the next capture takes a fresh one.
      entries.clear();
      has_pool = false;
      cache_key = std::move(key);
    }

    // Packed inputs for B rows; row i >= real_b repeats row 0.
    Layout L;
    L.T = L.Bq = L.S = L.R = B;
    L.MB = (C + bs - 1) / bs;
    L.nsplit = SplitsFor(B, C);
    L.identity_logits = true;
    std::vector<int32_t> host(static_cast<size_t>(L.size()));
    int32_t* ids = host.data();
    int32_t* pos = ids + B;
    int32_t* slots = pos + B;
    int32_t* q_rows = slots + B;
    int32_t* q_lens = q_rows + B;
    int32_t* q_seq = q_lens + B;
    int32_t* tables = q_seq + B;
    int32_t* logit_rows = tables + B * L.MB;
    for (int64_t i = 0; i < B; ++i) {
      const int64_t r = i < real_b ? i : 0;
      const SequenceStep& s = batch.seqs[static_cast<size_t>(r)];
      ids[i] = batch.tokens[static_cast<size_t>(r)];
      pos[i] = static_cast<int32_t>(s.num_cached);
      slots[i] = static_cast<int32_t>(int64_t{s.block_table[static_cast<size_t>(s.num_cached / bs)]} * bs +
                                      s.num_cached % bs);
      q_rows[i] = static_cast<int32_t>(i);
      q_lens[i] = static_cast<int32_t>(s.num_cached + 1);
      q_seq[i] = static_cast<int32_t>(i);
      for (int64_t b = 0; b < L.MB; ++b)
        tables[i * L.MB + b] = b < static_cast<int64_t>(s.block_table.size()) ? s.block_table[static_cast<size_t>(b)] : 0;
      logit_rows[i] = static_cast<int32_t>(i);
    }
    at::Tensor src = Pinned(host);

    auto it = entries.find({B, C});
    if (it == entries.end()) {
      Entry e;
      e.lay = L;
      e.packed = src.to(m.device_);
      at::cuda::getCurrentCUDAStream().synchronize();
      at::cuda::CUDAStream side = at::cuda::getStreamFromPool(false, m.device_.index());
      {
        c10::cuda::CUDAStreamGuard stream_guard(side);
        // Warm-up off the graph (it writes the same K/V the replay writes), then capture.
        Body(e.packed, L, {}, cache);
        side.synchronize();
        if (!has_pool) {
          pool = at::cuda::graph_pool_handle();
          has_pool = true;
        }
        e.graph = std::make_unique<at::cuda::CUDAGraph>();
        e.graph->capture_begin(pool, cudaStreamCaptureModeThreadLocal);
        try {
          e.out = Body(e.packed, L, {}, cache);
        } catch (...) {
          // Leave the stream usable (end the capture and drop what it held), stop capturing
          // for this model, and report the error; the caller's step fails, later steps run
          // eagerly.
          cudaGraph_t partial = nullptr;
          (void)cudaStreamEndCapture(side.stream(), &partial);
          if (partial != nullptr) (void)cudaGraphDestroy(partial);
          (void)cudaGetLastError();
          e.graph.release();  // its capture never ended: its destructor must not run
          m.cuda_graphs_ = false;
          throw;
        }
        e.graph->capture_end();
      }
      side.synchronize();
      it = entries.emplace(std::make_pair(B, C), std::move(e)).first;
    } else {
      it->second.packed.copy_(src, /*non_blocking=*/true);
    }
    it->second.graph->replay();
    return it->second.out.narrow(0, 0, real_b).clone();  // the next replay overwrites `out`
  }
};

at::Tensor Qwen2Model::CudaForward(const StepBatch& batch, KvCache& cache) {
  c10::cuda::CUDAGuard device_guard(device_);
  const ModelConfig& c = config_;
  if (!cuda::PagedAttentionSupported(static_cast<int>(c.num_attention_heads),
                                     static_cast<int>(c.num_key_value_heads),
                                     static_cast<int>(c.head_dim())))
    return EagerForward(batch, cache);
  if (!cuda_) cuda_ = std::make_shared<CudaState>(*this);
  if (cuda_graphs_) {
    at::Tensor out = cuda_->Graph(batch, cache);
    if (out.defined()) return out;
  }
  return cuda_->Eager(batch, cache);
}

}  // namespace r1::model
