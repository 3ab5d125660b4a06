#include "worker/model/weights.h"

#include <c10/util/Exception.h>

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/model/awq.h"
#include "worker/model/cpu_int8.h"
#include "worker/model/cpu_weights.h"
#include "worker/model/rope.h"

namespace r1::model {
namespace {

at::ScalarType ToScalarType(DType d) {
  switch (d) {
    case DType::kBF16: return at::kBFloat16;
    case DType::kF16: return at::kHalf;
    case DType::kF32: return at::kFloat;
    case DType::kI8: return at::kChar;
    case DType::kI32: return at::kInt;
    case DType::kF8E4M3: return at::kByte;  // e4m3 bytes, read only by the FP8 kernels
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
  auto opt = [](const at::Tensor& t) { return t.defined() ? static_cast<int64_t>(t.nbytes()) : 0; };
  auto int4 = [&](const Int4Groups& g) { return opt(g.q) + opt(g.scale) + opt(g.zero); };
  int64_t n = embed.nbytes() + norm.nbytes();
  if (!tied || lm_head_scale.defined()) n += lm_head.nbytes() + opt(lm_head_scale);
  for (const LayerWeights& l : layers)
    n += l.input_norm.nbytes() + opt(l.wqkv) + opt(l.bqkv) + opt(l.wo) + l.post_norm.nbytes() +
         opt(l.wgate) + opt(l.wup) + opt(l.wdown) + opt(l.sqkv) + opt(l.so) + opt(l.sgate) +
         opt(l.sup) + opt(l.sdown) + (l.sgate_up.defined() ? opt(l.wgate_up) + opt(l.sgate_up) : 0) +
         int4(l.qkv4) + int4(l.o4) + int4(l.gate4) + int4(l.up4) + int4(l.down4) + int4(l.gate_up4);
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
  // A floating tensor: an I8 one here is a quantized checkpoint whose config.json does not say
  // so (or a tensor int8 checkpoints keep in floating point), never read as numbers.
  auto get = [&](const std::string& name, const std::vector<int64_t>& shape) -> absl::StatusOr<const TensorView*> {
    R1_ASSIGN_OR_RETURN(const TensorView* t, ck.GetShaped(name, shape));
    if (t->dtype == DType::kI8)
      return absl::InvalidArgumentError(absl::StrCat(
          name, " in ", t->file, " is I8 but config.json has no int8 quantization_config for it"));
    if (t->dtype == DType::kI32)
      return absl::InvalidArgumentError(absl::StrCat(name, " in ", t->file, " is I32: not a floating tensor"));
    if (t->dtype == DType::kF8E4M3)
      return absl::InvalidArgumentError(absl::StrCat(
          name, " in ", t->file, " is F8_E4M3 but config.json has no FP8 quantization_config for it"));
    return t;
  };
  // A quantized checkpoint's linear weight: `weight` [rows, cols] in `want` (the dtype the
  // `format` quantization_config says) and its `weight_scale` [rows, 1] as float32 [rows];
  // scales must be finite and positive (zero too where `zero_scale_ok`: an all-zero row).
  auto checkpoint_rows = [&](const std::string& name, int64_t rows, int64_t cols, DType want, const char* format,
                             bool zero_scale_ok) -> absl::StatusOr<std::pair<const TensorView*, at::Tensor>> {
    R1_ASSIGN_OR_RETURN(const TensorView* t, ck.GetShaped(name + ".weight", {rows, cols}));
    if (t->dtype != want)
      return absl::InvalidArgumentError(absl::StrCat(name, ".weight in ", t->file, " is ", DTypeName(t->dtype), ", not ",
                                                     DTypeName(want), " as the ", format, " quantization_config says"));
    R1_ASSIGN_OR_RETURN(const TensorView* s, ck.Get(name + ".weight_scale"));
    const bool floating = s->dtype == DType::kBF16 || s->dtype == DType::kF16 || s->dtype == DType::kF32;
    if (!floating || s->numel() != rows || (s->shape.size() == 2 && s->shape[1] != 1) || s->shape.size() > 2)
      return absl::InvalidArgumentError(absl::StrCat(
          name, ".weight_scale in ", s->file, ": expected a floating [", rows, ", 1] tensor (one scale per output channel), found ",
          DTypeName(s->dtype), " ", ShapeString(s->shape)));
    at::Tensor scale = View(*s).reshape({rows}).to(at::kFloat).contiguous();
    const bool ok = (zero_scale_ok ? scale.ge(0) : scale.gt(0)).all().item<bool>() && scale.isfinite().all().item<bool>();
    if (!ok)
      return absl::InvalidArgumentError(absl::StrCat(name, ".weight_scale in ", s->file, " has a scale that is ",
                                                     zero_scale_ok ? "negative or not finite" : "not a positive finite number"));
    return std::pair{t, scale};
  };
  // An FP8 checkpoint's linear weight: e4m3 bytes [rows, cols] (kByte) and its float32 per-row
  // scales, on the device.
  auto fp8_weight = [&](const std::string& name, int64_t rows, int64_t cols) -> absl::StatusOr<std::pair<at::Tensor, at::Tensor>> {
    R1_ASSIGN_OR_RETURN(auto r, checkpoint_rows(name, rows, cols, DType::kF8E4M3, "FP8", /*zero_scale_ok=*/true));
    return std::pair{View(*r.first).to(device), r.second.to(device)};
  };
  const bool fp8_checkpoint = cfg.quantization.kind == "fp8";
  // Int8 linear weights: the checkpoint's own (an int8 checkpoint: `weight` in I8 and
  // `weight_scale` [rows, 1]), or the floating weights quantized per row at load.
  const bool int8_checkpoint = cfg.quantization.kind == "int8";
  auto int8_weight = [&](const std::string& name, int64_t rows, int64_t cols) -> absl::StatusOr<Int8Rows> {
    if (!int8_checkpoint) {
      R1_ASSIGN_OR_RETURN(const TensorView* t, get(name + ".weight", {rows, cols}));
      Int8Rows r = QuantizeInt8Rows(View(*t));
      WeightArena::ReleaseMapped(t->data, t->nbytes);
      return r;
    }
    R1_ASSIGN_OR_RETURN(auto r, checkpoint_rows(name, rows, cols, DType::kI8, "int8", /*zero_scale_ok=*/false));
    return Int8Rows{View(*r.first), r.second};
  };
  // Int4 linear weights: an AWQ checkpoint's (qweight, qzeros, scales, converted), or the
  // floating weights quantized in groups at load.
  const bool awq_checkpoint = cfg.quantization.kind == "awq";
  const int64_t group = options.int4_group;
  auto int4_weight = [&](const std::string& name, int64_t rows, int64_t cols) -> absl::StatusOr<Int4Groups> {
    if (!awq_checkpoint) {
      R1_ASSIGN_OR_RETURN(const TensorView* t, get(name + ".weight", {rows, cols}));
      Int4Groups r = QuantizeInt4Groups(View(*t), group);
      WeightArena::ReleaseMapped(t->data, t->nbytes);
      return r;
    }
    if (rows % 8 != 0 || cols % group != 0)
      return absl::InvalidArgumentError(absl::StrCat(name, ": an AWQ layer of ", rows, " x ", cols,
                                                     " cannot be packed (output rows must be a multiple of 8 and "
                                                     "input columns of the group size ", group, ")"));
    R1_ASSIGN_OR_RETURN(const TensorView* qw, ck.GetShaped(name + ".qweight", {cols, rows / 8}));
    R1_ASSIGN_OR_RETURN(const TensorView* qz, ck.GetShaped(name + ".qzeros", {cols / group, rows / 8}));
    R1_ASSIGN_OR_RETURN(const TensorView* sc, get(name + ".scales", {cols / group, rows}));
    for (const TensorView* t : {qw, qz})
      if (t->dtype != DType::kI32)
        return absl::InvalidArgumentError(absl::StrCat(t->name, " in ", t->file, " is ", DTypeName(t->dtype),
                                                       ", not I32 as AWQ packs it"));
    Int4Groups r = Int4FromAwq(View(*qw), View(*qz), View(*sc), group);
    if (!(r.scale.ge(0).all().item<bool>() && r.scale.isfinite().all().item<bool>()))
      return absl::InvalidArgumentError(absl::StrCat(name, ".scales in ", sc->file,
                                                     " has a scale that is negative or not finite"));
    for (const TensorView* t : {qw, qz, sc}) WeightArena::ReleaseMapped(t->data, t->nbytes);
    return r;
  };
  // Rows quantize independently: stacked layers are the stacked quantizations.
  auto stack_int4 = [](const std::vector<Int4Groups>& parts) {
    std::vector<at::Tensor> q, scale, zero;
    for (const Int4Groups& p : parts) q.push_back(p.q), scale.push_back(p.scale), zero.push_back(p.zero);
    return Int4Groups{at::cat(q, 0), at::cat(scale, 0), at::cat(zero, 0), parts[0].k, parts[0].group};
  };
  // A decoder layer's seven linear weights, in this order, each read by a loader above as
  // load(name, rows, cols) into out.
  struct LinearShape {
    const char* name;
    int64_t rows, cols;
  };
  const LinearShape linears[7] = {{"self_attn.q_proj", QD, H}, {"self_attn.k_proj", KD, H}, {"self_attn.v_proj", KD, H},
                                  {"self_attn.o_proj", H, QD}, {"mlp.gate_proj", I, H},     {"mlp.up_proj", I, H},
                                  {"mlp.down_proj", H, I}};
  auto load_linears = [&]<typename T>(const std::string& prefix, const auto& load, std::array<T, 7>& out) -> absl::Status {
    for (size_t j = 0; j < out.size(); ++j) {
      R1_ASSIGN_OR_RETURN(out[j], load(prefix + linears[j].name, linears[j].rows, linears[j].cols));
    }
    return absl::OkStatus();
  };
  auto floating_weight = [&](const std::string& name, int64_t rows, int64_t cols) {
    return get(name + ".weight", {rows, cols});
  };
  // Into the arena when there is one (contiguous huge pages); else as they are.
  auto keep = [&](const at::Tensor& q, at::ScalarType type) { return arena ? arena->Copy(q, type) : q; };
  auto keep_int8 = [&](const at::Tensor& q) { return keep(q, at::kChar); };
  try {
    R1_ASSIGN_OR_RETURN(const TensorView* embed, get("model.embed_tokens.weight", {V, H}));
    w->embed = arena ? Materialise(*embed, dtype, device) : put(embed);
    for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
      std::string p = absl::StrCat("model.layers.", i, ".");
      LayerWeights l;
      R1_ASSIGN_OR_RETURN(auto ln1, get(p + "input_layernorm.weight", {H}));
      R1_ASSIGN_OR_RETURN(auto ln2, get(p + "post_attention_layernorm.weight", {H}));
      l.input_norm = put(ln1);
      if (group > 0) {
        std::array<Int4Groups, 7> r;
        R1_RETURN_IF_ERROR(load_linears(p, int4_weight, r));
        auto& [q, k, v, o, gate, up, down] = r;
        l.qkv4 = stack_int4({q, k, v});
        l.o4 = std::move(o), l.gate4 = std::move(gate), l.up4 = std::move(up), l.down4 = std::move(down);
        for (Int4Groups* g : {&l.qkv4, &l.o4, &l.gate4, &l.up4, &l.down4}) g->q = keep(g->q, at::kByte);
      } else if (options.int8) {
        std::array<Int8Rows, 7> r;
        R1_RETURN_IF_ERROR(load_linears(p, int8_weight, r));
        const auto& [q, k, v, o, gate, up, down] = r;
        // Rows quantize independently: q, k and v stacked are the stacked quantizations.
        l.wqkv = keep_int8(at::cat({q.q, k.q, v.q}, 0));
        l.sqkv = at::cat({q.scale, k.scale, v.scale}, 0);
        l.wo = keep_int8(o.q), l.so = o.scale;
        l.wgate = keep_int8(gate.q), l.sgate = gate.scale;
        l.wup = keep_int8(up.q), l.sup = up.scale;
        l.wdown = keep_int8(down.q), l.sdown = down.scale;
      } else if (fp8_checkpoint) {
        std::array<std::pair<at::Tensor, at::Tensor>, 7> r;
        R1_RETURN_IF_ERROR(load_linears(p, fp8_weight, r));
        const auto& [q, k, v, o, gate, up, down] = r;
        // Rows quantize independently: stacked layers are the stacked quantizations.
        l.wqkv = at::cat({q.first, k.first, v.first}, 0), l.sqkv = at::cat({q.second, k.second, v.second}, 0);
        l.wo = o.first, l.so = o.second;
        l.wgate_up = at::cat({gate.first, up.first}, 0), l.sgate_up = at::cat({gate.second, up.second}, 0);
        l.wdown = down.first, l.sdown = down.second;
      } else {
        std::array<const TensorView*, 7> r;
        R1_RETURN_IF_ERROR(load_linears(p, floating_weight, r));
        const auto& [q, k, v, o, gate, up, down] = r;
        l.wqkv = stack({q, k, v});
        l.wo = put(o);
        // Without the arena, gate and up stay separate views of the mapping: no copy at load.
        l.wgate = put(gate);
        l.wup = put(up);
        if (!device.is_cpu()) StackGateUp(l);
        l.wdown = put(down);
      }
      if (cfg.qkv_bias) {  // Qwen2; a Llama checkpoint has none (bqkv stays undefined)
        R1_ASSIGN_OR_RETURN(auto qb, get(p + "self_attn.q_proj.bias", {QD}));
        R1_ASSIGN_OR_RETURN(auto kb, get(p + "self_attn.k_proj.bias", {KD}));
        R1_ASSIGN_OR_RETURN(auto vb, get(p + "self_attn.v_proj.bias", {KD}));
        l.bqkv = stack({qb, kb, vb});
      }
      l.post_norm = put(ln2);
      w->layers.push_back(std::move(l));
    }
    R1_ASSIGN_OR_RETURN(const TensorView* norm, get("model.norm.weight", {H}));
    w->norm = put(norm);
    if (options.int8_lm_head) {
      // Quantized from the checkpoint's own values (not from a dtype-rounded copy); a tied
      // head quantizes the embedding, which lookups keep reading in `dtype`.
      const TensorView* head = nullptr;
      if (!cfg.tie_word_embeddings) {
        R1_ASSIGN_OR_RETURN(head, get("lm_head.weight", {V, H}));
      }
      Int8Rows r = QuantizeInt8Rows(head ? View(*head) : w->embed);
      w->lm_head_origin = head ? absl::StrCat("the checkpoint's ", DTypeName(head->dtype), " lm_head.weight")
                               : absl::StrCat("the tied embedding (", DTypeName(embed->dtype), ")");
      if (head) WeightArena::ReleaseMapped(head->data, head->nbytes);
      w->lm_head = keep_int8(r.q);
      w->lm_head_scale = r.scale;
    } else if (cfg.tie_word_embeddings) {
      // The arena holds a copy for the lm_head pass; lookups keep viewing the mapping.
      w->lm_head = arena ? arena->Copy(w->embed, dtype) : w->embed;
    } else {
      R1_ASSIGN_OR_RETURN(const TensorView* head, get("lm_head.weight", {V, H}));
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
  if (options.int8)
    for (LayerWeights& l : w->layers) {
      auto quantize = [](at::Tensor& wt, at::Tensor& scale) {
        Int8Rows r = QuantizeInt8Rows(wt);
        wt = r.q, scale = r.scale;
      };
      quantize(l.wqkv, l.sqkv), quantize(l.wo, l.so), quantize(l.wgate, l.sgate);
      quantize(l.wup, l.sup), quantize(l.wdown, l.sdown);
    }
  if (options.int4_group > 0)
    for (LayerWeights& l : w->layers) {
      auto quantize = [&](at::Tensor& wt, Int4Groups& q) {
        q = QuantizeInt4Groups(wt.to(at::kCPU), options.int4_group);
        wt = at::Tensor();
      };
      quantize(l.wqkv, l.qkv4), quantize(l.wo, l.o4), quantize(l.wgate, l.gate4);
      quantize(l.wup, l.up4), quantize(l.wdown, l.down4);
    }
  w->norm = at::ones({H}, to);
  w->lm_head = cfg.tie_word_embeddings ? w->embed : rnd({V, H});
  if (options.int8_lm_head) {
    Int8Rows r = QuantizeInt8Rows(w->lm_head);
    w->lm_head = r.q, w->lm_head_scale = r.scale, w->lm_head_origin = "random weights";
  }
  w->inv_freq = RopeInvFreq(cfg).to(options.device);
  return w;
}

}  // namespace r1::model
