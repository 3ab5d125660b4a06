// The eager Qwen2 step: ATen ops, plus our kernels on the CPU: AVX512-BF16 for bf16 (cpu_gemm.h,
// cpu_attention.h; the norms and RoPE in cpu_bf16_rows.h), row-invariant float32 (cpu_f32.h),
// and the int8 or int4 linear layers (cpu_int8.h, cpu_int4.h) when the weights are quantized.
// The CPU's path, and the reference the CUDA path is tested against.
#include <ATen/Context.h>
#include <torch/version.h>

#include <cmath>
#include <limits>
#include <tuple>

#include "worker/model/cpu_attention.h"
#include "worker/model/cpu_bf16_rows.h"
#include "worker/model/cpu_f32.h"
#include "worker/model/cpu_gemm.h"
#include "worker/model/cpu_int4.h"
#include "worker/model/cpu_int8.h"
#include "worker/model/forward_path.h"

namespace r1::model {
namespace {

// Rotate-half RoPE; x: [T, heads, D], cos/sin: [T, 1, D/2].
at::Tensor Rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);
}

// Causal attention of n new queries (absolute positions num_cached..num_cached+n-1) over
// ctx = num_cached + n keys. q: [n, heads, D]; k, v: [ctx, kv_heads, D]. Returns [n, heads, D].
at::Tensor Attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  int64_t num_cached, double scale) {
  const int64_t n = q.size(0), heads = q.size(1), d = q.size(2);
  const int64_t kvh = k.size(1), g = heads / kvh, ctx = k.size(0);
  at::Tensor qh = q.view({n, kvh, g, d}).permute({1, 2, 0, 3}).reshape({kvh, g * n, d});
  at::Tensor kh = k.permute({1, 2, 0});  // [kvh, D, ctx]
  at::Tensor vh = v.permute({1, 0, 2});  // [kvh, ctx, D]
  at::Tensor scores = at::bmm(qh, kh).mul_(scale);  // [kvh, g*n, ctx]
  if (n > 1) {
    // Every query sees all num_cached earlier keys: only the new keys' [n, n] block is masked.
    at::Tensor mask = at::ones({n, n}, at::TensorOptions().dtype(at::kBool).device(q.device())).triu_(1);
    scores.view({kvh, g, n, ctx}).narrow(3, num_cached, n).masked_fill_(mask, -std::numeric_limits<float>::infinity());
  }
  // Softmax in float inside, rounded once to the input dtype (what a float softmax followed by
  // .to() gives, without writing and reading the float scores).
  at::Tensor probs = at::softmax(scores, -1);
  at::Tensor out = at::bmm(probs, vh);  // [kvh, g*n, D]
  return out.view({kvh, g, n, d}).permute({2, 0, 1, 3}).reshape({n, heads, d});
}

class EagerPath final : public ForwardPath {
 public:
  explicit EagerPath(const PathContext& ctx) : ctx_(ctx) {}

