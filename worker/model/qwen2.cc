#include "worker/model/qwen2.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "worker/model/cpu_int8.h"
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

absl::StatusOr<std::string> ResolveQuantization(const std::string& q, const ModelConfig& cfg,
                                                at::Device device) {
  const std::string& ck = cfg.quantization.kind;
  if (q == "int4" || q == "fp8" || q == "awq")
    return absl::UnimplementedError(absl::StrCat(
        "--quantization ", q, " is not built yet: this build runs none and int8 (CPU)"));
  if (q != "auto" && q != "none" && q != "int8")
    return absl::InvalidArgumentError(absl::StrCat(
        "--quantization: '", q, "' is not one of auto, none, int8, int4, fp8, awq"));
  if (ck == "int8" && q == "none")
    return absl::InvalidArgumentError(
        "--quantization none: the checkpoint is int8 (compressed-tensors W8A8 in config.json's "
        "quantization_config) and is not dequantized; use --quantization int8 or auto");
  const std::string kind = q == "auto" ? ck : q;
  if (kind == "int8") {
    if (!device.is_cpu())
      return absl::InvalidArgumentError(absl::StrCat(
          "--quantization int8 runs on the CPU only (device ", device.str(),
          "); the GPU formats fp8 and awq are not built yet"));
    if (!Int8KernelAvailable())
      return absl::FailedPreconditionError(
          "--quantization int8 needs AVX2, which this CPU does not have");
  }
  return kind;
}

KvCache::KvCache(const ModelConfig& cfg, int64_t num_blocks, int64_t block_size,
                 at::ScalarType dtype, at::Device device, bool fp8)
    : num_blocks_(num_blocks), block_size_(block_size), dtype_(dtype), fp8_(fp8) {
  auto opts = at::TensorOptions().dtype(fp8 ? at::kByte : dtype).device(device);
  const int64_t slots = num_blocks * block_size, kvh = cfg.num_key_value_heads;
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    k_.push_back(at::zeros({slots, kvh, cfg.head_dim()}, opts));
    v_.push_back(at::zeros({slots, kvh, cfg.head_dim()}, opts));
    if (fp8) {
      k_scale_.push_back(at::zeros({slots, kvh}, opts.dtype(at::kFloat)));
      v_scale_.push_back(at::zeros({slots, kvh}, opts.dtype(at::kFloat)));
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
  try {
    if (options.random_weights_std > 0) {
      m->weights_ = RandomWeights(cfg, wo, options.random_weights_std, /*seed=*/0);
    } else {
      R1_ASSIGN_OR_RETURN(m->weights_, LoadWeights(dir, cfg, wo));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("loading ", dir, ": ", e.what_without_backtrace()));
  }
  PathContext ctx{&m->config_, m->weights_.get(), dtype, device, options.tuning};
  if (device.is_cuda() && options.tuning.cuda_kernels) m->path_ = MakeCudaPath(ctx);
  if (!m->path_) m->path_ = MakeEagerPath(ctx);
  return m;
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
