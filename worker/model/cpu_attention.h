// Attention for bf16 on CPU, straight from the paged KV cache: decode (one new query token) and
// prefill (a prompt chunk over its cached context).
//
// ATen's bf16 at::bmm goes to oneDNN, which starts an OpenMP team for each of the two small
// products per layer; libgomp's threads then spin for milliseconds after every one of them,
// taking a core from the linear layers on a 2-core machine. This runs on our pool
// (cpu_parallel.h) and reads K and V through the slots, without gathering them.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace r1::model {

// True when DecodeAttention handles these tensors (bf16 CPU, AVX512-BF16 present).
bool DecodeAttentionApplies(const at::Tensor& q, const at::Tensor& k_cache);

// q: [1, heads, D] bf16; k_cache, v_cache: [slots, kv_heads, D] bf16, contiguous; slots: the
// cache rows of positions 0..ctx-1 (the new token's K/V already written). Returns [1, heads, D]
// bf16. Scores are rounded as the ATen path rounds them (bmm's bf16 output, then its scaled
// bf16 value); the softmax and the sum over V stay in float (ATen rounds the probabilities to
// bf16 first) and the output is rounded once.
//
// Each KV head's K and V rows are read once for all the query heads of its group, in chunks of
// keys that the pool's threads share (flash-decoding's split, merged through each chunk's max
// and sum), with the rows a few keys ahead prefetched: at 16k tokens of context this is what a
// decode step of the 1.5B spends most of its time on.
// amx: on a CPU with AMX-BF16 (DecodeAttentionAmx), the scores of each 16 keys come from one
// tile product per 32 dimensions instead of a vdpbf16ps per query head and a horizontal sum
// per key (KernelTuning::cpu_amx); the roundings after the float sums are the same.
at::Tensor DecodeAttention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                           const std::vector<int64_t>& slots, double scale, bool amx = true);
// True when this process may use AMX tiles (the CPU has AMX-TILE and AMX-BF16 and Linux granted
// the tile state), so that DecodeAttention's and PrefillAttention's amx take effect.
bool DecodeAttentionAmx();

// True when PrefillAttention handles these tensors (bf16 CPU, AVX512-BF16 present).
bool PrefillAttentionApplies(const at::Tensor& q, const at::Tensor& k_cache);

// Causal attention of a prompt chunk over its context, straight from the paged cache (what
// the eager path otherwise does with index_select, two bmm and a softmax, which ATen 1.13 runs
// at 44-58 GFLOP/s on this path, most of a chunk's time after a few thousand tokens).
// q: [n, heads, D] bf16 at positions num_cached .. num_cached + n - 1; slots: the cache rows of
// positions 0 .. num_cached + n - 1 (the chunk's own K/V already written). Returns [n, heads, D]
// bf16. Flash attention on AVX512-BF16: each query row sees only the keys up to its position,
// scores are rounded as ATen rounds them, the softmax runs in float over blocks of keys with the
// unnormalised probabilities rounded to bf16 for the product with V (ATen rounds the normalised
// ones), and the output is rounded once. The work is shared over the pool in blocks of query
// rows of one KV head, each reading the K and V rows it sees once for up to 128 rows.
// amx: on a CPU with AMX-BF16, both products on AMX tiles (the scores as K Q^T from the same
// packed Q, the output as O^T = V^T P from the same bf16 P), the softmax unchanged.
at::Tensor PrefillAttention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                            const std::vector<int64_t>& slots, int64_t num_cached, double scale, bool amx = true);

}  // namespace r1::model
