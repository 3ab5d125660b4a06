// Int8 linear layers on the CPU: weights stored as int8 with one float32 scale per output
// channel (row), activations quantized per token (row) at each call, products summed in int32.
//
// A decode step reads every weight once, so its speed is set by bytes: int8 halves bf16's.
// This is the W8A8 scheme of compressed-tensors' int8 checkpoints (symmetric, channel-wise
// weights, dynamic per-token activations), so those load as they are, and a float checkpoint
// is quantized the same way at load.
//
// The kernel needs AVX2 (vpmaddubsw, with the sign trick for signed x signed bytes; values are
// clamped to [-127, 127] so no pair sum saturates). An AVX512-VNNI kernel, which multiplies
// twice as fast, is not written yet: this machine has no VNNI to test it on.
#pragma once

#include <ATen/ATen.h>

namespace r1::model {

// True when this CPU has AVX2 (and the kernel was compiled in).
bool Int8KernelAvailable();

struct Int8Rows {
  at::Tensor q;      // int8 [N, K]
  at::Tensor scale;  // float32 [N]
};

// Symmetric per-row quantization, in float32 as this ATen code computes it:
//   scale = amax(|w|, row) / 127 (1 for an all-zero row), q = clamp(round(w / scale), -127, 127)
// with round-half-to-even. w: 2-D CPU tensor of any floating dtype.
Int8Rows QuantizeInt8Rows(const at::Tensor& w);

// One row of K floats quantized as QuantizeInt8Rows does; returns its scale. For the other
// kernels that quantize activations per token (cpu_int4.h).
float QuantizeInt8Row(const float* src, int64_t K, int8_t* q);

// y = x · Wᵀ (+ b) with int8 weights `wq` [N, K] and their per-row `wscale` [N] (float32):
// x [M, K] (float32 or bfloat16) is quantized per row as QuantizeInt8Rows does, then
//   y[m, n] = float(Σk xq[m, k] wq[n, k]) * (xscale[m] * wscale[n]) + b[n]
// in float32, rounded once to x's dtype. b: [N] in any floating dtype, or undefined.
at::Tensor LinearInt8(const at::Tensor& x, const at::Tensor& wq, const at::Tensor& wscale,
                      const at::Tensor& b = at::Tensor());

}  // namespace r1::model
