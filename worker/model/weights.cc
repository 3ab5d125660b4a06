#include "worker/model/weights.h"

#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "worker/model/cpu_weights.h"
#include "worker/model/rope.h"

namespace r1::model {
namespace {

at::ScalarType ToScalarType(DType d) {
  switch (d) {
    case DType::kBF16: return at::kBFloat16;
    case DType::kF16: return at::kHalf;
    case DType::kF32: return at::kFloat;
  }
  return at::kFloat;
}

// A tensor viewing the mapped bytes (no copy). Read-only: the mapping is PROT_READ.
at::Tensor View(const TensorView& t) {
  return at::from_blob(const_cast<void*>(t.data), t.shape,
                       at::TensorOptions().dtype(ToScalarType(t.dtype)));
}

// The tensor in the model's dtype and device; aliases the mapping when nothing changes.
at::Tensor Materialise(const TensorView& t, at::ScalarType dtype, at::Device device) {
  at::Tensor v = View(t);
  if (v.scalar_type() == dtype && device.is_cpu()) return v;
  return v.to(device, dtype);
}

// Stacks tensors along dim 0 into one new tensor of the model's dtype and device.
at::Tensor Stack(const std::vector<const TensorView*>& parts, at::ScalarType dtype,
                 at::Device device) {
  std::vector<at::Tensor> views;
  for (const TensorView* p : parts) views.push_back(View(*p).to(dtype));
  return at::cat(views, 0).to(device);
}

// Off the CPU gate and up are one [2 I, H] tensor (one GEMM for both), which wgate and wup
// view; no extra memory is kept.
void StackGateUp(LayerWeights& l) {
  const int64_t I = l.wgate.size(0);
  l.wgate_up = at::cat({l.wgate, l.wup}, 0);
  l.wgate = l.wgate_up.narrow(0, 0, I);
  l.wup = l.wgate_up.narrow(0, I, I);
}

}  // namespace

int64_t ModelWeights::bytes(bool tied) const {
  int64_t n = embed.nbytes() + norm.nbytes();
  if (!tied) n += lm_head.nbytes();
  for (const LayerWeights& l : layers)
    n += l.input_norm.nbytes() + l.wqkv.nbytes() + (l.bqkv.defined() ? l.bqkv.nbytes() : 0) +
         l.wo.nbytes() + l.post_norm.nbytes() + l.wgate.nbytes() + l.wup.nbytes() +
         l.wdown.nbytes();
  return n;
}

absl::StatusOr<std::unique_ptr<ModelWeights>> LoadWeights(const std::string& dir,
                                                          const ModelConfig& cfg,
                                                          const WeightLoadOptions& options) {
  const at::ScalarType dtype = options.dtype;
  const at::Device device = options.device;
  auto w = std::make_unique<ModelWeights>();
  R1_ASSIGN_OR_RETURN(w->checkpoint, Checkpoint::Open(dir));
  const Checkpoint& ck = *w->checkpoint;

  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  const int64_t D = cfg.head_dim(), QD = cfg.num_attention_heads * D,
                KD = cfg.num_key_value_heads * D;
  // On CPU with cpu_copy_weights: every weight but the embedding is copied into the arena (in
  // access order) and its pages of the mapping are dropped, so the RSS holds one copy.
  // Otherwise the weights view the mapping, advised MADV_HUGEPAGE: pages read in by faults
  // then arrive as 2 MiB folios, mapped 2 MiB at a time (fewer TLB misses, longer prefetch).
  std::shared_ptr<WeightArena> arena;
  if (device.is_cpu()) {
    std::vector<std::string> names = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
    for (int64_t i = 0; i < cfg.num_hidden_layers; ++i)
      for (const char* n : {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                            "self_attn.v_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.bias",
                            "self_attn.v_proj.bias", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                            "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"})
        names.push_back(absl::StrCat("model.layers.", i, ".", n));
    std::vector<const TensorView*> views;
    for (const std::string& n : names)
      if (ck.Has(n)) views.push_back(*ck.Get(n));
    AdviseHugePages(views);
  }
  if (device.is_cpu() && options.cpu_copy_weights) {
    // Upper bound: every checkpoint element (>= 2 bytes each) in the model dtype, plus the
    // alignment of a few hundred tensors. Untouched reserved pages cost nothing.
    size_t bytes = ck.total_bytes() / 2 * c10::elementSize(dtype) + (size_t{8} << 20);
    arena = WeightArena::Create(bytes);
  }
  // Whatever was copied (into the arena, or converted to another dtype) drops its pages of the
  // mapping from the RSS: a float32 model then holds one copy, not the file beside it.
  auto put = [&](const TensorView* t) {
    at::Tensor r = arena ? arena->Copy(View(*t), dtype) : Materialise(*t, dtype, device);
    if (device.is_cpu() && r.data_ptr() != t->data) WeightArena::ReleaseMapped(t->data, t->nbytes);
    return r;
  };
  auto stack = [&](const std::vector<const TensorView*>& parts) {
    at::Tensor r;
    if (arena) {
      std::vector<at::Tensor> views;
      for (const TensorView* p : parts) views.push_back(View(*p));
      r = arena->Stack(views, dtype);
    } else {
      r = Stack(parts, dtype, device);
    }
    if (device.is_cpu())
      for (const TensorView* p : parts) WeightArena::ReleaseMapped(p->data, p->nbytes);
    return r;
  };
  try {
    R1_ASSIGN_OR_RETURN(const TensorView* embed, ck.GetShaped("model.embed_tokens.weight", {V, H}));
    w->embed = arena ? Materialise(*embed, dtype, device) : put(embed);
    for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
      std::string p = absl::StrCat("model.layers.", i, ".");
      LayerWeights l;
      R1_ASSIGN_OR_RETURN(auto ln1, ck.GetShaped(p + "input_layernorm.weight", {H}));
      R1_ASSIGN_OR_RETURN(auto q, ck.GetShaped(p + "self_attn.q_proj.weight", {QD, H}));
      R1_ASSIGN_OR_RETURN(auto k, ck.GetShaped(p + "self_attn.k_proj.weight", {KD, H}));
      R1_ASSIGN_OR_RETURN(auto v, ck.GetShaped(p + "self_attn.v_proj.weight", {KD, H}));
      R1_ASSIGN_OR_RETURN(auto o, ck.GetShaped(p + "self_attn.o_proj.weight", {H, QD}));
      R1_ASSIGN_OR_RETURN(auto ln2, ck.GetShaped(p + "post_attention_layernorm.weight", {H}));
      R1_ASSIGN_OR_RETURN(auto gate, ck.GetShaped(p + "mlp.gate_proj.weight", {I, H}));
      R1_ASSIGN_OR_RETURN(auto up, ck.GetShaped(p + "mlp.up_proj.weight", {I, H}));
      R1_ASSIGN_OR_RETURN(auto down, ck.GetShaped(p + "mlp.down_proj.weight", {H, I}));
      l.input_norm = put(ln1);
      l.wqkv = stack({q, k, v});
      if (cfg.qkv_bias) {  // Qwen2; a Llama checkpoint has none (bqkv stays undefined)
        R1_ASSIGN_OR_RETURN(auto qb, ck.GetShaped(p + "self_attn.q_proj.bias", {QD}));
        R1_ASSIGN_OR_RETURN(auto kb, ck.GetShaped(p + "self_attn.k_proj.bias", {KD}));
        R1_ASSIGN_OR_RETURN(auto vb, ck.GetShaped(p + "self_attn.v_proj.bias", {KD}));
        l.bqkv = stack({qb, kb, vb});
      }
      l.wo = put(o);
      l.post_norm = put(ln2);
      // Without the arena, gate and up stay separate views of the mapping: no copy at load.
      l.wgate = put(gate);
      l.wup = put(up);
      if (!device.is_cpu()) StackGateUp(l);
      l.wdown = put(down);
      w->layers.push_back(std::move(l));
    }
    R1_ASSIGN_OR_RETURN(const TensorView* norm, ck.GetShaped("model.norm.weight", {H}));
    w->norm = put(norm);
    if (cfg.tie_word_embeddings) {
      // The arena holds a copy for the lm_head pass; lookups keep viewing the mapping.
      w->lm_head = arena ? arena->Copy(w->embed, dtype) : w->embed;
    } else {
      R1_ASSIGN_OR_RETURN(const TensorView* head, ck.GetShaped("lm_head.weight", {V, H}));
      w->lm_head = put(head);
    }
    w->inv_freq = RopeInvFreq(cfg).to(device);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("loading ", dir, ": ", e.what_without_backtrace()));
  }
  // Nothing on another device or in another dtype views the mapping: then it can go.
  if (!device.is_cpu()) w->checkpoint.reset();
  return w;
}

