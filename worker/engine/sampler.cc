#include "worker/engine/sampler.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace r1::engine {

double UniformDraw(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

PenaltyTerms CollectPenalties(const SamplingOptions& o, const SamplerState& s, int64_t vocab) {
  PenaltyTerms terms;
  auto in_range = [vocab](int32_t t) { return t >= 0 && t < vocab; };
  if (o.repetition_penalty > 0.f && o.repetition_penalty != 1.f) {
    std::vector<int32_t>& seen = terms.repeated;
    seen.reserve(s.prompt.size() + s.output.size());
    for (const std::vector<int32_t>* ids : {&s.prompt, &s.output})
      for (int32_t t : *ids)
        if (in_range(t)) seen.push_back(t);
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
  }
  if (o.presence_penalty != 0.f || o.frequency_penalty != 0.f) {
    std::vector<int32_t> out;
    out.reserve(s.output.size());
    for (int32_t t : s.output)
      if (in_range(t)) out.push_back(t);
    std::sort(out.begin(), out.end());
    for (size_t i = 0; i < out.size();) {
      size_t j = i;
      while (j < out.size() && out[j] == out[i]) ++j;
      terms.subtract.emplace_back(
          out[i], o.frequency_penalty * static_cast<float>(j - i) + o.presence_penalty);
      i = j;
    }
  }
  return terms;
}

void ApplyPenalties(float* row, int64_t vocab, const SamplingOptions& o, const SamplerState& s) {
  PenaltyTerms terms = CollectPenalties(o, s, vocab);
  for (int32_t t : terms.repeated)
    row[t] = row[t] > 0 ? row[t] / o.repetition_penalty : row[t] * o.repetition_penalty;
  for (auto [t, sub] : terms.subtract) row[t] -= sub;
}

void ApplyConstraint(float* row, int64_t vocab, const LogitsConstraint& c) {
  for (auto [t, amount] : c.bias)
    if (t >= 0 && t < vocab) row[t] += amount;
  if (c.allowed.empty()) return;
  constexpr float kOut = -std::numeric_limits<float>::infinity();
  const int64_t words = (vocab + 31) / 32;
  for (int64_t w = 0; w < words; ++w) {
    const uint32_t m = w < static_cast<int64_t>(c.allowed.size()) ? c.allowed[static_cast<size_t>(w)] : 0u;
    if (m == ~0u) continue;  // dense masks (inside a string) are mostly whole words
    float* p = row + w * 32;
    const int64_t n = std::min<int64_t>(32, vocab - w * 32);
    if (m == 0) {
      std::fill(p, p + n, kOut);
      continue;
    }
    for (int64_t b = 0; b < n; ++b)
      if (!((m >> b) & 1u)) p[b] = kOut;
  }
}

int32_t FirstAllowed(const LogitsConstraint& c, int64_t vocab) {
  if (c.allowed.empty()) return vocab > 0 ? 0 : -1;
  for (size_t w = 0; w < c.allowed.size(); ++w) {
    if (!c.allowed[w]) continue;
    const int64_t id = static_cast<int64_t>(w) * 32 + __builtin_ctz(c.allowed[w]);
    return id < vocab ? static_cast<int32_t>(id) : -1;
  }
  return -1;
}

namespace {

// The first maximum of a row, as std::max_element and torch.argmax give it: a max pass over
// 16 independent lanes (which the compiler turns into vector max instructions), then a scan
// for the first position holding it. Several times faster than std::max_element.
int32_t FirstMax(const float* row, int64_t vocab) {
  constexpr int64_t kLanes = 16;
  if (vocab < kLanes) return static_cast<int32_t>(std::max_element(row, row + vocab) - row);
  float lane[kLanes];
  std::copy(row, row + kLanes, lane);
  int64_t i = kLanes;
  for (; i + kLanes <= vocab; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) lane[j] = row[i + j] > lane[j] ? row[i + j] : lane[j];
  float m = *std::max_element(lane, lane + kLanes);
  for (; i < vocab; ++i) m = row[i] > m ? row[i] : m;
  for (int64_t k = 0; k < vocab; ++k)
    if (row[k] == m) return static_cast<int32_t>(k);
  return static_cast<int32_t>(std::max_element(row, row + vocab) - row);  // NaNs
}

// Temperature and min-p only: every finite logit in id order, straight from the row (no
// candidate list to build).
int32_t SampleAll(const float* row, int64_t vocab, float inv_t, double min_p,
                  std::mt19937_64& rng) {
  float max_logit = -std::numeric_limits<float>::infinity();
  bool any = false;
  for (int64_t i = 0; i < vocab; ++i) {
    if (!std::isfinite(row[i])) continue;
    float l = row[i] * inv_t;
    if (!any || l > max_logit) max_logit = l;
    any = true;
  }
  if (!any) return 0;
  thread_local std::vector<double> p;
  p.resize(static_cast<size_t>(vocab));
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    double w = std::isfinite(row[i]) ? std::exp(static_cast<double>(row[i] * inv_t - max_logit))
                                     : 0.0;
    sum += p[static_cast<size_t>(i)] = w < min_p ? 0.0 : w;
  }
  double u = UniformDraw(rng) * sum, acc = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    acc += p[static_cast<size_t>(i)];
    if (u < acc && p[static_cast<size_t>(i)] > 0) return static_cast<int32_t>(i);
  }
  for (int64_t i = vocab; i-- > 0;)  // rounding: the last token with weight
    if (p[static_cast<size_t>(i)] > 0) return static_cast<int32_t>(i);
  return 0;
}

