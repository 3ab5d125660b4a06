#include "worker/model/kernel_tuning.h"

#include "absl/strings/str_cat.h"

namespace r1::model {

absl::Status KernelTuning::Validate() const {
  if (attn_splits < 0 || attn_splits > 256)
    return absl::InvalidArgumentError(absl::StrCat("--attn-splits must be in [0, 256], got ", attn_splits));
  if (attn_stages != 2 && attn_stages != 3)
    return absl::InvalidArgumentError(absl::StrCat("--attn-stages must be 2 or 3, got ", attn_stages));
  if (gemv_max_rows < 0 || gemv_max_rows > kMaxGemvRows)
    return absl::InvalidArgumentError(
        absl::StrCat("--gemv-max-rows must be in [0, ", kMaxGemvRows, "], got ", gemv_max_rows));
  if (gemv_units < 0 || gemv_units > 64)
    return absl::InvalidArgumentError(absl::StrCat("--gemv-units must be in [0, 64], got ", gemv_units));
  if (flash_min_tokens < -1)
    return absl::InvalidArgumentError(absl::StrCat("--flash-min-tokens must be >= -1, got ", flash_min_tokens));
  if (flash_min_work < 0)
    return absl::InvalidArgumentError(absl::StrCat("--flash-min-work must be >= 0, got ", flash_min_work));
  return absl::OkStatus();
}

std::string KernelTuning::Describe() const {
  return absl::StrCat("cpu_kernels=", cpu_kernels, " cuda_kernels=", cuda_kernels,
                      " cuda_graphs=", cuda_graphs, " pdl=", pdl, " attn_splits=", attn_splits, " attn_stages=", attn_stages, " flash_min_tokens=", flash_min_tokens,
                      " flash_min_work=", flash_min_work,
                      " gemv_max_rows=", gemv_max_rows, " gemv_units=", gemv_units);
}

}  // namespace r1::model
