// Int8 linear layers on the CPU: weights stored as int8 with one float32 scale per output
// channel (row), activations quantized per token (row) at each call, products summed in int32.
//
// A decode step reads every weight once, so its speed is set by bytes: int8 halves bf16's.
// This is the W8A8 scheme of compressed-tensors' int8 checkpoints (symmetric, channel-wise
// weights, dynamic per-token activations), so those load as they are, and a float checkpoint
// is quantized the same way at load.
//
// Two kernels, picked at run time (BestInt8Isa):
//   - AVX512-VNNI (vpdpbusd: four unsigned x signed byte products summed into int32 lanes, one
//     instruction). Unsigned x signed is exact with an offset: the kernel multiplies
//     (xq + 128) by w, or xq by (w + 128), and takes 128 * Σ w or 128 * Σ xq off the int32 sum.
//     Prefill (16 rows of x or more) runs a register-blocked GEMM: x packed 16 rows to a
//     vector, 4 columns per lane, against 8 weight rows broadcast 4 bytes at a time (24
//     accumulators); decode reads each weight row as one stream, 64 bytes a step, each line
//     prefetched into L2 4 KiB ahead, then into L1 512 bytes ahead.
//   - AVX2 (vpmaddubsw, with the sign trick for signed x signed bytes; values are clamped to
//     [-127, 127] so no pair sum saturates), on CPUs without VNNI.
// Both give the same int32 sums, so the same bits.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace r1::model {

// True when this CPU has AVX2 (and the kernel was compiled in).
bool Int8KernelAvailable();

// The int8 kernels. kAvx2 is also the portable C++ loop in a build without x86 intrinsics.
enum class Int8Isa { kAvx2, kAvx512Vnni };

// True when this CPU runs `isa`'s kernel: kAvx512Vnni needs AVX512F, BW, VL and VNNI.
bool Int8IsaAvailable(Int8Isa isa);

// The fastest kernel this CPU runs, and its name for logs ("AVX512-VNNI", "AVX2").
Int8Isa BestInt8Isa();
const char* Int8IsaName(Int8Isa isa);

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

// The float32 values of a 2-D tensor (any floating dtype and strides), row-major; for float32
// and bfloat16 without an ATen op: a decode step's linear calls are too small to pay for
// Tensor::to's dispatch and allocation (shared with cpu_int4.cc). Empty for an undefined tensor.
std::vector<float> FloatRows(const at::Tensor& x);

// A linear call's output: the kernels write float32 rows to data(); Finish() returns them as a
// tensor of `dtype`, rounded to nearest even as Tensor::to rounds (bfloat16), or as they are.
class LinearOut {
 public:
  LinearOut(int64_t M, int64_t N, at::ScalarType dtype);
  float* data() { return y_.defined() ? y_.data_ptr<float>() : scratch_.data(); }
  at::Tensor Finish();

 private:
  int64_t M_, N_;
  at::ScalarType dtype_;
  at::Tensor y_;                // float32 output written in place
  std::vector<float> scratch_;  // else the float32 rows before rounding
};

// y = x · Wᵀ (+ b) with int8 weights `wq` [N, K] and their per-row `wscale` [N] (float32):
// x [M, K] (float32 or bfloat16) is quantized per row as QuantizeInt8Rows does, then
//   y[m, n] = float(Σk xq[m, k] wq[n, k]) * (xscale[m] * wscale[n]) + b[n]
// in float32, rounded once to x's dtype. b: [N] in any floating dtype, or undefined.
// `isa`: the kernel (every kernel gives the same bits); one this CPU lacks is an error. The first
// call logs the kernel that runs.
at::Tensor LinearInt8(const at::Tensor& x, const at::Tensor& wq, const at::Tensor& wscale,
                      const at::Tensor& b = at::Tensor(), Int8Isa isa = BestInt8Isa());

}  // namespace r1::model
