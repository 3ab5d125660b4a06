#include "worker/model/rope.h"

#include <cmath>

namespace r1::model {
namespace {

// Python's `scalar / t` is t.reciprocal() * scalar (torch.Tensor.__rtruediv__): written the
// same way here, since x / y and y⁻¹ · x can differ in the last bit.
at::Tensor ScalarOver(double scalar, const at::Tensor& t) { return t.reciprocal() * scalar; }

at::Tensor DefaultInvFreq(double theta, int64_t dim) {
  return ScalarOver(1.0, at::pow(theta, at::arange(0, dim, 2, at::kLong).to(at::kFloat) / dim));
}

at::Tensor Llama3InvFreq(const at::Tensor& inv_freq, const RopeScaling& r) {
  const double factor = r.factor, low = r.low_freq_factor, high = r.high_freq_factor;
  const double old_context_len = static_cast<double>(r.original_max_position_embeddings);
  const double low_freq_wavelen = old_context_len / low;
  const double high_freq_wavelen = old_context_len / high;
  at::Tensor wavelen = ScalarOver(2 * M_PI, inv_freq);
  // Wavelengths above the low-frequency one: divided by factor; below the high-frequency one:
  // unchanged; in between: interpolated with a smooth factor.
  at::Tensor inv_freq_llama = at::where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq);
  at::Tensor smooth_factor = (ScalarOver(old_context_len, wavelen) - low) / (high - low);
  at::Tensor smoothed = at::rsub(smooth_factor, 1) * inv_freq_llama / factor + smooth_factor * inv_freq_llama;
  at::Tensor is_medium = (wavelen < high_freq_wavelen).logical_not() * (wavelen > low_freq_wavelen).logical_not();
  return at::where(is_medium, smoothed, inv_freq_llama);
}

}  // namespace

at::Tensor RopeInvFreq(const ModelConfig& cfg) {
  at::Tensor inv_freq = DefaultInvFreq(cfg.rope_theta, cfg.head_dim());
  if (cfg.rope_scaling.type == "llama3") return Llama3InvFreq(inv_freq, cfg.rope_scaling);
  return inv_freq;
}

}  // namespace r1::model
