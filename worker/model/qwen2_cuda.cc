// The CUDA path of the Qwen2 step (built only when libtorch has CUDA; see
// worker/model/CMakeLists.txt).
//
// One step, whatever mix of prefills and decodes it holds, runs a fixed set of kernels per layer:
//   qkv GEMM (+bias when the model has one) -> RoPE + KV-cache write (kernels.cu) -> attention -> o GEMM
//   -> residual add + RMSNorm (kernels.cu) -> gate/up GEMM -> SiLU-and-mul (kernels.cu)
//   -> down GEMM -> residual add + RMSNorm with the next layer's weight (kernels.cu).
// Steps of a few rows (decode batches up to --gemv-max-rows) use our fused GEMVs instead of the
// GEMMs and the separate norm / SiLU kernels.
// Attention (packed_step.h says which query goes where): decode tokens and short chunks go
// through the paged decode-attention kernel, which reads each sequence's blocks in place;
// prompt chunks of real size go through one varlen flash-attention call over K/V gathered
// from the cache (so a chunk attends to thousands of cached tokens at tensor-core speed).
// The host's index arithmetic travels to the device as one int32 buffer in one copy.
//
// Decode steps replay CUDA graphs captured per bucket (graph_buckets.h).
//
// FP8 weights (--quantization fp8, QuantizeWeightsFp8): the linear layers hold e4m3 bytes with
// one scale per output channel. The GEMV steps read them directly (kernels.h, w_scale); larger
// steps quantize each GEMM's input per token (QuantizeFp8Rows) and multiply on FP8 tensor cores
// (at::_scaled_mm with row-wise scales), the output in the model's dtype. lm_head is e4m3 too
// unless --fp8-lm-head=false.
//
// Int4 weights (--quantization int4 or awq, PrepareInt4Cuda): the linear layers hold nibbles in
// groups of 128 with scales and zero points, in the int4 GEMV's layout (kernels.h). Steps of up
// to --int4-gemv-max-rows tokens run the int4 GEMV, 8 rows a launch (the norms, bias, residual
// adds and SiLU-and-mul fused as in the 16-bit GEMVs); larger steps dequantize each layer into a
// 16-bit buffer and multiply with cuBLAS. lm_head stays in the model's dtype, as AWQ keeps it.
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/version.h>

#if __has_include(<ATen/ops/_flash_attention_forward.h>)
#include <ATen/ops/_flash_attention_forward.h>
#define R1_HAVE_FLASH 1
constexpr bool kHaveFlash = true;
#else
constexpr bool kHaveFlash = false;
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/model/cuda/kernels.h"
#include "worker/model/forward_path.h"
#include "worker/model/graph_buckets.h"
#include "worker/model/int4_layout.h"
#include "worker/model/packed_step.h"

namespace r1::model {
namespace {

static_assert(kMaxAttentionQueries == cuda::kMaxAttentionQueriesPerLaunch,
              "the engine's prefill limit and the attention kernel's grid must agree");

cuda::DType KernelDType(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return cuda::DType::kBF16;
    case at::kHalf: return cuda::DType::kF16;
    default: return cuda::DType::kF32;
  }
}

void Check(int rc) { C10_CUDA_CHECK(static_cast<cudaError_t>(rc)); }

// A pinned host copy of the packed buffer, so that the upload is asynchronous (libtorch's host
// allocator keeps the block until the copy is done).
at::Tensor Pinned(const std::vector<int32_t>& v) {
  at::Tensor t = at::empty({static_cast<int64_t>(v.size())},
                           at::TensorOptions().dtype(at::kInt).pinned_memory(true));
  std::memcpy(t.data_ptr(), v.data(), v.size() * sizeof(int32_t));
  return t;
}

// Causal varlen flash attention (bottom-right aligned: query i of a chunk sees every cached key
// and the chunk's keys up to itself). q: [Qf, nh, D]; k, v: [Kg, kvh, D] (grouped heads);
// cu_q / cu_k: int32 [F + 1] prefix sums. Returns [Qf, nh, D].
at::Tensor FlashVarlen(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       const at::Tensor& cu_q, const at::Tensor& cu_k, int64_t max_q,
                       int64_t max_k, double scale) {
#if defined(R1_HAVE_FLASH)
  auto out = at::_flash_attention_forward(q, k, v, cu_q, cu_k, max_q, max_k, /*dropout_p=*/0.0,
                                          /*is_causal=*/true, /*return_debug_mask=*/false, scale);
  return std::get<0>(out);
#else
  (void)q, (void)k, (void)v, (void)cu_q, (void)cu_k, (void)max_q, (void)max_k, (void)scale;
  TORCH_CHECK(false, "this libtorch has no flash attention: run with --flash-min-tokens -1");
#endif
}

class CudaPath;

// Captured decode graphs, one per bucket. Each graph reads a static packed buffer and writes
// static logits; all share one memory pool. A KV cache with other addresses or geometry drops
// them all.
class GraphCache {
 public:
  struct Entry {
    std::unique_ptr<at::cuda::CUDAGraph> graph;
    PackedLayout lay;
    at::Tensor packed;  // the static input buffer the graph reads
    at::Tensor out;     // the static logits it writes
  };

