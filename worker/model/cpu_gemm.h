// y = x · Wᵀ (+ b) for bfloat16 on x86 CPUs with AVX512-BF16, the linear layers' hot path.
//
// libtorch 1.13's CPU bf16 linear reads the weights at a few GB/s when the batch is small; a
// decode step is a pass over every weight, so it must run at memory bandwidth. This kernel
// keeps the Hugging Face layout (W is [N, K], row-major, so mmap'd weights need no repacking),
// takes NR rows of W against MR rows of x with float32 accumulators (vdpbf16ps), and reads
// each weight once per call whatever the batch size.
#pragma once

#include <ATen/ATen.h>

namespace r1::model {

// True when this CPU has AVX512-BF16 (and the kernel was compiled in).
bool CpuGemmAvailable();

// at::linear(x, w, b) for bf16 CPU tensors; x: [M, K], w: [N, K], b: [N] or undefined.
// Returns [M, N] bf16. Uses the kernel for M <= 32 (decode batches); falls back to at::linear
// otherwise (prefill, where oneDNN's blocked GEMM wins) and when the kernel does not apply.
at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = at::Tensor());

// The SwiGLU MLP's first half, silu(x · Wgateᵀ) * (x · Wupᵀ), in one pass: each thread's chunk
// of columns reads its rows of both weights and applies the activation (one team instead of
// two linear calls and two elementwise ops). Rounds as the unfused bf16 ops do. Same
// conditions and fallback as Linear.
at::Tensor GateUp(const at::Tensor& x, const at::Tensor& wgate, const at::Tensor& wup);

// x.to(float) on the calling thread for a bf16 CPU tensor (x.to(at::kFloat) otherwise). The
// logits of a decode step are large enough for libtorch to start an OpenMP team for the
// conversion, whose threads then spin for milliseconds against our pool's.
at::Tensor ToFloat(const at::Tensor& x);

}  // namespace r1::model