// Top-p without top-k (the R1 defaults) with the exact integer weights of the device sampler
// (worker/model/cuda/sampling.h): p = exp(s - max s) in float32, in units of 2^-40, 0 below
// min-p; kept: the shortest prefix, in the order (s descending, id ascending), whose weight
// reaches ceil(top_p * total); the token: the first kept one whose cumulative weight exceeds
// u * kept. Every sum is exact, so the order of additions does not matter and the prefix is
// found by selection (expected time linear in the vocabulary) instead of by sorting the row.
struct Weighted {
  uint32_t key;  // s's bits, in an unsigned order equal to s's
  int32_t id;
  uint64_t q;
};

uint32_t OrderKey(float s) {
  uint32_t b;
  std::memcpy(&b, &s, sizeof b);
  if (b == 0x80000000u) b = 0;  // -0 as +0: equal logits are ordered by id
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// The token at which the cumulative weight of c, in the order (key descending, id ascending),
// first reaches m (1 <= m <= c's total weight); *reached: the cumulative weight there. Reorders
// c: a three-way partition around a median-of-three key, kept on the side that holds m.
int32_t FirstReaching(std::vector<Weighted>& c, uint64_t m, uint64_t* reached) {
  size_t lo = 0, hi = c.size();
  uint64_t above = 0;  // the weight of every token ordered before [lo, hi)
  while (hi > lo) {
    const uint32_t a = c[lo].key, b = c[lo + (hi - lo) / 2].key, d = c[hi - 1].key;
    const uint32_t pivot = std::max(std::min(a, b), std::min(std::max(a, b), d));
    size_t gt = lo, i = lo, lt = hi;  // [lo, gt) > pivot, [gt, i) == pivot, [lt, hi) < pivot
    uint64_t w_gt = 0, w_eq = 0;
    while (i < lt) {
      if (c[i].key > pivot) {
        w_gt += c[i].q;
        std::swap(c[i++], c[gt++]);
      } else if (c[i].key < pivot) {
        std::swap(c[i], c[--lt]);
      } else {
        w_eq += c[i++].q;
      }
    }
    if (above + w_gt >= m) {
      hi = gt;
    } else if (above + w_gt + w_eq >= m) {
      // Inside the run of tokens with the pivot's s (each of the same weight), by id.
      const uint64_t q = c[gt].q;
      const uint64_t rank = (m - above - w_gt + q - 1) / q - 1;
      auto nth = c.begin() + static_cast<long>(gt + rank);
      std::nth_element(c.begin() + static_cast<long>(gt), nth, c.begin() + static_cast<long>(i),
                       [](const Weighted& x, const Weighted& y) { return x.id < y.id; });
      *reached = above + w_gt + (rank + 1) * q;
      return nth->id;
    } else {
      above += w_gt + w_eq;
      lo = lt;
    }
  }
  *reached = above;  // not reached for 1 <= m <= the total
  return c.empty() ? 0 : c.front().id;
}

int32_t SampleTopPExact(const float* row, int64_t vocab, const SamplingOptions& o,
                        std::mt19937_64& rng) {
  const float inv_t = 1.f / o.temperature;
  float top = -std::numeric_limits<float>::infinity();
  int32_t top_id = -1;  // the first token with the largest s
  for (int64_t i = 0; i < vocab; ++i) {
    if (!std::isfinite(row[i])) continue;
    const float s = row[i] * inv_t;
    if (top_id < 0 || s > top) top = s, top_id = static_cast<int32_t>(i);
  }
  if (top_id < 0) return 0;  // no finite logit (no draw, as the sorted path)
  const float min_p = std::max(o.min_p, 0.f);
  thread_local std::vector<Weighted> c;
  c.clear();
  uint64_t total = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (!std::isfinite(row[i])) continue;
    const float s = row[i] * inv_t;
    const float p = std::exp(s - top);
    if (p < min_p) continue;
    const uint64_t q = static_cast<uint64_t>(p * 0x1p40f);
    if (q == 0) continue;  // too small to count: never a boundary
    c.push_back({OrderKey(s), static_cast<int32_t>(i), q});
    total += q;
  }
  // The draw, rounded to float as the device sampler takes it.
  const float u = std::min(static_cast<float>(UniformDraw(rng)), 0x1.fffffep-1f);
  if (total == 0) return top_id;
  uint64_t kept = total, reached = 0;
  if (o.top_p < 1.f) {
    const double want = std::ceil(static_cast<double>(o.top_p) * static_cast<double>(total));
    const uint64_t m = want < 1.0 ? 1 : (want >= static_cast<double>(total) ? total : static_cast<uint64_t>(want));
    FirstReaching(c, m, &kept);
  }
  const uint64_t m = std::min(
      kept, static_cast<uint64_t>(std::floor(static_cast<double>(u) * static_cast<double>(kept))) + 1);
  return FirstReaching(c, m, &reached);
}

