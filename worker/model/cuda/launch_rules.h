// How the CUDA kernels (kernels.cu) shape their grids: host-only arithmetic, no CUDA or torch
// types, so that it is unit-tested on any machine (tests/model/launch_rules_test.cc) and shared
// by the model, the kernels and the standalone benches.
#pragma once

#include <algorithm>
#include <cstdint>

namespace r1::model::cuda {

// The most key splits a decode-attention launch takes (the merge keeps a weight per split in
// shared memory).
constexpr int kMaxAttentionSplits = 256;

// The modelled time (microseconds on the H200) of a decode-attention launch over `heads` (query,
// KV head) pairs of `tiles` 64-key tiles each in `splits` splits, fitted to attention_bench's
// sweeps of batch 1-256 at 4k-32k keys (device run 25, docs/gpu.md). The blocks run in waves of
// the resident ones (3 an SM: two stages of tiles in shared memory); a block streams a tile in
// 1.75 us alone on its SM, 2.41 with two and 3.28 with three (the memory bandwidth shared), so
// a last wave of a few blocks costs nearly a full one; each block adds 0.01 us, a wave 0.5, and
// the merge of several splits 6.5 plus 0.4 per 16 splits (one split: 4 to start and end).
inline double AttentionCost(int64_t heads, int64_t tiles, int64_t splits, int sms) {
  static constexpr double kTileUs[4] = {0.0, 1.75, 2.41, 3.28};  // by blocks on the SM
  const int64_t n = (tiles + splits - 1) / splits, blocks = heads * splits, resident = 3 * static_cast<int64_t>(sms);
  const int64_t full = blocks / resident, rest = blocks % resident;
  double us = static_cast<double>(full) * (static_cast<double>(n) * kTileUs[3] + 0.5);
  if (rest > 0) us += static_cast<double>(n) * kTileUs[std::min<int64_t>(3, (rest + sms - 1) / sms)] + 0.5;
  us += splits == 1 ? 4.0 : 6.5 + 0.4 * static_cast<double>((splits + 15) / 16);
  return us + 0.01 * static_cast<double>(blocks);
}

// The key splits for `queries` decode rows of `kvh` KV heads over at most `max_len` keys on a GPU
// of `sms` SMs: the count (1 to 256, at least 2 tiles of 64 keys a split) with the least modelled
// time (AttentionCost: waves of resident blocks, each block's pace by how many share its SM, a
// cost per block and the merge's per split), fitted to attention_bench on an H200
// (docs/gpu.md). It keeps the grid to whole waves where that pays: batch 64 takes 3 splits (384
// blocks, one wave of 396; 0.86-0.88 of the read bandwidth at 16k-32k keys) where 2 left the SMs
// two blocks each and 4 a second wave of 116. Fewer than 16 tiles (1,024 keys) are not split:
// there the merge costs more than the parallelism returns (attention_bench at 128 keys: 7.1 us a
// layer in one split against 8.3 in 8 at batch 1, 7.9 against 18.4 at 64).
inline int PagedAttentionSplits(int64_t queries, int kvh, int64_t max_len, int sms) {
  const int64_t tiles = std::max<int64_t>(1, (max_len + 63) / 64);
  if (tiles < 16 || sms <= 0) return 1;
  const int64_t heads = std::max<int64_t>(1, queries * kvh);
  const int64_t most = std::clamp<int64_t>(tiles / 2, 1, kMaxAttentionSplits);
  int64_t best = 1;
  double best_cost = AttentionCost(heads, tiles, 1, sms);
  for (int64_t s = 2; s <= most; ++s) {
    const double c = AttentionCost(heads, tiles, s, sms);
    if (c < best_cost) best = s, best_cost = c;
  }
  return static_cast<int>(best);
}

// The persistent grid of the tensor-core GEMV over `tiles` tiles of outputs whose rows take
// `steps` steps of K, on `resident` blocks of `warps` warps: the K slices S (1, 2, 4 ... up to
// `warps`, each at least `min_steps` steps) that give a warp the fewest steps (rounds x steps a
// slice; the fewer slices on a tie), as few rounds as the resident blocks allow, and the tiles
// spread evenly over the rounds' blocks (a last round of a few tiles would leave most of the GPU
// idle while it streams). The rule before (the fewest slices that give every resident warp a
// unit) left gate/up's 1,120 tiles at two slices in two rounds, 24 steps a warp on 140 blocks;
// eight slices take 15 on 224 (docs/gpu.md, device runs 23-24).
struct GemvTcGrid {
  int split = 1;
  int64_t rounds = 1;
  int64_t blocks = 1;
};
inline GemvTcGrid GemvTcGridFor(int64_t tiles, int steps, int min_steps, int resident, int warps) {
  auto rounds_for = [&](int s) {
    const int64_t per_round = warps / s;
    return (tiles + static_cast<int64_t>(resident) * per_round - 1) / (static_cast<int64_t>(resident) * per_round);
  };
  auto warp_steps = [&](int s) { return rounds_for(s) * ((steps + s - 1) / s); };
  GemvTcGrid g;
  for (int s = 2; s <= warps && steps / s >= min_steps; s *= 2)
    if (warp_steps(s) < warp_steps(g.split)) g.split = s;
  const int64_t per_round = warps / g.split;
  g.rounds = rounds_for(g.split);
  g.blocks = (tiles + g.rounds * per_round - 1) / (g.rounds * per_round);
  return g;
}

}  // namespace r1::model::cuda
