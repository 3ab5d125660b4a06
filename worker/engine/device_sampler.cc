#include "worker/engine/device_sampler.h"

#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <limits>
#include <tuple>

#if defined(R1_HAVE_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "worker/model/cuda/sampling.h"
#endif

namespace r1::engine {
namespace {

std::atomic<bool> top_p_kernel{true};

// Host bytes -> pinned memory (the caching host allocator's: kept until the copies that read
// it are done), so that an upload from it neither stages through pageable memory nor waits for
// the device: a plain copy from pageable memory synchronises the stream, and the sampler's ops
// after it would then be launched one by one onto an idle GPU.
at::Tensor Pinned(const at::Tensor& host) {
  at::Tensor pinned = at::empty_like(host, at::TensorOptions().pinned_memory(true));
  pinned.copy_(host);
  return pinned;
}

// Host vector -> a new tensor on `device` (always a copy: the vector dies first), queued on the
// current stream without waiting for it.
template <class T>
at::Tensor Upload(const std::vector<T>& v, at::ScalarType type, at::Device device) {
  at::Tensor host = at::from_blob(const_cast<T*>(v.data()), {static_cast<int64_t>(v.size())}, type);
  if (!device.is_cuda()) return host.to(device, type, /*non_blocking=*/false, /*copy=*/true);
  return Pinned(host).to(device, type, /*non_blocking=*/true);
}

// Pinned host bytes -> `device`, copied on a side stream: the copy runs while the kernels
// queued before it on the current stream (the model's step, whose logits the bytes will mask)
// still compute, instead of after them. The current stream waits for it; the result is not
// reused by the allocator until the current stream is done with it.
at::Tensor UploadBeside(const at::Tensor& pinned, at::Device device) {
  c10::impl::VirtualGuardImpl impl(device.type());
  const c10::Stream current = impl.getStream(device);
  const c10::Stream side = impl.getStreamFromGlobalPool(device);
  c10::Event copied(device.type());
  at::Tensor out;
  {
    c10::StreamGuard guard(side);
    out = pinned.to(device, /*non_blocking=*/true);
    copied.record(side);
  }
  copied.block(current);
  impl.recordDataPtrOnStream(out.storage().data_ptr(), current);
  return out;
}

// How a sampled row finds its candidates. Each row's way depends on its own options only, so
// that its token never depends on the rest of the batch.
enum class Order {
  kById,    // no top-k or top-p: every token, in id order
  kTopK,    // top-k (k <= kMaxTopK): the k best by topk
  kTopP,    // top-p without top-k: exact integer sums (on CUDA from 4 rows by the kernel)
  kSorted,  // top-p with top-k, or a larger k: the whole row sorted
};
// Beyond this many candidates a top-k row is cheaper with one full sort than with topk.
constexpr int64_t kMaxTopK = 1024;

Order OrderFor(const SamplingOptions& o) {
  if (o.top_p > 0.f && o.top_p < 1.f) return o.top_k <= 0 ? Order::kTopP : Order::kSorted;
  if (o.top_k <= 0) return Order::kById;
  return o.top_k <= kMaxTopK ? Order::kTopK : Order::kSorted;
}

// Per-row settings of a group of sampled rows, uploaded together.
struct Group {
  std::vector<int64_t> rows;
  std::vector<float> inv_t, top_p, min_p, u;
  std::vector<int64_t> top_k;
  int64_t max_k = 0;