// Samples from the candidates (token, logit) after temperature, top-k, min-p and top-p.
int32_t SampleFiltered(const float* row, int64_t vocab, const SamplingOptions& o,
                       std::mt19937_64& rng) {
  const float inv_t = 1.f / o.temperature;
  const bool top_p = o.top_p > 0.f && o.top_p < 1.f;
  if (o.top_k <= 0 && !top_p) return SampleAll(row, vocab, inv_t, std::max(o.min_p, 0.f), rng);
  if (o.top_k <= 0) return SampleTopPExact(row, vocab, o, rng);
  std::vector<std::pair<float, int32_t>> cand;  // (scaled logit, token)
  cand.reserve(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i)
    if (std::isfinite(row[i])) cand.emplace_back(row[i] * inv_t, static_cast<int32_t>(i));
  if (cand.empty()) return 0;
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  const float max_logit =
      std::max_element(cand.begin(), cand.end(), [](auto& a, auto& b) {
        return a.first < b.first;
      })->first;
  // A candidate's weight: 1 for the top token; 0 below min-p (relative to the top's 1).
  const double min_p = o.min_p > 0.f ? o.min_p : 0.0;
  auto weight = [&](float logit) {
    double w = std::exp(static_cast<double>(logit - max_logit));
    return w < min_p ? 0.0 : w;
  };
  size_t keep = cand.size();
  bool sorted = false;
  if (o.top_k > 0 && static_cast<size_t>(o.top_k) < cand.size()) {
    keep = static_cast<size_t>(o.top_k);
    std::partial_sort(cand.begin(), cand.begin() + static_cast<long>(keep), cand.end(), by_logit);
    sorted = true;
  }
  if (top_p) {
    // The smallest prefix by logit whose weight reaches top_p of the total. Only that prefix
    // needs ordering: sort 256, then 4x more while the sorted part falls short.
    double total = 0;
    for (size_t i = 0; i < keep; ++i) total += weight(cand[i].first);
    const double target = o.top_p * total;
    if (!sorted) {
      for (size_t n = std::min<size_t>(256, keep);; n = std::min(n * 4, keep)) {
        std::partial_sort(cand.begin(), cand.begin() + static_cast<long>(n),
                          cand.begin() + static_cast<long>(keep), by_logit);
        double cum = 0;
        for (size_t i = 0; i < n && cum < target; ++i) cum += weight(cand[i].first);
        if (cum >= target || n == keep) break;
      }
    }
    double cum = 0;
    for (size_t i = 0; i < keep; ++i) {
      cum += weight(cand[i].first);
      if (cum >= target) {
        keep = i + 1;
        break;
      }
    }
  }
  std::vector<double> p(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += p[i] = weight(cand[i].first);
  double u = UniformDraw(rng) * sum, acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += p[i];
    if (u < acc && p[i] > 0) return cand[i].second;
  }
  for (size_t i = keep; i-- > 0;)  // rounding: the last kept token with weight
    if (p[i] > 0) return cand[i].second;
  return cand.front().second;
}

}  // namespace

