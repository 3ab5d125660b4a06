#include "worker/model/qwen2.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "worker/model/cpu_gemm.h"
#include "worker/model/cpu_int4.h"
#include "worker/model/cpu_int8.h"
#include "worker/model/cpu_weights.h"
#include "worker/model/forward_path.h"
#include "worker/model/weights.h"

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
  // A CPU without AVX512-BF16 runs bfloat16 through libtorch's fallback, several times slower
  // than float32 (on the 2-core AVX2 VM: decode 0.5 tok/s against 1.9, prefill 0.6 against 14).
  if (dtype == "auto") return device.is_cpu() && !CpuGemmAvailable() ? at::kFloat : at::kBFloat16;
  if (dtype == "bfloat16" || dtype == "bf16") return at::kBFloat16;
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

absl::StatusOr<std::string> ResolveQuantization(const std::string& q, const ModelConfig& cfg,
                                                at::Device device) {
  const std::string& ck = cfg.quantization.kind;
  if (q != "auto" && q != "none" && q != "int8" && q != "int4" && q != "awq" && q != "fp8")
    return absl::InvalidArgumentError(absl::StrCat(
        "--quantization: '", q, "' is not one of auto, none, int8, int4, fp8, awq"));
  if (ck == "fp8") {
    if (q != "auto" && q != "fp8")
      return absl::InvalidArgumentError(absl::StrCat(
          "--quantization ", q, ": the checkpoint is FP8 (compressed-tensors float-quantized in config.json's "
          "quantization_config) and is not dequantized or requantized; use --quantization fp8 or auto"));
    if (device.is_cpu())
      return absl::InvalidArgumentError(
          "the checkpoint is FP8 (compressed-tensors float-quantized), which runs on CUDA GPUs only "
          "(FP8 tensor cores); on the CPU use a floating checkpoint with --quantization int8 or int4");
    return std::string("fp8");
  }
  if (q == "fp8") {
    if (device.is_cpu())
      return absl::InvalidArgumentError(
          "--quantization fp8 runs on CUDA GPUs only (FP8 tensor cores); the CPU formats are int8 "
          "and int4");
    if (ck == "int8" || ck == "awq")
      return absl::InvalidArgumentError(absl::StrCat(
          "--quantization fp8: the checkpoint is ", ck == "int8" ? "int8 (compressed-tensors W8A8)" : "AWQ int4",
          " and is not requantized; FP8 is quantized at load from a floating checkpoint"));
    return std::string("fp8");
  }
  if (ck == "int8" && q == "none")
    return absl::InvalidArgumentError(
        "--quantization none: the checkpoint is int8 (compressed-tensors W8A8 in config.json's "
        "quantization_config) and is not dequantized; use --quantization int8 or auto");
  if (ck == "int8" && (q == "int4" || q == "awq"))
    return absl::InvalidArgumentError(absl::StrCat(
        "--quantization ", q, ": the checkpoint is int8 (compressed-tensors W8A8) and is not "
        "requantized; use --quantization int8 or auto"));
  if (ck == "awq" && (q == "none" || q == "int8"))
    return absl::InvalidArgumentError(absl::StrCat(
        "--quantization ", q, ": the checkpoint is AWQ int4 (config.json's quantization_config) "
        "and is not dequantized; use --quantization awq, int4 or auto"));
  if (q == "awq" && ck != "awq")
    return absl::InvalidArgumentError(
        "--quantization awq loads AutoAWQ GEMM checkpoints and config.json has no AWQ "
        "quantization_config; --quantization int4 quantizes a floating checkpoint at load");
  std::string kind = q == "auto" ? ck : q;
  if (kind == "awq") kind = "int4";  // AWQ checkpoints run on the int4 kernels
  if (kind == "int8" || kind == "int4") {
    if (!device.is_cpu() && kind == "int8")
      return absl::InvalidArgumentError(absl::StrCat(
          "--quantization int8 runs on the CPU only (device ", device.str(),
          "); on the GPU use --quantization fp8, int4 or awq"));
    if (!device.is_cpu()) return kind;  // int4 on CUDA: the loader checks the dtype and shapes
    if (kind == "int8" && !Int8KernelAvailable())
      return absl::FailedPreconditionError(
          "--quantization int8 needs AVX2, which this CPU does not have");
    if (kind == "int4" && !Int4KernelAvailable())
      return absl::FailedPreconditionError(absl::StrCat(
          "--quantization ", q, " needs AVX2 and FMA, which this CPU does not have"));
  }
  return kind;
}

