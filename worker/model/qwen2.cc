#include "worker/model/qwen2.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <limits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "worker/model/cpu_attention.h"
#include "worker/model/cpu_gemm.h"
#include "worker/model/cpu_weights.h"
#include "worker/model/qwen2_internal.h"
#include "worker/model/safetensors.h"

namespace r1::model {

Qwen2Model::~Qwen2Model() = default;

absl::StatusOr<at::Device> ResolveDevice(const std::string& device) {
  if (device == "auto") return at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  at::Device d(at::kCPU);
  try {
    d = at::Device(device);
  } catch (const c10::Error&) {
    return absl::InvalidArgumentError(
        absl::StrCat("--device: '", device, "' is not one of auto, cpu, cuda, cuda:N"));
  }
  if (d.is_cuda()) {
    if (!at::hasCUDA())
      return absl::InvalidArgumentError(absl::StrCat(
          "--device ", device, ": CUDA is not available (this libtorch or machine has no GPU)"));
    int n = static_cast<int>(at::getNumGPUs());
    if (d.has_index() && d.index() >= n)
      return absl::InvalidArgumentError(
          absl::StrCat("--device ", device, ": only ", n, " CUDA device(s) present"));
    if (!d.has_index()) d = at::Device(at::kCUDA, 0);
  } else if (!d.is_cpu()) {
    return absl::InvalidArgumentError(absl::StrCat("--device ", device, ": unsupported device"));
  }
  return d;
}

absl::StatusOr<at::ScalarType> ResolveDtype(const std::string& dtype, at::Device device) {
  if (dtype == "auto" || dtype == "bfloat16" || dtype == "bf16") return at::kBFloat16;
  if (dtype == "float32" || dtype == "fp32") return at::kFloat;
  if (dtype == "float16" || dtype == "fp16") {
    if (device.is_cpu())
      return absl::InvalidArgumentError(
          "--dtype float16 is not supported on CPU (libtorch has no CPU float16 matmul); use "
          "bfloat16 or float32");
    return at::kHalf;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--dtype: '", dtype, "' is not one of auto, bfloat16, float16, float32"));
}

KvCache::KvCache(const ModelConfig& cfg, int64_t num_blocks, int64_t block_size,
                 at::ScalarType dtype, at::Device device)
    : num_blocks_(num_blocks), block_size_(block_size) {
  auto opts = at::TensorOptions().dtype(dtype).device(device);
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    k_.push_back(at::zeros({num_blocks * block_size, cfg.num_key_value_heads, cfg.head_dim()}, opts));
    v_.push_back(at::zeros({num_blocks * block_size, cfg.num_key_value_heads, cfg.head_dim()}, opts));
  }
}

int64_t KvCache::BytesPerBlock(const ModelConfig& cfg, int64_t block_size, at::ScalarType dtype) {
  return 2 * cfg.num_hidden_layers * block_size * cfg.num_key_value_heads * cfg.head_dim() *
         static_cast<int64_t>(c10::elementSize(dtype));
}

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

absl::StatusOr<std::unique_ptr<Qwen2Model>> Qwen2Model::Load(const std::string& dir,
                                                             const LoadOptions& options) {
  R1_ASSIGN_OR_RETURN(ModelConfig cfg, LoadModelConfig(dir));
  R1_ASSIGN_OR_RETURN(at::Device device, ResolveDevice(options.device));
  R1_ASSIGN_OR_RETURN(at::ScalarType dtype, ResolveDtype(options.dtype, device));
  int threads = options.num_threads > 0 ? options.num_threads
                                        : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(std::max(1, threads));

  std::unique_ptr<Qwen2Model> m(new Qwen2Model());
  m->config_ = cfg;
  m->device_ = device;
  m->dtype_ = dtype;
  m->cpu_kernels_ = options.cpu_kernels;
  m->cuda_graphs_ = options.cuda_graphs;
  m->cuda_kernels_ = options.cuda_kernels;
  auto w = std::make_unique<Weights>();
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
      Layer l;
      R1_ASSIGN_OR_RETURN(auto ln1, ck.GetShaped(p + "input_layernorm.weight", {H}));
      R1_ASSIGN_OR_RETURN(auto q, ck.GetShaped(p + "self_attn.q_proj.weight", {QD, H}));
      R1_ASSIGN_OR_RETURN(auto k, ck.GetShaped(p + "self_attn.k_proj.weight", {KD, H}));
      R1_ASSIGN_OR_RETURN(auto v, ck.GetShaped(p + "self_attn.v_proj.weight", {KD, H}));
      R1_ASSIGN_OR_RETURN(auto qb, ck.GetShaped(p + "self_attn.q_proj.bias", {QD}));
      R1_ASSIGN_OR_RETURN(auto kb, ck.GetShaped(p + "self_attn.k_proj.bias", {KD}));
      R1_ASSIGN_OR_RETURN(auto vb, ck.GetShaped(p + "self_attn.v_proj.bias", {KD}));
      R1_ASSIGN_OR_RETURN(auto o, ck.GetShaped(p + "self_attn.o_proj.weight", {H, QD}));
      R1_ASSIGN_OR_RETURN(auto ln2, ck.GetShaped(p + "post_attention_layernorm.weight", {H}));
      R1_ASSIGN_OR_RETURN(auto gate, ck.GetShaped(p + "mlp.gate_proj.weight", {I, H}));
      R1_ASSIGN_OR_RETURN(auto up, ck.GetShaped(p + "mlp.up_proj.weight", {I, H}));
      R1_ASSIGN_OR_RETURN(auto down, ck.GetShaped(p + "mlp.down_proj.weight", {H, I}));
      l.input_norm = put(ln1);
      l.wqkv = stack({q, k, v});
      l.bqkv = stack({qb, kb, vb});
      l.wo = put(o);
      l.post_norm = put(ln2);
      // Without the arena, gate and up stay separate views of the mapping: no copy at load.
      l.wgate = put(gate);
      l.wup = put(up);
      if (!device.is_cpu()) {  // one GEMM for both on the GPU; no extra memory kept
        l.wgate_up = at::cat({l.wgate, l.wup}, 0);
        l.wgate = l.wgate_up.narrow(0, 0, I);
        l.wup = l.wgate_up.narrow(0, I, I);
      }
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
    // inv_freq as transformers computes it: 1 / theta^(arange(0, D, 2) / D) in float32.
    w->inv_freq = at::pow(cfg.rope_theta, at::arange(0, D, 2, at::kLong).to(at::kFloat) / D)
                      .reciprocal()
                      .to(device);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("loading ", dir, ": ", e.what_without_backtrace()));
  }
  // Nothing on another device or in another dtype views the mapping: then it can go.
  if (!device.is_cpu()) w->checkpoint.reset();
  m->weights_ = std::move(w);
  return m;
}