  void Add(int64_t row, const SamplingOptions& o, float uniform) {
    rows.push_back(row);
    inv_t.push_back(1.f / o.temperature);
    top_p.push_back(o.top_p > 0.f && o.top_p < 1.f ? o.top_p : 1.f);
    min_p.push_back(std::max(o.min_p, 0.f));
    top_k.push_back(std::max(o.top_k, 0));
    max_k = std::max<int64_t>(max_k, o.top_k);
    u.push_back(uniform);
  }
};

// Below this many top-p rows, a CUDA step sorts them (exactly, as the kernel sums): the kernel
// gives each row one SM, and on the random-weight 1.5B's wide rows one row takes it ~0.45 ms,
// where the sort of a single row spreads over the GPU (~0.2 ms). From 4 rows on the kernel is
// faster (docs/gpu.md, "Sampling at the R1 defaults").
constexpr int64_t kTopPKernelMinRows = 4;

#if defined(R1_HAVE_CUDA)
// Top-p rows of x by the sort-free kernel (worker/model/cuda/sampling.h).
at::Tensor TopPByKernel(const at::Tensor& x, const Group& g) {
  const at::Device dev = x.device();
  const bool all_rows = static_cast<int64_t>(g.rows.size()) == x.size(0);
  at::Tensor xc = x.stride(1) == 1 ? x : x.contiguous();
  at::Tensor rows = all_rows ? at::Tensor() : Upload(g.rows, at::kLong, dev);
  at::Tensor inv_t = Upload(g.inv_t, at::kFloat, dev), top_p = Upload(g.top_p, at::kFloat, dev);
  at::Tensor min_p = Upload(g.min_p, at::kFloat, dev), u = Upload(g.u, at::kFloat, dev);
  at::Tensor out = at::empty({static_cast<int64_t>(g.rows.size())},
                             at::TensorOptions().dtype(at::kLong).device(dev));
  model::cuda::TopPSampleArgs a;
  a.logits = xc.data_ptr<float>();
  a.ld = xc.stride(0);
  a.rows = all_rows ? nullptr : rows.data_ptr<int64_t>();
  a.n = out.size(0);
  a.V = x.size(1);
  a.inv_t = inv_t.data_ptr<float>();
  a.top_p = top_p.data_ptr<float>();
  a.min_p = min_p.data_ptr<float>();
  a.u = u.data_ptr<float>();
  a.out = out.data_ptr<int64_t>();
  C10_CUDA_CHECK(static_cast<cudaError_t>(
      model::cuda::TopPSample(a, at::cuda::getCurrentCUDAStream(dev.index()))));
  return out;
}
#endif

// Top-p rows `raw` ([m, V]) sorted, with the kernel's integer weights and cuts (sampling.h): the
// same token as the kernel for the same row and draw, so a row's token does not depend on
// which of the two its batch took.
at::Tensor TopPBySortExact(const at::Tensor& raw, const Group& g) {
  const at::Device dev = raw.device();
  const int64_t W = raw.size(1);
  at::Tensor s = raw * Upload(g.inv_t, at::kFloat, dev).unsqueeze(1);
  s.masked_fill_(at::logical_not(at::isfinite(raw)), -std::numeric_limits<float>::infinity());
  auto [sorted, ids] = s.sort(/*stable=*/true, 1, /*descending=*/true);
  at::Tensor top = sorted.select(1, 0);
  top = at::where(at::isfinite(top), top, at::zeros_like(top));
  at::Tensor p = (sorted - top.unsqueeze(1)).exp_();
  p.masked_fill_(p < Upload(g.min_p, at::kFloat, dev).unsqueeze(1), 0.f);
  at::Tensor cum = p.mul_(0x1p40).to(at::kLong).cumsum(1);  // exact: units of 2^-40
  at::Tensor total = cum.select(1, W - 1);
  at::Tensor top_p = Upload(g.top_p, at::kFloat, dev);
  // The top-p cut: the first position whose cumulative weight reaches ceil(top_p * total).
  at::Tensor want = (top_p.to(at::kDouble) * total.to(at::kDouble)).ceil_().to(at::kLong);
  want = at::minimum(at::maximum(want, at::ones_like(want)), total);
  at::Tensor cut = at::searchsorted(cum, want.unsqueeze(1)).clamp_max_(W - 1);
  at::Tensor kept = at::where(top_p < 1.f, cum.gather(1, cut).squeeze(1), total);
  // The draw: the first position whose cumulative weight exceeds u * kept.
  at::Tensor u = Upload(g.u, at::kFloat, dev).to(at::kDouble);
  at::Tensor target = at::minimum(kept, (u * kept.to(at::kDouble)).floor_().to(at::kLong) + 1);
  at::Tensor pick = at::searchsorted(cum, target.unsqueeze(1)).clamp_max_(W - 1);
  return ids.gather(1, pick).view({-1});
}

// Tokens for one group's rows of `x` ([n, V] float32): temperature, then (unless kById) by
// logit, ties by id, with top-k and top-p, min-p, then inverse CDF at the row's uniform.
at::Tensor SampleGroup(const at::Tensor& x, const Group& g, Order order) {
  const bool ordered = order != Order::kById;
  const at::Device dev = x.device();
  const int64_t V = x.size(1);
  // Top-p rows take the integer sums on every device (as SampleBatch does on the host).
  const bool exact_top_p = order == Order::kTopP && top_p_kernel.load(std::memory_order_relaxed);
#if defined(R1_HAVE_CUDA)
  if (exact_top_p && dev.is_cuda() && static_cast<int64_t>(g.rows.size()) >= kTopPKernelMinRows)
    return TopPByKernel(x, g);
#endif
  // Every row of x in order (rows are added in order): no gather needed.
  at::Tensor raw = static_cast<int64_t>(g.rows.size()) == x.size(0)
                       ? x
                       : x.index_select(0, Upload(g.rows, at::kLong, dev));
  if (exact_top_p) return TopPBySortExact(raw, g);
  at::Tensor s = raw * Upload(g.inv_t, at::kFloat, dev).unsqueeze(1);
  // Non-finite logits are no candidates (weight 0).
  s.masked_fill_(at::logical_not(at::isfinite(raw)), -std::numeric_limits<float>::infinity());
  at::Tensor ids;
  if (order == Order::kTopK && g.max_k < V) {
    std::tie(s, ids) = s.topk(g.max_k, 1, /*largest=*/true, /*sorted=*/true);
    // topk orders equal logits as it likes: put them in id order.
    auto [by_id, perm] = ids.sort(1);
    std::tie(s, perm) = s.gather(1, perm).sort(/*stable=*/true, 1, /*descending=*/true);
    ids = by_id.gather(1, perm);
  } else if (ordered) {
    // Stable: equal logits keep id order, as SampleBatch's (logit, id) order does.
    std::tie(s, ids) = s.sort(/*stable=*/true, 1, /*descending=*/true);
  }
  const int64_t W = s.size(1);
  at::Tensor top = ordered ? s.select(1, 0) : std::get<0>(s.max(1));
  top = at::where(at::isfinite(top), top, at::zeros_like(top));  // all -inf: weights 0
  at::Tensor p = (s - top.unsqueeze(1)).exp_();  // the top token weighs 1
  p.masked_fill_(p < Upload(g.min_p, at::kFloat, dev).unsqueeze(1), 0.f);
  if (ordered) {
    at::Tensor pos = at::arange(W, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(0);
    at::Tensor k = Upload(g.top_k, at::kLong, dev);
    k = at::where(k > 0, k, at::full_like(k, W));
    p.masked_fill_(pos >= k.unsqueeze(1), 0.f);
    // top-p: keep the smallest prefix whose weight reaches top_p of the total, i.e. the
    // tokens whose weight before them is still below it.
    at::Tensor cum = p.cumsum(1);
    at::Tensor before = at::constant_pad_nd(cum.narrow(1, 0, W - 1), {1, 0}, 0);
    at::Tensor limit = Upload(g.top_p, at::kFloat, dev) * cum.select(1, W - 1);
    at::Tensor keep_all = Upload(g.top_p, at::kFloat, dev) >= 1.f;
    p.masked_fill_(at::logical_and(before >= limit.unsqueeze(1),
                                   at::logical_not(keep_all).unsqueeze(1)),
                   0.f);
  }
  at::Tensor cdf = p.cumsum(1);
  at::Tensor total = cdf.narrow(1, W - 1, 1).contiguous();
  at::Tensor target = Upload(g.u, at::kFloat, dev).unsqueeze(1) * total;
  // The first position whose cumulative weight passes the draw; never past the last token
  // with weight (rounding can put the draw at the total).
  at::Tensor pick = at::minimum(at::searchsorted(cdf, target, false, /*right=*/true),
                                at::searchsorted(cdf, total, false, /*right=*/false));
  pick = pick.clamp_max(W - 1);
  if (ordered) pick = ids.gather(1, pick);
  return pick.view({-1});
}

}  // namespace

void SetTopPKernel(bool enabled) { top_p_kernel.store(enabled, std::memory_order_relaxed); }

at::Tensor PenalisedLogits(const at::Tensor& logits,
                           const std::vector<const SamplingOptions*>& options,
                           const std::vector<const SamplerState*>& states) {
  const int64_t n = logits.size(0), V = logits.size(1);
  // Flat indices into the [n, V] logits: repeated ids with their penalty, then subtractions.
  std::vector<int64_t> rep_at, sub_at;
  std::vector<float> rep, sub;
  for (int64_t r = 0; r < n; ++r) {
    const SamplingOptions& o = *options[r];
    if (!o.penalised()) continue;
    PenaltyTerms t = CollectPenalties(o, *states[r], V);
    for (int32_t id : t.repeated) {
      rep_at.push_back(r * V + id);
      rep.push_back(o.repetition_penalty);
    }
    for (auto [id, amount] : t.subtract) {
      sub_at.push_back(r * V + id);
      sub.push_back(amount);
    }
  }
  if (rep_at.empty() && sub_at.empty()) return logits;
  const at::Device dev = logits.device();
  at::Tensor x = logits.contiguous().clone();
  at::Tensor flat = x.view({-1});
  if (!rep_at.empty()) {
    at::Tensor at_ = Upload(rep_at, at::kLong, dev);
    at::Tensor f = Upload(rep, at::kFloat, dev);
    at::Tensor v = flat.index_select(0, at_);
    flat.index_copy_(0, at_, at::where(v > 0, v / f, v * f));
  }
  if (!sub_at.empty()) {
    at::Tensor at_ = Upload(sub_at, at::kLong, dev);
    flat.index_copy_(0, at_, flat.index_select(0, at_) - Upload(sub, at::kFloat, dev));
  }
  return x;
}

at::Tensor ConstrainedLogits(const at::Tensor& logits,
                             const std::vector<const SamplerState*>& states, bool in_place) {
  static_assert(std::endian::native == std::endian::little,
                "the bitmask's words are read as bytes: token i is bit i % 8 of byte i / 8");
  const int64_t n = logits.size(0), V = logits.size(1), W = (V + 31) / 32;
  std::vector<int64_t> bias_at, mask_rows;
  std::vector<float> bias;
  std::vector<uint32_t> words;  // W per masked row
  for (int64_t r = 0; r < n; ++r) {
    const LogitsConstraint& c = states[r]->constraint;
    for (auto [id, amount] : c.bias) {
      if (id < 0 || id >= V) continue;
      bias_at.push_back(r * V + id);
      bias.push_back(amount);
    }
    if (c.allowed.empty()) continue;
    mask_rows.push_back(r);
    const size_t have = std::min<size_t>(c.allowed.size(), static_cast<size_t>(W));
    words.insert(words.end(), c.allowed.begin(), c.allowed.begin() + static_cast<long>(have));
    words.resize(words.size() + (static_cast<size_t>(W) - have), 0u);
  }
  if (bias_at.empty() && mask_rows.empty()) return logits;
  const at::Device dev = logits.device();
  at::Tensor x = in_place ? logits : logits.contiguous().clone();
  if (!bias_at.empty())
    x.view({-1}).index_add_(0, Upload(bias_at, at::kLong, dev), Upload(bias, at::kFloat, dev));
  if (!mask_rows.empty()) {
    const int64_t m = static_cast<int64_t>(mask_rows.size());
    at::Tensor host = at::from_blob(words.data(), {m, W * 4}, at::kByte);
    at::Tensor bytes;
    if (dev.is_cuda()) {
      bytes = UploadBeside(Pinned(host), dev);  // 19 KB a row
    } else {
      bytes = host.to(dev, at::kByte, /*non_blocking=*/false, /*copy=*/true);
    }
    const std::vector<uint8_t> bit = {1, 2, 4, 8, 16, 32, 64, 128};
    at::Tensor refused = bytes.unsqueeze(2).bitwise_and(Upload(bit, at::kByte, dev)).eq(0)
                             .view({m, W * 32}).narrow(1, 0, V);
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    if (m == n) {
      x.masked_fill_(refused, kNegInf);  // every row masked: no gather and scatter
    } else {
      at::Tensor rows = Upload(mask_rows, at::kLong, dev);
      x.index_copy_(0, rows, x.index_select(0, rows).masked_fill_(refused, kNegInf));
    }
  }
  return x;
}

std::vector<SampleResult> SampleBatchOnDevice(const at::Tensor& logits,
                                              const std::vector<const SamplingOptions*>& options,
                                              const std::vector<SamplerState*>& states) {
  const int64_t n = logits.size(0);
  std::vector<SampleResult> out(static_cast<size_t>(n));
  if (n == 0) return out;
  at::Tensor x = logits.scalar_type() == at::kFloat ? logits : logits.to(at::kFloat);
  bool penalised = false, constrained = false, sampled = false, greedy = false;
  std::vector<int64_t> lp_rows;
  int64_t max_top = 0;
  for (int64_t r = 0; r < n; ++r) {
    const SamplingOptions& o = *options[r];
    penalised |= o.penalised();
    constrained |= states[r]->constraint.active();
    sampled |= !o.greedy();
    greedy |= o.greedy();
    if (o.logprobs) {
      lp_rows.push_back(r);
      max_top = std::max<int64_t>(max_top, o.top_logprobs);
    }
  }
  at::Tensor tokens;
  if (!penalised && !constrained && !sampled && lp_rows.empty()) {
    tokens = x.argmax(1).to(at::kCPU);  // the fast path: greedy rows, first maximum
  } else {
    std::vector<const SamplerState*> cstates(states.begin(), states.end());
    at::Tensor pen = penalised ? PenalisedLogits(x, options, cstates) : x;
    // x stays the model's (log-probabilities): constrain in place only a penalised copy.
    if (constrained) pen = ConstrainedLogits(pen, cstates, /*in_place=*/!pen.is_same(x));
    // Greedy rows (the first maximum, as SampleBatch); sampled rows are overwritten.
    tokens = greedy ? pen.argmax(1)
                    : at::zeros({n}, at::TensorOptions().dtype(at::kLong).device(x.device()));
    Group groups[4];  // by Order
    for (int64_t r = 0; r < n; ++r) {
      const SamplingOptions& o = *options[r];
      if (o.greedy()) continue;
      // One draw per sampled row per step, as SampleBatch; below 1 also as a float.
      float u = std::min(static_cast<float>(UniformDraw(states[r]->rng)), 0x1.fffffep-1f);
      groups[static_cast<int>(OrderFor(o))].Add(r, o, u);
    }
    for (Order order : {Order::kById, Order::kTopK, Order::kTopP, Order::kSorted}) {
      const Group& g = groups[static_cast<int>(order)];
      if (g.rows.empty()) continue;
      tokens.index_copy_(0, Upload(g.rows, at::kLong, x.device()), SampleGroup(pen, g, order));
    }
    if (!lp_rows.empty()) {
      // Log-probabilities of the unpenalised model, packed with the ids into one float
      // tensor so that one copy brings everything back (ids < 2^24 are exact in float32).
      at::Tensor rows = Upload(lp_rows, at::kLong, x.device());
      at::Tensor lp = at::log_softmax(x.index_select(0, rows), 1);
      std::vector<at::Tensor> parts = {
          tokens.to(at::kFloat), lp.gather(1, tokens.index_select(0, rows).unsqueeze(1)).view(-1)};
      max_top = std::min(max_top, x.size(1));
      if (max_top > 0) {
        auto [vals, ids] = lp.topk(max_top, 1);
        parts.push_back(vals.reshape(-1));
        parts.push_back(ids.to(at::kFloat).reshape(-1));
      }
      at::Tensor packed = at::cat(parts).to(at::kCPU);
      const float* p = packed.data_ptr<float>();
      const int64_t L = static_cast<int64_t>(lp_rows.size());
      for (int64_t r = 0; r < n; ++r) out[static_cast<size_t>(r)].token = static_cast<int32_t>(p[r]);
      const float* chosen = p + n;
      const float* top_v = chosen + L;
      const float* top_i = top_v + L * max_top;
      for (int64_t i = 0; i < L; ++i) {
        const int64_t r = lp_rows[static_cast<size_t>(i)];
        SampleResult& res = out[static_cast<size_t>(r)];
        res.logprob = chosen[i];
        const int64_t k = std::min<int64_t>(options[r]->top_logprobs, max_top);
        for (int64_t j = 0; j < k; ++j)
          res.top.emplace_back(static_cast<int32_t>(top_i[i * max_top + j]), top_v[i * max_top + j]);
      }
      tokens = at::Tensor();
    } else {
      tokens = tokens.to(at::kCPU);
    }
  }
  if (tokens.defined()) {
    const int64_t* t = tokens.data_ptr<int64_t>();
    for (int64_t r = 0; r < n; ++r) out[static_cast<size_t>(r)].token = static_cast<int32_t>(t[r]);
  }
  for (int64_t r = 0; r < n; ++r) {
    // Every allowed logit -inf: still an allowed token (as SampleBatch).
    int32_t& tok = out[static_cast<size_t>(r)].token;
    const LogitsConstraint& c = states[r]->constraint;
    if (!c.Allows(tok)) {
      if (int32_t first = FirstAllowed(c, logits.size(1)); first >= 0) tok = first;
    }
    states[r]->output.push_back(tok);
  }
  return out;
}

}  // namespace r1::engine