KvCache::KvCache(const ModelConfig& cfg, int64_t num_blocks, int64_t block_size,
                 at::ScalarType dtype, at::Device device, bool fp8)
    : num_blocks_(num_blocks), block_size_(block_size), dtype_(dtype), fp8_(fp8) {
  auto opts = at::TensorOptions().dtype(fp8 ? at::kByte : dtype).device(device);
  const int64_t slots = num_blocks * block_size, kvh = cfg.num_key_value_heads;
  // On the CPU in 2 MiB pages, as the weights: a decode step at 16k tokens of context reads
  // 0.47 GB of cache, and over 4 KiB pages its attention took 10-22% longer
  // (bench/results/cpu-kv-huge-pages.log). Written through now, as at::zeros did.
  std::shared_ptr<WeightArena> arena;
  if (device.is_cpu()) {
    const size_t page = 4096, layer = static_cast<size_t>(BytesPerBlock(cfg, block_size, dtype, fp8) /
                                                          cfg.num_hidden_layers * num_blocks);
    arena = WeightArena::Create((layer + 4 * page) * static_cast<size_t>(cfg.num_hidden_layers));
  }
  auto zeros = [&](at::IntArrayRef shape, at::TensorOptions o) {
    return arena ? arena->Zeros(shape, o.dtype().toScalarType()) : at::zeros(shape, o);
  };
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    k_.push_back(zeros({slots, kvh, cfg.head_dim()}, opts));
    v_.push_back(zeros({slots, kvh, cfg.head_dim()}, opts));
    if (fp8) {
      k_scale_.push_back(zeros({slots, kvh}, opts.dtype(at::kFloat)));
      v_scale_.push_back(zeros({slots, kvh}, opts.dtype(at::kFloat)));
    }
  }
}

int64_t KvCache::BytesPerBlock(const ModelConfig& cfg, int64_t block_size, at::ScalarType dtype,
                               bool fp8) {
  const int64_t rows = 2 * cfg.num_hidden_layers * block_size * cfg.num_key_value_heads;
  if (fp8) return rows * (cfg.head_dim() + static_cast<int64_t>(sizeof(float)));
  return rows * cfg.head_dim() * static_cast<int64_t>(c10::elementSize(dtype));
}