  // The entry of `bucket` for `cache`, or null when none is captured yet.
  Entry* Find(const GraphBucket& bucket, KvCache& cache, int64_t num_layers) {
    std::vector<const void*> key;
    for (int64_t li = 0; li < num_layers; ++li) {
      key.push_back(cache.k(li).data_ptr());
      key.push_back(cache.v(li).data_ptr());
    }
    key.push_back(reinterpret_cast<const void*>(cache.num_blocks()));
    key.push_back(reinterpret_cast<const void*>(cache.block_size()));
    if (key != cache_key_) {
      // A pool whose graphs are all gone must not be captured into again (libtorch asserts on
      // it): the next capture takes a fresh one.
      entries_.clear();
      has_pool_ = false;
      cache_key_ = std::move(key);
    }
    auto it = entries_.find(bucket);
    return it == entries_.end() ? nullptr : &it->second;
  }

  // Captures `body` (which must run the step on the current stream) for `bucket`.
  template <typename Body>
  Entry* Capture(const GraphBucket& bucket, const PackedLayout& lay, const at::Tensor& src,
                 at::Device device, Body&& body) {
    Entry e;
    e.lay = lay;
    e.packed = src.to(device);
    at::cuda::getCurrentCUDAStream().synchronize();
    at::cuda::CUDAStream side = at::cuda::getStreamFromPool(false, device.index());
    {
      c10::cuda::CUDAStreamGuard stream_guard(side);
      body(e.packed);  // warm-up off the graph (it writes the same K/V the replay writes)
      side.synchronize();
      if (!has_pool_) {
        pool_ = at::cuda::graph_pool_handle();
        has_pool_ = true;
      }
      e.graph = std::make_unique<at::cuda::CUDAGraph>();
      e.graph->capture_begin(pool_, cudaStreamCaptureModeThreadLocal);
      try {
        e.out = body(e.packed);
      } catch (...) {
        // Leave the stream usable (end the capture, drop what it held) and report the error;
        // the caller stops capturing.
        cudaGraph_t partial = nullptr;
        (void)cudaStreamEndCapture(side.stream(), &partial);
        if (partial != nullptr) (void)cudaGraphDestroy(partial);
        (void)cudaGetLastError();
        e.graph.release();  // its capture never ended: its destructor must not run
        throw;
      }
      e.graph->capture_end();
    }
    side.synchronize();
    return &entries_.emplace(bucket, std::move(e)).first->second;
  }

 private:
  std::map<GraphBucket, Entry> entries_;
  std::vector<const void*> cache_key_;  // every layer's K and V address, then the geometry
  decltype(at::cuda::graph_pool_handle()) pool_;
  bool has_pool_ = false;
};

// Flash prefill gathers the cached K/V in 8-element vectors (GatherKv) and flash attention
// takes head dims in multiples of 8: a head_dim such as 12 (a Llama config may set any) stays
// on the paged kernel.
bool FlashFits(const ModelConfig& c) {
  return c.head_dim() % 8 == 0 && (c.num_key_value_heads * c.head_dim()) % 8 == 0;
}

class CudaPath final : public ForwardPath {
 public:
  explicit CudaPath(const PathContext& ctx)
      : ctx_(ctx), dt_(KernelDType(ctx.dtype)), graphs_enabled_(ctx.tuning.cuda_graphs),
        flash_ok_(kHaveFlash && dt_ != cuda::DType::kF32 && FlashFits(*ctx.config)),
        fp8_(!ctx.weights->layers.empty() && ctx.weights->layers[0].sgate_up.defined()),
        int4_(!ctx.weights->layers.empty() && ctx.weights->layers[0].gate_up4.q.defined()) {
    cuda::SetProgrammaticLaunch(ctx.tuning.pdl);
    num_sms_ = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  }