  at::Tensor Forward(const StepBatch& batch, KvCache& cache) override {
    const ModelConfig& c = *ctx_.config;
    const ModelWeights& w = *ctx_.weights;
    const at::ScalarType dtype = ctx_.dtype;
    const at::Device device = ctx_.device;
    const bool cpu_kernels = ctx_.tuning.cpu_kernels;
    // float32 on the CPU with our kernels: every op of the step computes each token's row on its
    // own, in a fixed order (cpu_f32.h), so a token's logits do not depend on how tokens are
    // grouped into steps (decode batches, prompt chunks, a resume's or a preemption's prefill).
    const bool f32_rows = cpu_kernels && device.is_cpu() && dtype == at::kFloat;
    const int64_t T = static_cast<int64_t>(batch.tokens.size());
    const int64_t nh = c.num_attention_heads, kvh = c.num_key_value_heads, D = c.head_dim();
    const int64_t bs = cache.block_size();
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    // `scale` defined: int8 weights with per-row scales (cpu_int8.h).
    auto linear = [&](const at::Tensor& x, const at::Tensor& w, const at::Tensor& scale,
                      const at::Tensor& b = at::Tensor()) {
      if (scale.defined()) return LinearInt8(x, w, scale, b);  // exact int32 sums, per-row floats
      if (f32_rows) return LinearF32(x, w, b);
      return cpu_kernels ? Linear(x, w, b) : at::linear(x, w, b);
    };
    // The layer's int4 weights when it has them (cpu_int4.h), else its int8 or floating ones.
    auto layer_linear = [&](const at::Tensor& x, const Int4Groups& w4, const at::Tensor& w,
                            const at::Tensor& scale, const at::Tensor& b = at::Tensor()) {
      return w4.q.defined() ? LinearInt4(x, w4, b) : linear(x, w, scale, b);
    };
    auto rms_norm = [&](const at::Tensor& x, const at::Tensor& w) {
      if (f32_rows) return RmsNormF32(x, w, c.rms_norm_eps);
      if (cpu_kernels && RmsNormBf16Applies(x, w)) return RmsNormBf16(x, w, c.rms_norm_eps);
      return RmsNorm(x, w, c.rms_norm_eps);
    };
    auto rope = [&](const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
      return cpu_kernels && RopeBf16Applies(x, cos, sin) ? RopeBf16(x, cos, sin) : Rope(x, cos, sin);
    };

    // Host-side index arithmetic for the whole step.
    std::vector<int64_t> ids(batch.tokens.begin(), batch.tokens.end());
    std::vector<int64_t> pos(T), slots(T), logit_rows;
    std::vector<std::vector<int64_t>> ctx_slots(batch.seqs.size());
    int64_t off = 0;
    for (size_t i = 0; i < batch.seqs.size(); ++i) {
      const SequenceStep& s = batch.seqs[i];
      auto slot_of = [&](int64_t p) { return int64_t{s.block_table[p / bs]} * bs + p % bs; };
      for (int64_t j = 0; j < s.num_new; ++j) {
        pos[off + j] = s.num_cached + j;
        slots[off + j] = slot_of(s.num_cached + j);
      }
      if (s.num_cached > 0 || s.num_new > 1 || f32_rows) {
        ctx_slots[i].resize(s.num_cached + s.num_new);
        for (int64_t p = 0; p < s.num_cached + s.num_new; ++p) ctx_slots[i][p] = slot_of(p);
      }
      if (s.want_all_logits) {
        for (int64_t j = 0; j < s.num_new; ++j) logit_rows.push_back(off + j);
      } else if (s.want_logits) {
        logit_rows.push_back(off + s.num_new - 1);
      }
      off += s.num_new;
    }
    auto long_tensor = [&](std::vector<int64_t>& v) {
      return at::from_blob(v.data(), {static_cast<int64_t>(v.size())}, at::kLong).to(device);
    };
    at::Tensor ids_t = long_tensor(ids), pos_t = long_tensor(pos), slots_t = long_tensor(slots);
    std::vector<at::Tensor> ctx_t(batch.seqs.size());  // for ATen's gather, made when first needed

    at::Tensor cos, sin;  // [T, 1, D/2]
    if (f32_rows) {
      std::tie(cos, sin) = RopeTablesF32(pos, w.inv_freq);
    } else {
      at::Tensor freqs = pos_t.to(at::kFloat).unsqueeze(1) * w.inv_freq.unsqueeze(0);  // [T, D/2]
      cos = freqs.cos().to(dtype).unsqueeze(1), sin = freqs.sin().to(dtype).unsqueeze(1);
    }
    std::vector<AttentionSeq> attn_seqs;
    if (f32_rows)
      for (size_t i = 0; i < batch.seqs.size(); ++i)
        attn_seqs.push_back({batch.seqs[i].num_cached, batch.seqs[i].num_new, ctx_slots[i].data()});

    at::Tensor x = at::embedding(w.embed, ids_t);  // [T, H]
    at::Tensor attn = at::empty({T, nh, D}, x.options());
    for (size_t li = 0; li < w.layers.size(); ++li) {
      const LayerWeights& l = w.layers[li];
      at::Tensor h = rms_norm(x, l.input_norm);
      at::Tensor qkv = layer_linear(h, l.qkv4, l.wqkv, l.sqkv, l.bqkv);  // [T, (nh + 2 kvh) D]
      at::Tensor q = rope(qkv.narrow(1, 0, nh * D).view({T, nh, D}), cos, sin);
      at::Tensor k = rope(qkv.narrow(1, nh * D, kvh * D).view({T, kvh, D}), cos, sin);
      at::Tensor v = qkv.narrow(1, (nh + kvh) * D, kvh * D).view({T, kvh, D});
      at::Tensor& kc = cache.k(static_cast<int64_t>(li));
      at::Tensor& vc = cache.v(static_cast<int64_t>(li));
      kc.index_copy_(0, slots_t, k);
      vc.index_copy_(0, slots_t, v);
      if (f32_rows) {
        AttendF32(q, kc, vc, attn_seqs, scale, attn);  // every row from the cache, on its own
      } else {
        off = 0;
        for (size_t i = 0; i < batch.seqs.size(); ++i) {
          const SequenceStep& s = batch.seqs[i];
          at::Tensor qs = q.narrow(0, off, s.num_new);
          at::Tensor out;
          if (s.num_new == 1 && s.num_cached == 0) {  // a one-token prompt: its own key
            out = Attend(qs, k.narrow(0, off, 1), v.narrow(0, off, 1), 0, scale);
          } else if (cpu_kernels && s.num_new == 1 && DecodeAttentionApplies(qs, kc)) {
            out = DecodeAttention(qs, kc, vc, ctx_slots[i], scale, ctx_.tuning.cpu_amx);  // the cache in place
          } else if (cpu_kernels && PrefillAttentionApplies(qs, kc)) {
            out = PrefillAttention(qs, kc, vc, ctx_slots[i], s.num_cached, scale, ctx_.tuning.cpu_amx);  // in place too
          } else if (s.num_cached == 0) {  // the keys are exactly this step's
            out = Attend(qs, k.narrow(0, off, s.num_new), v.narrow(0, off, s.num_new), 0, scale);
          } else {
            if (!ctx_t[i].defined()) ctx_t[i] = long_tensor(ctx_slots[i]);
            out = Attend(qs, kc.index_select(0, ctx_t[i]), vc.index_select(0, ctx_t[i]),
                         s.num_cached, scale);
          }
          attn.narrow(0, off, s.num_new).copy_(out);
          off += s.num_new;
        }
      }
      x.add_(layer_linear(attn.view({T, nh * D}), l.o4, l.wo, l.so));
      h = rms_norm(x, l.post_norm);
      at::Tensor act;
      if (f32_rows) {
        act = SiluMulF32(layer_linear(h, l.gate4, l.wgate, l.sgate), layer_linear(h, l.up4, l.wup, l.sup));
      } else if (cpu_kernels && l.wgate.defined() && !l.sgate.defined()) {
        act = GateUp(h, l.wgate, l.wup);
      } else {
        act = at::silu(layer_linear(h, l.gate4, l.wgate, l.sgate)).mul_(layer_linear(h, l.up4, l.wup, l.sup));
      }
      x.add_(layer_linear(act, l.down4, l.wdown, l.sdown));
    }
    if (logit_rows.empty()) return at::empty({0, c.vocab_size}, x.options().dtype(at::kFloat));
    at::Tensor last = x.index_select(0, long_tensor(logit_rows));
    last = rms_norm(last, w.norm);
    at::Tensor logits = linear(last, w.lm_head, w.lm_head_scale);
    return cpu_kernels ? ToFloat(logits) : logits.to(at::kFloat);
  }

 private:
  PathContext ctx_;
};

}  // namespace

// Qwen2RMSNorm: in float32, then back to the input dtype, then times the weight.
// On CUDA with libtorch >= 2.8: at::rms_norm, one fused kernel (float32 inside, one rounding
// to the output dtype where transformers rounds twice; within bf16 noise, see tests/gpu).
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w, double eps) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8)
  if (x.is_cuda()) return at::rms_norm(x, {x.size(-1)}, w, eps);
#endif
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);
  xf = xf * at::rsqrt(var + eps);
  return w * xf.to(x.scalar_type());
}

std::unique_ptr<ForwardPath> MakeEagerPath(const PathContext& ctx) {
  return std::make_unique<EagerPath>(ctx);
}

}  // namespace r1::model