std::unique_ptr<ModelWeights> RandomWeights(const ModelConfig& cfg, const WeightLoadOptions& options,
                                            double init_std, uint64_t seed) {
  at::manual_seed(seed);
  const at::TensorOptions to = at::TensorOptions().dtype(options.dtype).device(options.device);
  auto rnd = [&](at::IntArrayRef shape) { return at::empty(shape, to).normal_(0, init_std); };
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  const int64_t QKV = (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * cfg.head_dim();
  auto w = std::make_unique<ModelWeights>();
  w->embed = rnd({V, H});
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    LayerWeights l;
    l.input_norm = at::ones({H}, to);
    l.wqkv = rnd({QKV, H});
    if (cfg.qkv_bias) l.bqkv = rnd({QKV});
    l.wo = rnd({H, cfg.num_attention_heads * cfg.head_dim()});
    l.post_norm = at::ones({H}, to);
    l.wgate = rnd({I, H});
    l.wup = rnd({I, H});
    if (!options.device.is_cpu()) StackGateUp(l);
    l.wdown = rnd({H, I});
    w->layers.push_back(std::move(l));
  }
  w->norm = at::ones({H}, to);
  w->lm_head = cfg.tie_word_embeddings ? w->embed : rnd({V, H});
  w->inv_freq = RopeInvFreq(cfg).to(options.device);
  return w;
}

}  // namespace r1::model