  bool SupportsFp8Cache() const override { return true; }

  at::Tensor Forward(const StepBatch& batch, KvCache& cache) override {
    c10::cuda::CUDAGuard device_guard(ctx_.device);
    if (graphs_enabled_ && batch.is_decode()) {
      if (auto bucket = GraphBuckets::For(static_cast<int64_t>(batch.seqs.size()), batch.max_len()))
        return Graph(batch, *bucket, cache);
    }
    PackedStep p = PackStep(batch, PackOptionsFor(cache, /*graph=*/false, 0, 0));
    FinishLayout(&p.lay);
    at::Tensor packed = Pinned(p.host).to(ctx_.device, /*non_blocking=*/true);
    return Body(packed, p.lay, cache);
  }

  absl::Status WarmUpDecode(KvCache& cache, int64_t max_batch, int64_t max_context) override {
    if (!graphs_enabled_) return absl::OkStatus();
    const int64_t bs = cache.block_size(), blocks = cache.num_blocks();
    for (const GraphBucket& b : GraphBuckets::UpTo(max_batch, max_context)) {
      const int64_t len = std::min(b.context, max_context);  // the bucket's longest context
      StepBatch batch;
      batch.tokens.assign(static_cast<size_t>(b.batch), 0);
      for (int64_t i = 0; i < b.batch; ++i) {
        SequenceStep s;
        s.num_cached = len - 1;
        s.num_new = 1;
        for (int64_t j = 0; j < (len + bs - 1) / bs; ++j) s.block_table.push_back(static_cast<int32_t>(j % blocks));
        batch.seqs.push_back(std::move(s));
      }
      try {
        Forward(batch, cache);
      } catch (const c10::Error& e) {
        return absl::InternalError(absl::StrCat("capturing the decode graph of batch ", b.batch,
                                                ", context ", b.context, ": ", e.what_without_backtrace()));
      }
    }
    return absl::OkStatus();
  }

 private:
  // Flash attention serves 16-bit models in eager steps; a graph's shapes are fixed at capture,
  // so its steps (decodes) never use it.
  PackOptions PackOptionsFor(const KvCache& cache, bool graph, int64_t pad_rows, int64_t table_width) const {
    PackOptions o;
    o.block_size = cache.block_size();
    o.flash_min_tokens = graph || !flash_ok_ ? -1 : ctx_.tuning.flash_min_tokens;
    o.flash_min_work = ctx_.tuning.flash_min_work;
    o.pad_rows = pad_rows;
    o.table_width = table_width;
    return o;
  }

  // Key splits of the paged decode attention: cuda::PagedAttentionSplits's rule, or
  // --attn-splits (at most one a tile).
  int SplitsFor(int64_t queries, int64_t max_len) const {
    const int64_t tiles = std::max<int64_t>(1, (max_len + 63) / 64);
    if (ctx_.tuning.attn_splits > 0) return static_cast<int>(std::min<int64_t>(ctx_.tuning.attn_splits, tiles));
    return cuda::PagedAttentionSplits(queries, static_cast<int>(ctx_.config->num_key_value_heads), max_len, num_sms_);
  }

  void FinishLayout(PackedLayout* lay) const {
    lay->nsplit = SplitsFor(lay->Bq, lay->max_paged_len);
  }

  // A decode step from the bucket's captured graph (captured now when it is new).
  at::Tensor Graph(const StepBatch& batch, const GraphBucket& bucket, KvCache& cache) {
    const int64_t bs = cache.block_size();
    PackedStep p = PackStep(batch, PackOptionsFor(cache, /*graph=*/true, bucket.batch, (bucket.context + bs - 1) / bs));
    // The split count is the bucket's, not the batch's: the graph is captured once for all of
    // them.
    p.lay.nsplit = SplitsFor(bucket.batch, bucket.context);
    at::Tensor src = Pinned(p.host);
    GraphCache::Entry* e = graphs_.Find(bucket, cache, ctx_.config->num_hidden_layers);
    if (e == nullptr) {
      try {
        e = graphs_.Capture(bucket, p.lay, src, ctx_.device,
                            [&](const at::Tensor& packed) { return Body(packed, p.lay, cache); });
      } catch (...) {
        graphs_enabled_ = false;  // later steps run eagerly
        throw;
      }
    } else {
      e->packed.copy_(src, /*non_blocking=*/true);
    }
    e->graph->replay();
    return e->out.narrow(0, 0, static_cast<int64_t>(batch.seqs.size())).clone();  // the next replay overwrites `out`
  }

