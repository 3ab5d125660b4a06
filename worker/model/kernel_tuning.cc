#include "worker/model/kernel_tuning.h"

#include <algorithm>
#include <climits>

#include "absl/strings/str_cat.h"
#include "common/flags.h"

namespace r1::model {

absl::Status KernelTuning::Validate() const {
  if (attn_splits < 0 || attn_splits > 256)
    return absl::InvalidArgumentError(absl::StrCat("--attn-splits must be in [0, 256], got ", attn_splits));
  if (attn_stages != 2 && attn_stages != 3)
    return absl::InvalidArgumentError(absl::StrCat("--attn-stages must be 2 or 3, got ", attn_stages));
  if (gemv_max_rows < -1 || gemv_max_rows > kMaxGemvRows)
    return absl::InvalidArgumentError(
        absl::StrCat("--gemv-max-rows must be -1 (auto) or in [0, ", kMaxGemvRows, "], got ", gemv_max_rows));
  if (int4_gemv_max_rows < 0 || int4_gemv_max_rows > 4096)
    return absl::InvalidArgumentError(
        absl::StrCat("--int4-gemv-max-rows must be in [0, 4096], got ", int4_gemv_max_rows));
  if (gemv_units < 0 || gemv_units > 64)
    return absl::InvalidArgumentError(absl::StrCat("--gemv-units must be in [0, 64], got ", gemv_units));
  if (flash_min_tokens < -1)
    return absl::InvalidArgumentError(absl::StrCat("--flash-min-tokens must be >= -1, got ", flash_min_tokens));
  if (flash_min_work < 0)
    return absl::InvalidArgumentError(absl::StrCat("--flash-min-work must be >= 0, got ", flash_min_work));
  return absl::OkStatus();
}

std::string KernelTuning::Describe() const {
  return absl::StrCat("cpu_kernels=", cpu_kernels, " cpu_amx=", cpu_amx, " cuda_kernels=", cuda_kernels,
                      " cuda_graphs=", cuda_graphs, " pdl=", pdl, " attn_splits=", attn_splits, " attn_stages=", attn_stages, " flash_min_tokens=", flash_min_tokens,
                      " flash_min_work=", flash_min_work,
                       " gemv_max_rows=", gemv_max_rows, " gemv_units=", gemv_units,
                      " gemv_tensor_cores=", gemv_tensor_cores, " gemv_rope=", gemv_rope, " int4_gemv_max_rows=", int4_gemv_max_rows);
}

KernelTuningFlags::KernelTuningFlags(Flags& flags) {
  const KernelTuning d;
  cpu_kernels_ = flags.Bool("cpu-kernels", d.cpu_kernels,
                            "CPU: our kernels; bf16: AVX512-BF16 for decode-sized layers and attention; float32: "
                            "row-invariant linear layers, attention and norms (a token's logits do "
                            "not depend on how tokens are grouped into steps); false: libtorch's ops");
  cpu_amx_ = flags.Bool("cpu-amx", d.cpu_amx,
                        "CPU, bf16: the attention's products on AMX tiles where the CPU has AMX-BF16 "
                        "(false: AVX512-BF16 only)");
  cuda_kernels_ = flags.Bool("cuda-kernels", d.cuda_kernels,
                             "CUDA: our fused kernels and paged attention (false: the plain ATen step)");
  cuda_graphs_ = flags.Bool("cuda-graphs", d.cuda_graphs, "CUDA: replay captured graphs for decode steps");
  pdl_ = flags.Bool("pdl", d.pdl,
                    "CUDA (compute capability 9+): programmatic dependent launch between our kernels");
  attn_splits_ = flags.Int("attn-splits", d.attn_splits,
                           "decode attention's key splits per query; 0: chosen per step");
  attn_stages_ = flags.Int("attn-stages", d.attn_stages,
                           "decode attention's 64-key tiles in shared memory at once (2 or 3)");
  flash_min_tokens_ = flags.Int(
      "flash-min-tokens", d.flash_min_tokens,
      "CUDA: prompt chunks with more new tokens (and more than --flash-min-work query-key pairs) "
      "use flash attention over the gathered cache; -1: never");
  flash_min_work_ = flags.Int("flash-min-work", d.flash_min_work, "CUDA: see --flash-min-tokens");
  gemv_max_rows_ = flags.Int("gemv-max-rows", d.gemv_max_rows,
                             "CUDA: steps of at most this many tokens use the fused GEMVs (0..8); -1: 1 with bf16/f16 weights, 4 with --quantization fp8 (the measured best)");
  int4_gemv_max_rows_ = flags.Int("int4-gemv-max-rows", d.int4_gemv_max_rows,
                                  "CUDA, int4 weights: steps of at most this many tokens use the int4 GEMV (8 rows "
                                  "a launch); larger ones dequantize each layer for cuBLAS");
  gemv_units_ = flags.Int("gemv-units", d.gemv_units,
                          "CUDA: outputs per warp of the CUDA-core GEMVs; 0: the kernel's choice");
  gemv_tensor_cores_ = flags.Bool("gemv-tensor-cores", d.gemv_tensor_cores,
                                  "CUDA: run the GEMVs of bf16/f16 models on tensor cores (false: the CUDA-core GEMV)");
  gemv_rope_ = flags.Bool("gemv-rope", d.gemv_rope,
                          "CUDA: steps on the GEMVs apply RoPE and write K/V into a bf16/f16 cache in the qkv "
                          "GEMV (false: a separate kernel)");
}

KernelTuning KernelTuningFlags::Get() const {
  auto clamp32 = [](int64_t v) { return static_cast<int>(std::clamp<int64_t>(v, INT_MIN, INT_MAX)); };
  KernelTuning t;
  t.cpu_kernels = *cpu_kernels_;
  t.cpu_amx = *cpu_amx_;
  t.cuda_kernels = *cuda_kernels_;
  t.cuda_graphs = *cuda_graphs_;
  t.pdl = *pdl_;
  t.attn_splits = clamp32(*attn_splits_);
  t.attn_stages = clamp32(*attn_stages_);
  t.flash_min_tokens = *flash_min_tokens_;
  t.flash_min_work = *flash_min_work_;
  t.gemv_max_rows = clamp32(*gemv_max_rows_);
  t.gemv_units = clamp32(*gemv_units_);
  t.int4_gemv_max_rows = clamp32(*int4_gemv_max_rows_);
  t.gemv_tensor_cores = *gemv_tensor_cores_;
  t.gemv_rope = *gemv_rope_;
  return t;
}

}  // namespace r1::model