std::vector<SampleResult> SampleBatch(const at::Tensor& logits,
                                      const std::vector<const SamplingOptions*>& options,
                                      const std::vector<SamplerState*>& states) {
  at::Tensor cpu = logits.to(at::kCPU, at::kFloat).contiguous();
  const int64_t n = cpu.size(0), vocab = cpu.size(1);
  std::vector<SampleResult> out(static_cast<size_t>(n));
  bool any_logprobs = false;
  for (const SamplingOptions* o : options) any_logprobs |= o->logprobs;
  at::Tensor logp = any_logprobs ? at::log_softmax(cpu, 1) : at::Tensor();
  // Rows are independent (each has its own state and result): spread them over the threads.
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch;
    for (int64_t r = begin; r < end; ++r) {
      const SamplingOptions& o = *options[r];
      SamplerState& st = *states[r];
      const float* row = cpu.data_ptr<float>() + r * vocab;
      const bool constrained = st.constraint.active();
      if (o.penalised() || constrained) {
        scratch.assign(row, row + vocab);
        if (o.penalised()) ApplyPenalties(scratch.data(), vocab, o, st);
        if (constrained) ApplyConstraint(scratch.data(), vocab, st.constraint);
        row = scratch.data();
      }
      int32_t tok = o.greedy() ? FirstMax(row, vocab) : SampleFiltered(row, vocab, o, st.rng);
      // Every allowed logit -inf (a model that gives -inf, a -inf bias): still an allowed token.
      if (constrained && !st.constraint.Allows(tok)) {
        if (int32_t first = FirstAllowed(st.constraint, vocab); first >= 0) tok = first;
      }
      SampleResult& res = out[static_cast<size_t>(r)];
      res.token = tok;
      if (o.logprobs) {
        const float* lp = logp.data_ptr<float>() + r * vocab;
        res.logprob = lp[tok];
        if (o.top_logprobs > 0) {
          auto [vals, idx] = logp[r].topk(std::min<int64_t>(o.top_logprobs, vocab));
          for (int64_t i = 0; i < vals.size(0); ++i)
            res.top.emplace_back(static_cast<int32_t>(idx[i].item<int64_t>()), vals[i].item<float>());
        }
      }
      st.output.push_back(tok);
    }
  });
  return out;
}

}  // namespace r1::engine