int64_t Qwen2Model::weight_bytes() const {
  int64_t n = weights_->embed.nbytes() + weights_->norm.nbytes();
  if (!config_.tie_word_embeddings) n += weights_->lm_head.nbytes();
  for (const Layer& l : weights_->layers)
    n += l.input_norm.nbytes() + l.wqkv.nbytes() + l.bqkv.nbytes() + l.wo.nbytes() +
         l.post_norm.nbytes() + l.wgate.nbytes() + l.wup.nbytes() + l.wdown.nbytes();
  return n;
}

absl::StatusOr<at::Tensor> Qwen2Model::Forward(const StepBatch& batch, KvCache& cache) {
  // Validate everything that could index out of bounds.
  int64_t total = 0;
  for (size_t i = 0; i < batch.seqs.size(); ++i) {
    const SequenceStep& s = batch.seqs[i];
    if (s.num_new <= 0 || s.num_cached < 0)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": no new tokens"));
    int64_t len = s.num_cached + s.num_new;
    if (len > config_.max_position_embeddings)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": length ", len,
                                                     " exceeds max_position_embeddings ",
                                                     config_.max_position_embeddings));
    int64_t need = (len + cache.block_size() - 1) / cache.block_size();
    if (static_cast<int64_t>(s.block_table.size()) < need)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": block table has ",
                                                     s.block_table.size(), " blocks, needs ", need));
    for (int32_t b : s.block_table)
      if (b < 0 || b >= cache.num_blocks())
        return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": bad block id ", b));
    total += s.num_new;
  }
  if (batch.seqs.empty() || total != static_cast<int64_t>(batch.tokens.size()))
    return absl::InvalidArgumentError(absl::StrCat("batch has ", batch.tokens.size(),
                                                   " tokens but its sequences add up to ", total));
  for (int32_t t : batch.tokens)
    if (t < 0 || t >= config_.vocab_size)
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", t, " is outside the vocabulary [0, ", config_.vocab_size, ")"));
  try {
    return ForwardImpl(batch, cache);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("model step failed: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("model step failed: ", e.what()));
  }
}

at::Tensor Qwen2Model::ForwardImpl(const StepBatch& batch, KvCache& cache) {
#if defined(R1_HAVE_CUDA)
  if (device_.is_cuda() && cuda_kernels_) return CudaForward(batch, cache);
#endif
  return EagerForward(batch, cache);
}

