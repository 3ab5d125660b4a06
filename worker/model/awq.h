// AutoAWQ GEMM checkpoints (quant_method "awq", version "gemm") and our int4 layout, both ways:
// the loader converts each linear layer at load, and r1-mkmodel writes AWQ checkpoints so that
// the loader is tested here. Per layer with weight W [N, K] and group size g:
//   qweight int32 [K, N / 8]: row k packs W[n, k] for eight consecutive n in its nibbles, in
//           AutoAWQ's interleaved order: the column 8 c + j sits in nibble kAwqNibbleOfColumn[j];
//   qzeros  int32 [K / g, N / 8]: the zero points, packed the same way;
//   scales  [K / g, N], floating (f16 as AutoAWQ writes them);
// and W[n, k] = scales[k / g, n] * (q - zero), as in cpu_int4.h.
#pragma once

#include <ATen/ATen.h>

#include "worker/model/cpu_int4.h"

namespace r1::model {

// AutoAWQ's packing order (its AWQ_ORDER is the inverse): column j of each eight in nibble [j].
inline constexpr int kAwqNibbleOfColumn[8] = {0, 4, 1, 5, 2, 6, 3, 7};

// The eight 4-bit values of each int32 of `packed` [R, C], in column order: uint8 [R, 8 C].
at::Tensor UnpackAwqColumns(const at::Tensor& packed);
// The inverse: uint8 [R, 8 C] (each <= 15) into int32 [R, C].
at::Tensor PackAwqColumns(const at::Tensor& q);

// An AWQ layer as Int4Groups. K must be a multiple of `group` and N of 8 (the caller checks).
Int4Groups Int4FromAwq(const at::Tensor& qweight, const at::Tensor& qzeros, const at::Tensor& scales,
                       int64_t group);

struct AwqTensors {
  at::Tensor qweight, qzeros, scales;  // scales in float32
};
// The other way; w.k must be a multiple of w.group and the rows a multiple of 8.
AwqTensors AwqFromInt4(const Int4Groups& w);

}  // namespace r1::model
