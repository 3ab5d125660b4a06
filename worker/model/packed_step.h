// The CUDA step's host-side plan: one StepBatch turned into the int32 index arrays the kernels
// read, packed into one buffer that crosses to the device in one copy. Torch-free, so it is unit
// tested on any machine. Eager steps and graph replays use the same planner: a graph step is
// the plan of its decode batch padded to the graph's bucket (pad_rows, table_width).
//
// How each sequence attends:
//   - paged rows: decode tokens and short chunks; every new token is a query row of the paged
//     decode-attention kernel, which reads that sequence's blocks in place;
//   - flash sequences: chunks with more than flash_min_tokens new tokens whose work (new tokens
//     x context) exceeds flash_min_work; their K/V (cached and new) is gathered from the cache
//     into contiguous buffers and one causal varlen flash-attention call serves them all.
#pragma once

#include <cstdint>
#include <vector>

#include "worker/model/step_batch.h"

namespace r1::model {

struct PackOptions {
  int64_t block_size = 16;
  // Chunks with more new tokens than this, and more than flash_min_work query-key pairs, go to
  // flash attention; flash_min_tokens < 0 sends every query to the paged kernel.
  int64_t flash_min_tokens = 4;
  int64_t flash_min_work = 65536;
  // Decode graphs: pad the batch to pad_rows rows (row i >= the batch's repeats row 0: it
  // writes the same K/V into the same slot, so it changes nothing) and the block tables to
  // table_width blocks. 0: no padding.
  int64_t pad_rows = 0;
  int64_t table_width = 0;
};

// Where each array sits in the packed buffer, in this order:
//   ids[T] pos[T] slots[T] q_rows[Bq] q_lens[Bq] q_seq[Bq] tables[S * MB] logit_rows[R]
//   cu_q[F + 1] cu_k[F + 1] gather[Kg] flash_rows[Qf]
struct PackedLayout {
  int64_t T = 0;    // tokens fed (rows)
  int64_t Bq = 0;   // paged query rows
  int64_t S = 0;    // paged sequences (block-table rows)
  int64_t MB = 0;   // blocks per block-table row
  int64_t R = 0;    // logit rows
  int64_t F = 0;    // flash sequences
  int64_t Kg = 0;   // keys gathered for them (the sum of their contexts)
  int64_t Qf = 0;   // their query rows
  int64_t max_q = 0, max_k = 0;    // the longest flash chunk and context
  int64_t max_paged_len = 0;       // the longest context of a paged query
  bool identity_logits = false;    // logit rows are 0..T-1
  int nsplit = 1;                  // decode attention key splits (the CUDA path sets it)

  int64_t size() const { return at_flash_rows() + Qf; }
  // Offsets of the arrays, in the order above.
  int64_t at_q_rows() const { return 3 * T; }
  int64_t at_tables() const { return 3 * T + 3 * Bq; }
  int64_t at_logit_rows() const { return at_tables() + S * MB; }
  int64_t at_cu_q() const { return at_logit_rows() + R; }
  int64_t at_cu_k() const { return at_cu_q() + (F > 0 ? F + 1 : 0); }
  int64_t at_gather() const { return at_cu_k() + (F > 0 ? F + 1 : 0); }
  int64_t at_flash_rows() const { return at_gather() + Kg; }
};

struct PackedStep {
  PackedLayout lay;
  std::vector<int32_t> host;  // the packed buffer
};

PackedStep PackStep(const StepBatch& batch, const PackOptions& options);

}  // namespace r1::model
