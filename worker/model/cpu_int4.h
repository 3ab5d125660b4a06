// Int4 linear layers on the CPU: 4-bit weights in groups along K, each group with a float32
// scale and a 4-bit zero point, w = scale * (q - zero) with q in [0, 15]. Activations are
// quantized to int8 per token at each call (as cpu_int8.h does) and the products summed in
// integers, one group at a time; the kernel unpacks the nibbles in registers.
//
// Asymmetric groups with zero points are AutoAWQ's scheme (its GEMM checkpoints convert to
// this layout at load, awq.h), and quantizing a float checkpoint at load uses the same form.
// Decode reads about 0.56 bytes a weight (group 128): a quarter of bf16's.
//
// Needs AVX2 and FMA (Int4KernelAvailable); vpmaddubsw multiplies the unsigned nibbles by the
// signed activation bytes directly (pair sums at most 2 * 15 * 127: no saturation). On a CPU
// with AVX512-VNNI, vpdpbusd does it instead: decode multiplies 128 unpacked nibbles a step
// (its weights prefetched into L2 4 KiB ahead, then into L1), and 16 activation rows or more
// (prefill) run a register-blocked GEMM that unpacks the weights to bytes once per call
// (cpu_int4.cc).
#pragma once

#include <ATen/ATen.h>

#include "worker/model/cpu_int8.h"

namespace r1::model {

// True when this CPU has AVX2 and FMA (and the kernel was compiled in).
bool Int4KernelAvailable();

// Group sizes the kernel takes: 32, 64 or 128 columns.
bool Int4GroupSizeSupported(int64_t group);

// Groups per row: ceil(Kp / group), Kp = K rounded up to 64.
int64_t Int4NumGroups(int64_t k, int64_t group);

// A [N, K] weight in groups of `group` columns (the last group of a row may be shorter).
//   q:     uint8 [N, Kp / 2], Kp = K rounded up to 64. Each row is blocks of 32 weights in 16
//          bytes: byte j of block b holds weight 32 b + j in its low nibble and 32 b + 16 + j
//          in its high one. Weights past K are 0.
//   scale: float32 [N, Int4NumGroups(K, group)]
//   zero:  uint8 [N, Int4NumGroups(K, group)], each in [0, 15]
// (with group 32, a row may end in a group wholly past K: scale 0, zero 0; the kernel reads
// whole 64-column chunks and never past a row's scales).
struct Int4Groups {
  at::Tensor q, scale, zero;
  int64_t k = 0;
  int64_t group = 0;
};

// Packs unsigned 4-bit values q [N, K] (uint8, each <= 15) into Int4Groups::q's layout; and back.
at::Tensor PackInt4(const at::Tensor& q);
at::Tensor UnpackInt4(const at::Tensor& packed, int64_t k);

// Asymmetric quantization of each group, in float32 as this code computes it: with lo and hi
// the group's min and max taken together with 0 (so that 0 and a constant group are exact),
//   scale = (hi - lo) / 15 (1 when hi == lo), zero = clamp(round(-lo / scale), 0, 15),
//   q = clamp(round(w / scale) + zero, 0, 15), rounding half to even.
// w: 2-D CPU tensor of any floating dtype.
Int4Groups QuantizeInt4Groups(const at::Tensor& w, int64_t group);

// y = x · Wᵀ (+ b) for W in int4 groups. x [M, K] (float32 or bfloat16) is quantized per row as
// QuantizeInt8Rows does (xq, xscale); then
//   y[m, n] = xscale[m] * Σ_g scale[n, g] * Σ_{k in g} xq[m, k] * (q[n, k] - zero[n, g]) + b[n]
// with the inner sums in integers and the rest in float32, rounded once to x's dtype.
// `isa`: the AVX2 or the AVX512-VNNI kernels (the same sums up to float32 rounding); one this
// CPU lacks is an error.
at::Tensor LinearInt4(const at::Tensor& x, const Int4Groups& w, const at::Tensor& b = at::Tensor(),
                      Int8Isa isa = BestInt8Isa());

}  // namespace r1::model
