// Int4 weights for the CUDA int4 GEMV: Int4Groups (cpu_int4.h, natural column order) rearranged
// into the layout that kernels.h describes (each lane of the tensor-core GEMV reads its nibbles,
// scales and zero points with whole loads). ATen ops only, on whatever device the input is on,
// so the conversion runs on the GPU at load and is tested on the CPU.
#pragma once

#include <ATen/ATen.h>

#include "worker/model/cpu_int4.h"

namespace r1::model {

// The shapes the layout takes: K a multiple of 256, N of 8, groups of 128 columns.
bool Int4LayoutShapeOk(int64_t n, int64_t k, int64_t group);

// `w` (N, K as Int4LayoutShapeOk takes) in the GEMV's layout: q uint8 [N, K / 2], scale float32
// and zero uint8 [N / 8, K / 256, 8, 2]; k and group kept. Throws c10::Error on other shapes.
Int4Groups ToInt4GemvLayout(const Int4Groups& w);

}  // namespace r1::model
