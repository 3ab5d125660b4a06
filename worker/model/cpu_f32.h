// Float32 CPU kernels whose results do not depend on how tokens are grouped into steps.
//
// A token's logits must come out bit-identical whether it is decoded alone, with other
// sequences, as one row of a prompt chunk of any length, or recomputed after a resume or a
// preemption: a sampled stream that another worker resumes, or a preempted sequence that is
// recomputed, must continue as if nothing happened. BLAS GEMMs (libtorch's at::linear reaches
// OpenBLAS here) pick microkernels and split K by the number of rows, so row 0 of x · Wᵀ
// differs in the last bits between M = 1 and M = 8, and so does at::bmm in attention; on a
// random model's flat distribution that flips sampled tokens.
//
// Here every output element is computed with one fixed sequence of roundings that depends only
// on its own inputs: eight lane sums over k (k = j, j + 8, j + 16, ... into lane j, in
// ascending k, each a fused multiply-add; the last partial group of eight read as zeros past
// K), then one fixed tree over the lanes, ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)),
// then the bias. Register tiles, K blocks and the thread split only change which element is
// computed when, never how: work is split over rows of x and rows of W, never over K.
//
// The AVX2+FMA code runs where the CPU has both; elsewhere a scalar loop does the same
// operations in the same order with std::fma (bit-identical; slow without hardware FMA).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace r1::model {

enum class F32Isa { kScalar, kAvx2 };

// The best this CPU runs: kAvx2 with AVX2 and FMA (and the code compiled in), else kScalar.
F32Isa BestF32Isa();

// y = x · Wᵀ (+ b) in float32. x: [M, K], w: [N, K] row-major (the checkpoint's layout, used
// where it lies), b: [N] or undefined. Returns [M, N]. Every y[m, n] depends only on x[m],
// w[n] and b[n] (see above): bit-identical whatever M, the other rows and the thread count.
at::Tensor LinearF32(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = at::Tensor(),
                     F32Isa isa = BestF32Isa());

// silu(g) * u elementwise, as ATen's float ops compute it (g / (1 + exp(-g)), then the
// product), with std::exp for every element: ATen's vectorised exp and its scalar tail differ
// in the last bit, and which elements fall in the tail depends on the tensor's size.
at::Tensor SiluMulF32(const at::Tensor& g, const at::Tensor& u);

// Qwen2RMSNorm in float32, row by row with the lanes' fixed order for the sum of squares:
// w * (x * (1 / sqrt(mean(x²) + eps))). x: [T, H] float32, w: [H].
at::Tensor RmsNormF32(const at::Tensor& x, const at::Tensor& w, double eps);

// cos and sin of the rotary angles float(pos) * inv_freq[i], with std::cos / std::sin per
// element (same reason as SiluMulF32). Returns {cos, sin}, each [T, 1, D/2] float32.
std::pair<at::Tensor, at::Tensor> RopeTablesF32(const std::vector<int64_t>& pos, const at::Tensor& inv_freq);

// One sequence's rows in a step, for AttendF32.
struct AttentionSeq {
  int64_t num_cached = 0;  // positions before this step's rows
  int64_t num_new = 0;     // this step's rows (query rows offset.. offset + num_new - 1)
  const int64_t* slots = nullptr;  // cache rows of positions 0 .. num_cached + num_new - 1
};

// Causal attention in float32 straight from the paged cache, every query row on its own: row i
// of a sequence (position p = num_cached + i) attends over the keys and values at slots[0..p],
// which must already be written. For each (row, head), in this order and nothing else:
//   s_j = dot(q, k_j) (the lane order above, over D) * float(scale), for j = 0..p;
//   m = max_j s_j; e_j = std::exp(s_j - m); sum = e_0 + e_1 + ... (ascending j);
//   out[d] = fma(e_j / sum, v_j[d], out[d]) for j = 0..p (ascending).
// So a row's output depends only on its own query and context, never on the step's other rows.
// q: [T, heads, D] float32 (the sequences' rows one after another); k_cache, v_cache: [slots,
// kv_heads, D] float32, contiguous. Writes out: [T, heads, D] float32, contiguous.
void AttendF32(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
               const std::vector<AttentionSeq>& seqs, double scale, at::Tensor& out,
               F32Isa isa = BestF32Isa());

}  // namespace r1::model