  // The step's body over the packed device buffer. Capturable when the layout has no flash
  // sequences (no host syncs; shapes fixed by the layout).
  at::Tensor Body(const at::Tensor& packed, const PackedLayout& L, KvCache& cache) {
    const ModelConfig& c = *ctx_.config;
    const ModelWeights& w = *ctx_.weights;
    const int64_t T = L.T, H = c.hidden_size, nh = c.num_attention_heads,
                  kvh = c.num_key_value_heads, D = c.head_dim();
    const float eps = static_cast<float>(c.rms_norm_eps);
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    const cuda::DType dt = dt_;
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();

    auto part = [&](int64_t at, int64_t n) { return packed.narrow(0, at, n); };
    at::Tensor ids = part(0, T), pos = part(T, T), slots = part(2 * T, T);
    at::Tensor q_rows = part(L.at_q_rows(), L.Bq), q_lens = part(L.at_q_rows() + L.Bq, L.Bq),
               q_seq = part(L.at_q_rows() + 2 * L.Bq, L.Bq);
    at::Tensor tables = part(L.at_tables(), L.S * L.MB), logit_rows = part(L.at_logit_rows(), L.R);

    at::Tensor x = at::index_select(w.embed, 0, ids);  // [T, H], the residual stream
    at::Tensor attn = at::empty({T, nh * D}, x.options());
    at::Tensor act = at::empty({T, c.intermediate_size}, x.options());
    at::Tensor partial;
    if (L.nsplit > 1 && L.Bq > 0)
      partial = at::empty({L.Bq * nh * L.nsplit * (D + 2)}, x.options().dtype(at::kFloat));
    // Flash sequences: their query rows (long, for index_copy_), K/V gathered per layer.
    at::Tensor flash_rows, cu_q, cu_k, gather, kg, vg;
    if (L.F > 0) {
      cu_q = part(L.at_cu_q(), L.F + 1);
      cu_k = part(L.at_cu_k(), L.F + 1);
      gather = part(L.at_gather(), L.Kg);
      flash_rows = part(L.at_flash_rows(), L.Qf).to(at::kLong);
      kg = at::empty({L.Kg, kvh, D}, x.options());
      vg = at::empty({L.Kg, kvh, D}, x.options());
    }
    // A few rows (decode batches up to --gemv-max-rows; with int4 weights up to
    // --int4-gemv-max-rows, 8 a launch): our GEMVs with the norms, the residual adds and
    // SiLU-and-mul fused in. More rows: cuBLAS GEMMs and the separate kernels.
    const int I = static_cast<int>(c.intermediate_size);
    const int gemv_rows = static_cast<int>(std::min<int64_t>(T, cuda::kGemvMaxRows));  // per launch
    auto gemv_ok = [&](int64_t N, int K) {
      if (int4_) return cuda::GemvInt4Supported(dt, gemv_rows, N, K);
      return fp8_ ? cuda::GemvFp8Supported(dt, static_cast<int>(T), K)
                  : cuda::GemvSupported(dt, static_cast<int>(T), K);
    };
    const int64_t QKV = (nh + 2 * kvh) * D;
    const bool small = T <= (int4_ ? ctx_.tuning.int4_gemv_max_rows : ctx_.tuning.GemvMaxRows(fp8_)) &&
                       gemv_ok(QKV, static_cast<int>(H)) && gemv_ok(H, static_cast<int>(nh * D)) &&
                       gemv_ok(2 * I, static_cast<int>(H)) && gemv_ok(H, I);
    // lm_head's GEMV: FP8 with the layers', or 16-bit (an FP8 model with --fp8-lm-head=false, an
    // int4 model at one row: more rows take cuBLAS, as 16-bit models do).
    const bool lm_head_gemv =
        small && (w.lm_head_scale.defined() ? gemv_ok(c.vocab_size, static_cast<int>(H))
                                            : (!int4_ || T <= ctx_.tuning.GemvMaxRows(false)) &&
                                                  cuda::GemvSupported(dt, static_cast<int>(T), static_cast<int>(H)));
    at::Tensor h, qkv_buf;
    if (small) {
      qkv_buf = at::empty({T, QKV}, x.options());
    } else {
      h = at::empty_like(x);
      Check(cuda::AddRmsNorm(dt, x.data_ptr(), nullptr, w.layers[0].input_norm.data_ptr(),
                             h.data_ptr(), T, H, eps, stream));
    }
    // One linear layer's weights: 16-bit or FP8 (w, with its row scales), or int4.
    struct Weight {
      const at::Tensor* w;
      const at::Tensor* scale;
      const Int4Groups* int4;
    };
    auto weight = [&](const at::Tensor& wt, const at::Tensor& ws, const Int4Groups& w4) {
      return int4_ ? Weight{nullptr, nullptr, &w4} : Weight{&wt, &ws, nullptr};
    };
    // With `rope` (the qkv projection), the GEMV's epilogue also applies RoPE and writes K/V into
    // the cache (kRopeKv) where the kernel takes that; returns whether it did (else RopeKvWrite
    // still has to run).
    auto gemv = [&](const at::Tensor& in, const at::Tensor* norm, const Weight& wt, const at::Tensor* bias,
                    at::Tensor& out, cuda::GemvOut mode, const cuda::RopeKvArgs* rope = nullptr) {
      cuda::GemvArgs ga;
      ga.dt = dt;
      ga.ldx = in.size(1);
      ga.K = static_cast<int>(in.size(1));
      ga.norm_w = norm != nullptr ? norm->data_ptr() : nullptr;
      ga.eps = eps;
      const int64_t rows = wt.int4 ? wt.int4->q.size(0) : wt.w->size(0);
      ga.w = wt.int4 ? wt.int4->q.data_ptr() : wt.w->data_ptr();
      ga.N = mode == cuda::GemvOut::kSiluMul ? rows / 2 : rows;
      ga.bias = bias != nullptr ? bias->data_ptr() : nullptr;
      ga.ldy = out.size(1);
      ga.mode = mode;
      if (ga.N < 65536) ga.units = ctx_.tuning.gemv_units;
      ga.tensor_cores = ctx_.tuning.gemv_tensor_cores;
      ga.w_scale = wt.scale != nullptr && wt.scale->defined() ? wt.scale->data_ptr<float>() : nullptr;
      if (wt.int4) {
        ga.int4_scale = wt.int4->scale.data_ptr<float>();
        ga.int4_zero = wt.int4->zero.data_ptr<uint8_t>();
      }
      auto rows_at = [&](int64_t r0) {
        ga.M = static_cast<int>(std::min<int64_t>(cuda::kGemvMaxRows, in.size(0) - r0));
        ga.x = static_cast<const char*>(in.data_ptr()) + r0 * in.stride(0) * in.element_size();
        ga.y = static_cast<char*>(out.data_ptr()) + r0 * out.stride(0) * out.element_size();
        if (rope != nullptr) {
          ga.pos = rope->pos + r0;
          ga.slots = rope->slots + r0;
        }
      };
      bool roped = false;
      if (rope != nullptr && in.size(0) <= cuda::kGemvMaxRows) {
        ga.mode = cuda::GemvOut::kRopeKv;
        ga.inv_freq = rope->inv_freq;
        ga.k_cache = rope->k_cache;
        ga.v_cache = rope->v_cache;
        ga.nh = rope->nh;
        ga.kvh = rope->kvh;
        ga.D = rope->D;
        rows_at(0);
        roped = cuda::GemvRopeKvApplies(ga);
        if (!roped) ga.mode = mode;
      }
      // At most kGemvMaxRows rows a launch (only int4 steps have more).
      for (int64_t r0 = 0; r0 < in.size(0); r0 += cuda::kGemvMaxRows) {
        rows_at(r0);
        Check(cuda::Gemv(ga, stream));
      }
      return roped;
    };
    // in [T, K] times W^T: a cuBLAS GEMM (int4 weights dequantized into a 16-bit buffer first),
    // or with FP8 weights the input quantized per token and an FP8 GEMM (the bias added in its
    // epilogue).
    auto linear = [&](const at::Tensor& in, const Weight& w16, const at::Tensor* bias) {
      at::Tensor wt;
      if (w16.int4) {
        const Int4Groups& q4 = *w16.int4;
        cuda::DequantInt4Args da;
        da.dt = dt;
        da.q = q4.q.data_ptr();
        da.scale = q4.scale.data_ptr<float>();
        da.zero = q4.zero.data_ptr<uint8_t>();
        da.N = q4.q.size(0);
        da.K = q4.k;
        wt = at::empty({da.N, da.K}, x.options());
        da.out = wt.data_ptr();
        da.ldo = da.K;
        Check(cuda::DequantInt4(da, stream));
      } else {
        wt = *w16.w;
      }
      const at::Tensor wscale = w16.scale != nullptr ? *w16.scale : at::Tensor();
      if (!wscale.defined()) return bias != nullptr ? at::addmm(*bias, in, wt.t()) : at::mm(in, wt.t());
      const int64_t M = in.size(0), K = in.size(1), N = wt.size(0);
      at::Tensor xq = at::empty({M, K}, x.options().dtype(at::kByte));
      at::Tensor xs = at::empty({M, 1}, x.options().dtype(at::kFloat));
      Check(cuda::QuantizeFp8Rows(dt, in.data_ptr(), in.stride(0), M, K, xq.data_ptr(), K,
                                  xs.data_ptr<float>(), stream));
      return at::_scaled_mm(xq.view(at::kFloat8_e4m3fn), wt.view(at::kFloat8_e4m3fn).t(), xs, wscale.view({1, N}),
                            bias != nullptr ? c10::optional<at::Tensor>(*bias) : c10::nullopt, c10::nullopt,
                            ctx_.dtype);
    };

    cuda::RopeKvArgs ra;
    ra.dt = dt;
    ra.ld = (nh + 2 * kvh) * D;
    ra.pos = pos.data_ptr<int32_t>();
    ra.slots = slots.data_ptr<int32_t>();
    ra.inv_freq = w.inv_freq.data_ptr<float>();
    ra.fp8_cache = cache.fp8();
    ra.rows = T;
    ra.nh = static_cast<int>(nh);
    ra.kvh = static_cast<int>(kvh);
    ra.D = static_cast<int>(D);

    // RoPE and the K/V write in the qkv GEMV's epilogue (--gemv-rope) with a 16-bit cache, where
    // the GEMV takes it (GemvRopeKvApplies: tensor cores, 16-bit or FP8 weights).
    const bool rope_in_gemv = small && ctx_.tuning.gemv_rope && !cache.fp8();

    cuda::PagedAttentionArgs pa;
    pa.dt = dt;
    pa.ld = ra.ld;
    pa.fp8_cache = cache.fp8();
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
    pa.stages = ctx_.tuning.attn_stages;
    pa.partial = partial.defined() ? partial.data_ptr<float>() : nullptr;
    pa.out = attn.data_ptr();
    pa.out_ld = nh * D;

    cuda::GatherKvArgs ga;
    ga.dt = dt;
    ga.fp8_cache = cache.fp8();
    ga.slots = L.F > 0 ? gather.data_ptr<int32_t>() : nullptr;
    ga.n = L.Kg;
    ga.kvh = static_cast<int>(kvh);
    ga.D = static_cast<int>(D);
    ga.k_out = L.F > 0 ? kg.data_ptr() : nullptr;
    ga.v_out = L.F > 0 ? vg.data_ptr() : nullptr;

    for (size_t li = 0; li < w.layers.size(); ++li) {
      const LayerWeights& l = w.layers[li];
      const int64_t layer = static_cast<int64_t>(li);
      at::Tensor& kc = cache.k(layer);
      at::Tensor& vc = cache.v(layer);
      float* k_scale = cache.fp8() ? cache.k_scale(layer).data_ptr<float>() : nullptr;
      float* v_scale = cache.fp8() ? cache.v_scale(layer).data_ptr<float>() : nullptr;
      at::Tensor qkv;  // [T, (nh + 2 kvh) D]
      const bool qkv_bias = l.bqkv.defined();  // Qwen2 has one, Llama none
      const Weight wqkv = weight(l.wqkv, l.sqkv, l.qkv4), wo = weight(l.wo, l.so, l.o4),
                   wgate_up = weight(l.wgate_up, l.sgate_up, l.gate_up4), wdown = weight(l.wdown, l.sdown, l.down4);
      auto this_layer = [&](auto& args) {  // the layer's cache, for each kernel's arguments
        args.k_cache = kc.data_ptr();
        args.v_cache = vc.data_ptr();
        args.k_scale = k_scale;
        args.v_scale = v_scale;
      };
      this_layer(ra);
      bool roped = false;
      if (small) {
        qkv = qkv_buf;
        roped = gemv(x, &l.input_norm, wqkv, qkv_bias ? &l.bqkv : nullptr, qkv, cuda::GemvOut::kStore,
                     rope_in_gemv ? &ra : nullptr);
      } else {
        qkv = linear(h, wqkv, qkv_bias ? &l.bqkv : nullptr);
      }
      ra.qkv = qkv.data_ptr();
      if (!roped) Check(cuda::RopeKvWrite(ra, stream));
      pa.qkv = qkv.data_ptr();
      this_layer(pa);
      Check(cuda::PagedAttention(pa, stream));
      if (L.F > 0) {
        this_layer(ga);
        Check(cuda::GatherKv(ga, stream));
        at::Tensor qf = at::index_select(qkv.narrow(1, 0, nh * D), 0, flash_rows).view({L.Qf, nh, D});
        at::Tensor out = FlashVarlen(qf, kg, vg, cu_q, cu_k, L.max_q, L.max_k, scale);
        attn.index_copy_(0, flash_rows, out.reshape({L.Qf, nh * D}));
      }
      if (small) {
        gemv(attn, nullptr, wo, nullptr, x, cuda::GemvOut::kResidual);
        gemv(x, &l.post_norm, wgate_up, nullptr, act, cuda::GemvOut::kSiluMul);
        gemv(act, nullptr, wdown, nullptr, x, cuda::GemvOut::kResidual);
        continue;
      }
      at::Tensor ao = linear(attn, wo, nullptr);
      Check(cuda::AddRmsNorm(dt, x.data_ptr(), ao.data_ptr(), l.post_norm.data_ptr(), h.data_ptr(),
                             T, H, eps, stream));
      at::Tensor gu = linear(h, wgate_up, nullptr);
      Check(cuda::SiluMul(dt, gu.data_ptr(), act.data_ptr(), T, c.intermediate_size, stream));
      at::Tensor down = linear(act, wdown, nullptr);
      const at::Tensor& next = li + 1 < w.layers.size() ? w.layers[li + 1].input_norm : w.norm;
      Check(cuda::AddRmsNorm(dt, x.data_ptr(), down.data_ptr(), next.data_ptr(), h.data_ptr(), T,
                             H, eps, stream));
    }
    const Weight head{&w.lm_head, &w.lm_head_scale, nullptr};
    if (lm_head_gemv) {  // the final norm inside the lm_head GEMV, logits straight to float32
      at::Tensor last = L.identity_logits ? x : at::index_select(x, 0, logit_rows);
      at::Tensor logits = at::empty({L.R, c.vocab_size}, x.options().dtype(at::kFloat));
      if (L.R > 0) gemv(last, &w.norm, head, nullptr, logits, cuda::GemvOut::kStoreF32);
      return logits;
    }
    if (small) {  // the layers ran on the GEMVs: the final norm into h
      h = at::empty_like(x);
      Check(cuda::AddRmsNorm(dt, x.data_ptr(), nullptr, w.norm.data_ptr(), h.data_ptr(), T, H, eps, stream));
    }
    // h is the final norm of every row.
    at::Tensor last = L.identity_logits ? h : at::index_select(h, 0, logit_rows);
    return linear(last, head, nullptr).to(at::kFloat);
  }