absl::StatusOr<std::unique_ptr<Qwen2Model>> Qwen2Model::Load(const std::string& dir,
                                                             const LoadOptions& options) {
  R1_RETURN_IF_ERROR(options.tuning.Validate());
  R1_ASSIGN_OR_RETURN(ModelConfig cfg, LoadModelConfig(dir));
  R1_ASSIGN_OR_RETURN(at::Device device, ResolveDevice(options.device));
  R1_ASSIGN_OR_RETURN(at::ScalarType dtype, ResolveDtype(options.dtype, device));
  R1_ASSIGN_OR_RETURN(std::string quantization, ResolveQuantization(options.quantization, cfg, device));
  int threads = options.num_threads > 0 ? options.num_threads
                                        : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(std::max(1, threads));

  if (quantization == "fp8" && dtype != at::kBFloat16)
    return absl::InvalidArgumentError(absl::StrCat(
        "--quantization fp8 runs with --dtype bfloat16 (its FP8 GEMMs write bfloat16), not ", c10::toString(dtype)));
  const bool int4_cuda = quantization == "int4" && device.is_cuda();
  const bool gpu_weights = quantization == "fp8" || int4_cuda;  // run only on our CUDA kernels
  if (gpu_weights && !options.tuning.cuda_kernels)
    return absl::InvalidArgumentError(
        absl::StrCat("--quantization ", quantization, " needs our CUDA kernels: drop --cuda-kernels=false"));
  if (int4_cuda && dtype == at::kFloat)
    return absl::InvalidArgumentError(
        "int4 weights on CUDA run with --dtype bfloat16 or float16 (the GEMV multiplies on 16-bit tensor cores)");

  std::unique_ptr<Qwen2Model> m(new Qwen2Model());
  m->config_ = cfg;
  m->device_ = device;
  m->dtype_ = dtype;
  m->quantization_ = quantization;
  m->tuning_ = options.tuning;
  WeightLoadOptions wo;
  wo.dtype = dtype;
  wo.device = device;
  wo.cpu_copy_weights = options.cpu_copy_weights;
  wo.int8 = quantization == "int8";
  if (quantization == "int4") {
    // An AWQ checkpoint brings its own groups; a floating one is quantized in the flag's.
    wo.int4_group = cfg.quantization.kind == "awq" ? cfg.quantization.group_size : options.int4_group_size;
    if (!Int4GroupSizeSupported(wo.int4_group))
      return absl::InvalidArgumentError(absl::StrCat("--int4-group-size ", wo.int4_group,
                                                     " is not one of 32, 64, 128"));
    if (int4_cuda && wo.int4_group != 128)
      return absl::InvalidArgumentError(absl::StrCat(
          "int4 weights on CUDA take groups of 128 columns (the int4 GEMV's layout); ",
          cfg.quantization.kind == "awq" ? "this AWQ checkpoint's groups are " : "--int4-group-size is ",
          wo.int4_group));
  }
  // lm_head int8 is the CPU's (an int8 GEMV); on CUDA it stays in the model's dtype.
  wo.int8_lm_head = (wo.int8 || wo.int4_group > 0) && options.int8_lm_head && device.is_cpu();
  try {
    if (options.random_weights_std > 0) {
      m->weights_ = RandomWeights(cfg, wo, options.random_weights_std, /*seed=*/0);
    } else {
      R1_ASSIGN_OR_RETURN(m->weights_, LoadWeights(dir, cfg, wo));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("loading ", dir, ": ", e.what_without_backtrace()));
  }
  if (quantization == "fp8")  // an FP8 checkpoint's layers are e4m3 already
    R1_RETURN_IF_ERROR(QuantizeWeightsFp8(cfg, *m->weights_, /*layers=*/cfg.quantization.kind != "fp8",
                                          options.fp8_lm_head));
  if (int4_cuda) R1_RETURN_IF_ERROR(PrepareInt4Cuda(cfg, *m->weights_));
  PathContext ctx{&m->config_, m->weights_.get(), dtype, device, options.tuning};
  if (device.is_cuda() && options.tuning.cuda_kernels) m->path_ = MakeCudaPath(ctx);
  if (!m->path_ && gpu_weights)
    return absl::InvalidArgumentError(absl::StrCat(
        "--quantization ", quantization, " on CUDA needs our CUDA kernels, which do not take this model's attention shape (",
        cfg.num_attention_heads, " heads, ", cfg.num_key_value_heads, " KV heads, head_dim ", cfg.head_dim(), ")"));
  if (!m->path_) m->path_ = MakeEagerPath(ctx);
  return m;
}

