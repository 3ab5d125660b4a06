// RoPE inverse frequencies from the config, computed as transformers computes them (the same
// float32 operations in the same order, so that float32 logits match bit for bit):
//   default: 1 / theta^(arange(0, D, 2) / D)                 (_compute_default_rope_parameters)
//   llama3:  the default, divided by `factor` below the low-frequency wavelength and blended
//            between the two bands                            (_compute_llama3_parameters)
// Neither type scales cos/sin (their attention factor is 1).
#pragma once

#include <ATen/ATen.h>

#include "worker/model/config.h"

namespace r1::model {

// [head_dim / 2] float32 on the CPU. The config is validated (a known type, its fields set).
at::Tensor RopeInvFreq(const ModelConfig& cfg);

}  // namespace r1::model