  PathContext ctx_;
  cuda::DType dt_;
  bool graphs_enabled_;
  const bool flash_ok_;
  const bool fp8_;   // the linear layers hold FP8 weights (QuantizeWeightsFp8)
  const bool int4_;  // the linear layers hold int4 weights (PrepareInt4Cuda)
  int num_sms_ = 0;
  GraphCache graphs_;
};

}  // namespace

absl::Status QuantizeWeightsFp8(const ModelConfig& c, ModelWeights& w, bool layers, bool lm_head) {
  const cudaDeviceProp* prop = at::cuda::getCurrentDeviceProperties();
  if (prop->major * 10 + prop->minor < 89)
    return absl::FailedPreconditionError(absl::StrCat(
        "--quantization fp8 needs FP8 tensor cores (compute capability 8.9 or later: Ada, Hopper); ",
        prop->name, " is ", prop->major, ".", prop->minor));
  // The FP8 GEMMs (at::_scaled_mm) take K and N in multiples of 16.
  const int64_t H = c.hidden_size, I = c.intermediate_size, QD = c.num_attention_heads * c.head_dim(),
                QKV = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim();
  for (const auto& [what, v] : {std::pair<const char*, int64_t>{"hidden_size", H}, {"intermediate_size", I},
                                {"num_attention_heads x head_dim", QD}, {"the q/k/v rows", QKV},
                                {"vocab_size (for an FP8 lm_head; --fp8-lm-head=false keeps it floating)",
                                 lm_head ? c.vocab_size : 16}})
    if (v % 16 != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "--quantization fp8 needs every linear layer's dimensions in multiples of 16 (FP8 GEMMs); ",
          what, " is ", v));
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  try {
    auto quantize = [&](at::Tensor& wt, at::Tensor& scale) {
      const at::Tensor src = wt.contiguous();
      const int64_t N = src.size(0), K = src.size(1);
      at::Tensor q = at::empty({N, K}, src.options().dtype(at::kByte));
      scale = at::empty({N}, src.options().dtype(at::kFloat));
      Check(cuda::QuantizeFp8Rows(KernelDType(src.scalar_type()), src.data_ptr(), K, N, K, q.data_ptr(), K,
                                  scale.data_ptr<float>(), stream));
      wt = q;
    };
    if (layers) {
      for (LayerWeights& l : w.layers) {
        quantize(l.wqkv, l.sqkv);
        quantize(l.wo, l.so);
        l.wgate = l.wup = at::Tensor();  // views of wgate_up
        quantize(l.wgate_up, l.sgate_up);
        quantize(l.wdown, l.sdown);
      }
    }
    if (lm_head) {  // a tied head: quantize() leaves the embedding as it is and makes a new tensor
      w.lm_head_origin = c.tie_word_embeddings ? "the tied embedding" : "the checkpoint's lm_head";
      quantize(w.lm_head, w.lm_head_scale);
    }
    C10_CUDA_CHECK(cudaStreamSynchronize(stream));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("quantizing the weights to FP8: ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

absl::Status PrepareInt4Cuda(const ModelConfig& c, ModelWeights& w) {
  if (w.layers.empty()) return absl::OkStatus();
  const int64_t H = c.hidden_size, I = c.intermediate_size, QD = c.num_attention_heads * c.head_dim(),
                QKV = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim();
  const int64_t group = w.layers[0].qkv4.group;
  struct Shape {
    const char* what;
    int64_t n, k;
  };
  for (const Shape& s : {Shape{"q/k/v", QKV, H}, Shape{"o_proj", H, QD}, Shape{"gate/up", 2 * I, H}, Shape{"down_proj", H, I}})
    if (!Int4LayoutShapeOk(s.n, s.k, group))
      return absl::InvalidArgumentError(absl::StrCat(
          "int4 weights on CUDA need groups of 128 columns, every layer's input size a multiple of 256 and "
          "output size a multiple of 8 (the int4 GEMV's layout); this model's ", s.what, " is ", s.n, " x ", s.k,
          " in groups of ", group));
  const at::Device device = w.norm.device();
  try {
    auto move = [&](const Int4Groups& g) {
      return ToInt4GemvLayout(Int4Groups{g.q.to(device), g.scale.to(device), g.zero.to(device), g.k, g.group});
    };
    for (LayerWeights& l : w.layers) {
      l.qkv4 = move(l.qkv4);
      l.o4 = move(l.o4);
      l.down4 = move(l.down4);
      // gate's rows, then up's: the layout's tiles of 8 rows stay whole (I is a multiple of 8).
      l.gate_up4 = move(Int4Groups{at::cat({l.gate4.q, l.up4.q}), at::cat({l.gate4.scale, l.up4.scale}),
                                   at::cat({l.gate4.zero, l.up4.zero}), l.gate4.k, l.gate4.group});
      l.gate4 = l.up4 = Int4Groups{};
    }
    C10_CUDA_CHECK(cudaStreamSynchronize(at::cuda::getCurrentCUDAStream()));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("moving the int4 weights to the GPU: ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

std::unique_ptr<ForwardPath> MakeCudaPath(const PathContext& ctx) {
  const ModelConfig& c = *ctx.config;
  if (!cuda::PagedAttentionSupported(static_cast<int>(c.num_attention_heads),
                                     static_cast<int>(c.num_key_value_heads),
                                     static_cast<int>(c.head_dim())))
    return nullptr;
  return std::make_unique<CudaPath>(ctx);
}

}  // namespace r1::model