std::string Qwen2Model::QuantizationSummary() const {
  if (quantization_ == "none") return "";
  if (quantization_ == "fp8")
    return absl::StrCat("with FP8 linear layers (e4m3 weights with per-channel scales, ",
                        config_.quantization.kind == "fp8" ? "from the compressed-tensors FP8 checkpoint"
                                                           : "quantized at load",
                        "; e4m3 activations per token in GEMMs, f16 in the GEMV of small batches); ",
                        weights_->lm_head_scale.defined()
                            ? absl::StrCat("lm_head e4m3, quantized at load from ", weights_->lm_head_origin)
                            : absl::StrCat("lm_head in ", c10::toString(dtype_)));
  std::string s = "with int8 linear layers (W8A8: per-channel weight scales, per-token activations)";
  if (quantization_ == "int4")
    s = absl::StrCat("with int4 linear layers (groups of ", weights_->layers[0].qkv4.group,
                     " columns with scales and zero points, ",
                     config_.quantization.kind == "awq" ? "from the AWQ GEMM checkpoint" : "quantized at load",
                     device_.is_cuda()
                         ? absl::StrCat("; steps of up to ", tuning_.int4_gemv_max_rows,
                                        " tokens on the int4 GEMV, larger ones dequantized per layer for cuBLAS)")
                         : "; int8 activations per token)");
  if (weights_->lm_head_scale.defined())
    return absl::StrCat(s, "; lm_head int8, quantized at load from ", weights_->lm_head_origin);
  return absl::StrCat(s, "; lm_head in ", c10::toString(dtype_));
}

int64_t Qwen2Model::weight_bytes() const { return weights_->bytes(config_.tie_word_embeddings); }

absl::Status Qwen2Model::WarmUp(KvCache& cache, int64_t max_batch, int64_t max_tokens,
                                int64_t max_context) {
  if (!device_.is_cuda()) return absl::OkStatus();
  const int64_t bs = cache.block_size(), blocks = cache.num_blocks();
  // One big prompt step: the activations of the largest step the scheduler plans. Every
  // warm-up sequence shares the first blocks: nothing is live yet.
  max_tokens = std::min({max_tokens, config_.max_position_embeddings, blocks * bs});
  if (max_tokens > 1) {
    StepBatch b;
    b.tokens.assign(static_cast<size_t>(max_tokens), 0);
    SequenceStep s;
    s.num_new = max_tokens;
    for (int64_t i = 0; i < (max_tokens + bs - 1) / bs; ++i) s.block_table.push_back(static_cast<int32_t>(i % blocks));
    b.seqs.push_back(s);
    auto r = Forward(b, cache);
    if (!r.ok()) return absl::Status(r.status().code(), absl::StrCat("warm-up prefill: ", r.status().message()));
  }
  max_context = std::min({max_context, config_.max_position_embeddings, blocks * bs});
  try {
    return path_->WarmUpDecode(cache, max_batch, max_context);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("warm-up decode: ", e.what_without_backtrace()));
  }
}

absl::Status Qwen2Model::ValidateBatch(const StepBatch& batch, const KvCache& cache) const {
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
  return absl::OkStatus();
}

#if !defined(R1_HAVE_CUDA)
std::unique_ptr<ForwardPath> MakeCudaPath(const PathContext&) { return nullptr; }
absl::Status QuantizeWeightsFp8(const ModelConfig&, ModelWeights&, bool, bool) {
  return absl::UnimplementedError("--quantization fp8: this build has no CUDA");
}
absl::Status PrepareInt4Cuda(const ModelConfig&, ModelWeights&) {
  return absl::UnimplementedError("int4 weights on CUDA: this build has no CUDA");
}
#endif

absl::StatusOr<at::Tensor> Qwen2Model::Forward(const StepBatch& batch, KvCache& cache) {
  R1_RETURN_IF_ERROR(ValidateBatch(batch, cache));
  if (cache.fp8() && !path_->SupportsFp8Cache())
    return absl::FailedPreconditionError(
        "an FP8 KV cache needs the CUDA path with our kernels (CUDA, --cuda-kernels, head_dim "
        "128, bfloat16 or float16)");
  try {
    return path_->Forward(batch, cache);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("model step failed: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("model step failed: ", e.what()));
  }
}

}  // namespace r1::model
