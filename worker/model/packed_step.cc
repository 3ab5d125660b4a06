#include "worker/model/packed_step.h"

#include <algorithm>

namespace r1::model {

PackedStep PackStep(const StepBatch& batch, const PackOptions& o) {
  const int64_t bs = o.block_size;
  const int64_t real = static_cast<int64_t>(batch.seqs.size());
  const int64_t rows = std::max(real, o.pad_rows);
  // Row i of a padded decode batch repeats row 0.
  auto seq_of = [&](int64_t i) -> const SequenceStep& {
    return batch.seqs[static_cast<size_t>(i < real ? i : 0)];
  };
  auto flash = [&](const SequenceStep& s) {
    return o.flash_min_tokens >= 0 && s.num_new > o.flash_min_tokens &&
           s.num_new * (s.num_cached + s.num_new) > o.flash_min_work;
  };

  std::vector<int32_t> ids, pos, slots, q_rows, q_lens, q_seq, logit_rows, cu_q{0}, cu_k{0},
      gather, flash_rows;
  std::vector<const SequenceStep*> paged;
  PackedLayout L;
  int64_t off = 0, tok = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const SequenceStep& s = seq_of(i);
    auto slot_of = [&](int64_t p) {
      return static_cast<int32_t>(int64_t{s.block_table[static_cast<size_t>(p / bs)]} * bs + p % bs);
    };
    const bool f = flash(s);
    const int64_t first_tok = i < real ? tok : 0;  // padding rows repeat row 0's tokens
    for (int64_t j = 0; j < s.num_new; ++j) {
      ids.push_back(batch.tokens[static_cast<size_t>(first_tok + j)]);
      pos.push_back(static_cast<int32_t>(s.num_cached + j));
      slots.push_back(slot_of(s.num_cached + j));
      if (f) {
        flash_rows.push_back(static_cast<int32_t>(off + j));
      } else {
        q_rows.push_back(static_cast<int32_t>(off + j));
        q_lens.push_back(static_cast<int32_t>(s.num_cached + j + 1));
        q_seq.push_back(static_cast<int32_t>(paged.size()));
      }
    }
    const int64_t len = s.num_cached + s.num_new;
    if (f) {
      cu_q.push_back(cu_q.back() + static_cast<int32_t>(s.num_new));
      cu_k.push_back(cu_k.back() + static_cast<int32_t>(len));
      for (int64_t p = 0; p < len; ++p) gather.push_back(slot_of(p));
      L.max_q = std::max(L.max_q, s.num_new);
      L.max_k = std::max(L.max_k, len);
    } else {
      paged.push_back(&s);
      L.max_paged_len = std::max(L.max_paged_len, len);
    }
    if (s.want_all_logits) {
      for (int64_t j = 0; j < s.num_new; ++j) logit_rows.push_back(static_cast<int32_t>(off + j));
    } else if (s.want_logits) {
      logit_rows.push_back(static_cast<int32_t>(off + s.num_new - 1));
    }
    off += s.num_new;
    if (i < real) tok += s.num_new;
  }
  L.T = off;
  L.Bq = static_cast<int64_t>(q_rows.size());
  L.S = static_cast<int64_t>(paged.size());
  L.MB = std::max((L.max_paged_len + bs - 1) / bs, o.table_width);
  L.R = static_cast<int64_t>(logit_rows.size());
  L.F = static_cast<int64_t>(cu_q.size()) - 1;
  L.Kg = static_cast<int64_t>(gather.size());
  L.Qf = static_cast<int64_t>(flash_rows.size());
  L.identity_logits = L.R == L.T;
  for (int64_t i = 0; i < L.R && L.identity_logits; ++i) L.identity_logits = logit_rows[i] == i;

  PackedStep p;
  p.lay = L;
  p.host.reserve(static_cast<size_t>(L.size()));
  auto append = [&](const std::vector<int32_t>& v) { p.host.insert(p.host.end(), v.begin(), v.end()); };
  append(ids);
  append(pos);
  append(slots);
  append(q_rows);
  append(q_lens);
  append(q_seq);
  for (const SequenceStep* s : paged)
    for (int64_t b = 0; b < L.MB; ++b)
      p.host.push_back(b < static_cast<int64_t>(s->block_table.size()) ? s->block_table[static_cast<size_t>(b)] : 0);
  append(logit_rows);
  if (L.F > 0) {
    append(cu_q);
    append(cu_k);
  }
  append(gather);
  append(flash_rows);
  return p;
}

}  // namespace r1::model