at::Tensor Qwen2Model::EagerForward(const StepBatch& batch, KvCache& cache) {
  const ModelConfig& c = config_;
  const Weights& w = *weights_;
  const int64_t T = static_cast<int64_t>(batch.tokens.size());
  const int64_t nh = c.num_attention_heads, kvh = c.num_key_value_heads, D = c.head_dim();
  const int64_t bs = cache.block_size();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  auto linear = [&](const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = at::Tensor()) {
    return cpu_kernels_ ? Linear(x, w, b) : at::linear(x, w, b);
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
    if (s.num_cached > 0) {
      ctx_slots[i].resize(s.num_cached + s.num_new);
      for (int64_t p = 0; p < s.num_cached + s.num_new; ++p) ctx_slots[i][p] = slot_of(p);
    }
    off += s.num_new;
    if (s.want_logits) logit_rows.push_back(off - 1);
  }
  auto long_tensor = [&](std::vector<int64_t>& v) {
    return at::from_blob(v.data(), {static_cast<int64_t>(v.size())}, at::kLong).to(device_);
  };
  at::Tensor ids_t = long_tensor(ids), pos_t = long_tensor(pos), slots_t = long_tensor(slots);
  std::vector<at::Tensor> ctx_t(batch.seqs.size());
  for (size_t i = 0; i < batch.seqs.size(); ++i)
    if (!ctx_slots[i].empty()) ctx_t[i] = long_tensor(ctx_slots[i]);

  at::Tensor freqs = pos_t.to(at::kFloat).unsqueeze(1) * w.inv_freq.unsqueeze(0);  // [T, D/2]
  at::Tensor cos = freqs.cos().to(dtype_).unsqueeze(1), sin = freqs.sin().to(dtype_).unsqueeze(1);

  at::Tensor x = at::embedding(w.embed, ids_t);  // [T, H]
  at::Tensor attn = at::empty({T, nh, D}, x.options());
  for (size_t li = 0; li < w.layers.size(); ++li) {
    const Layer& l = w.layers[li];
    at::Tensor h = RmsNorm(x, l.input_norm, c.rms_norm_eps);
    at::Tensor qkv = linear(h, l.wqkv, l.bqkv);  // [T, (nh + 2 kvh) D]
    at::Tensor q = Rope(qkv.narrow(1, 0, nh * D).view({T, nh, D}), cos, sin);
    at::Tensor k = Rope(qkv.narrow(1, nh * D, kvh * D).view({T, kvh, D}), cos, sin);
    at::Tensor v = qkv.narrow(1, (nh + kvh) * D, kvh * D).view({T, kvh, D});
    at::Tensor& kc = cache.k(static_cast<int64_t>(li));
    at::Tensor& vc = cache.v(static_cast<int64_t>(li));
    kc.index_copy_(0, slots_t, k);
    vc.index_copy_(0, slots_t, v);
    off = 0;
    for (size_t i = 0; i < batch.seqs.size(); ++i) {
      const SequenceStep& s = batch.seqs[i];
      at::Tensor qs = q.narrow(0, off, s.num_new);
      at::Tensor out;
      if (s.num_cached == 0) {  // the keys are exactly this step's
        out = Attend(qs, k.narrow(0, off, s.num_new), v.narrow(0, off, s.num_new), 0, scale);
      } else if (cpu_kernels_ && s.num_new == 1 && DecodeAttentionApplies(qs, kc)) {
        out = DecodeAttention(qs, kc, vc, ctx_slots[i], scale);  // reads the cache in place
      } else {
        out = Attend(qs, kc.index_select(0, ctx_t[i]), vc.index_select(0, ctx_t[i]),
                     s.num_cached, scale);
      }
      attn.narrow(0, off, s.num_new).copy_(out);
      off += s.num_new;
    }
    x.add_(linear(attn.view({T, nh * D}), l.wo));
    h = RmsNorm(x, l.post_norm, c.rms_norm_eps);
    at::Tensor act = cpu_kernels_ ? GateUp(h, l.wgate, l.wup)
                                  : at::silu(linear(h, l.wgate)).mul_(linear(h, l.wup));
    x.add_(linear(act, l.wdown));
  }
  if (logit_rows.empty()) return at::empty({0, c.vocab_size}, x.options().dtype(at::kFloat));
  at::Tensor last = x.index_select(0, long_tensor(logit_rows));
  last = RmsNorm(last, w.norm, c.rms_norm_eps);
  at::Tensor logits = linear(last, w.lm_head);
  return cpu_kernels_ ? ToFloat(logits) : logits.to(at::kFloat);
}

}  // namespace r1::model
