// The bf16 eager step's RMSNorm and RoPE on the CPU, each one loop instead of ATen's chain of
// small ops (8 per norm, 9 per RoPE tensor: 34 a layer). At batch 1 each costs microseconds of
// dispatch and allocation on a tiny tensor while the pool's worker waits; with int8 weights the
// two loops made decode 7-10% faster (bench/results/cpu-bf16-norm-rope.log).
//
// The roundings are ATen's (the eager path in qwen2_eager.cc): RoPE rounds each product and
// each difference to bf16 as the bf16 ops do, so it is bit-identical; RMSNorm sums the squares
// in another order than at::mean, so the float scale can differ in its last bit and an output
// can differ from ATen's by one bf16 ulp (rarely; tests/model/cpu_bf16_rows_test.cc bounds it).
#pragma once

#include <ATen/ATen.h>

namespace r1::model {

// True when RmsNormBf16 takes these: CPU bf16 x [T, H] with unit stride in H, bf16 w [H].
bool RmsNormBf16Applies(const at::Tensor& x, const at::Tensor& w);
// Qwen2RMSNorm as RmsNorm (forward_path.h) computes it for bf16: w * bf16(x * rsqrt(mean(x²) + eps)).
at::Tensor RmsNormBf16(const at::Tensor& x, const at::Tensor& w, double eps);

// True when RopeBf16 takes these: CPU bf16 x [T, heads, D] with unit stride in D (rows may be
// strided, as views of the qkv output are), cos and sin bf16 [T, 1, D/2] contiguous.
bool RopeBf16Applies(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
// Rotate-half RoPE: [x1 cos - x2 sin, x2 cos + x1 sin], every product and sum rounded to bf16.
// Returns a contiguous [T, heads, D] tensor.
at::Tensor RopeBf16(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace r1::model
