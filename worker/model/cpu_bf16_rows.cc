#include "worker/model/cpu_bf16_rows.h"

#include <c10/util/BFloat16.h>

#include <cmath>
#include <cstdint>

namespace r1::model {
namespace {

using Bf16 = c10::BFloat16;

// float -> bf16 -> float: the value a bf16 op's result holds (round to nearest even).
inline float R(float v) { return static_cast<float>(Bf16(v)); }

}  // namespace

bool RmsNormBf16Applies(const at::Tensor& x, const at::Tensor& w) {
  return x.device().is_cpu() && w.device().is_cpu() && x.scalar_type() == at::kBFloat16 &&
         w.scalar_type() == at::kBFloat16 && x.dim() == 2 && x.stride(1) == 1 && w.dim() == 1 &&
         w.is_contiguous() && w.size(0) == x.size(1);
}

at::Tensor RmsNormBf16(const at::Tensor& x, const at::Tensor& w, double eps) {
  const int64_t T = x.size(0), H = x.size(1);
  at::Tensor out = at::empty({T, H}, x.options());
  const Bf16* wp = w.data_ptr<Bf16>();
  Bf16* op = out.data_ptr<Bf16>();
  for (int64_t t = 0; t < T; ++t) {
    const Bf16* xp = x.data_ptr<Bf16>() + t * x.stride(0);
    // Sixteen lane sums, then the lanes: about the order of ATen's vectorised sum.
    float lane[16] = {0};
    int64_t h = 0;
    for (; h + 16 <= H; h += 16)
      for (int j = 0; j < 16; ++j) {
        const float v = static_cast<float>(xp[h + j]);
        lane[j] += v * v;
      }
    float ss = 0;
    for (; h < H; ++h) ss += static_cast<float>(xp[h]) * static_cast<float>(xp[h]);
    for (float l : lane) ss += l;
    // var + eps in float (the double eps meets a float tensor), then rsqrt.
    const float inv = 1.f / std::sqrt(ss / static_cast<float>(H) + static_cast<float>(eps));
    Bf16* o = op + t * H;
    for (int64_t k = 0; k < H; ++k) o[k] = Bf16(static_cast<float>(wp[k]) * R(static_cast<float>(xp[k]) * inv));
  }
  return out;
}

bool RopeBf16Applies(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (!(x.device().is_cpu() && x.scalar_type() == at::kBFloat16 && x.dim() == 3 && x.stride(2) == 1 &&
        x.size(2) % 2 == 0))
    return false;
  for (const at::Tensor* c : {&cos, &sin})
    if (!(c->device().is_cpu() && c->scalar_type() == at::kBFloat16 && c->is_contiguous() && c->dim() == 3 &&
          c->size(0) == x.size(0) && c->size(1) == 1 && c->size(2) == x.size(2) / 2))
      return false;
  return true;
}

at::Tensor RopeBf16(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t T = x.size(0), heads = x.size(1), D = x.size(2), half = D / 2;
  at::Tensor out = at::empty({T, heads, D}, x.options());
  const Bf16* cp = cos.data_ptr<Bf16>();
  const Bf16* sp = sin.data_ptr<Bf16>();
  Bf16* op = out.data_ptr<Bf16>();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t hd = 0; hd < heads; ++hd) {
      const Bf16* xp = x.data_ptr<Bf16>() + t * x.stride(0) + hd * x.stride(1);
      const Bf16* c = cp + t * half;
      const Bf16* s = sp + t * half;
      Bf16* o = op + (t * heads + hd) * D;
      for (int64_t i = 0; i < half; ++i) {
        const float x1 = static_cast<float>(xp[i]), x2 = static_cast<float>(xp[half + i]);
        const float ci = static_cast<float>(c[i]), si = static_cast<float>(s[i]);
        o[i] = Bf16(R(x1 * ci) - R(x2 * si));
        o[half + i] = Bf16(R(x2 * ci) + R(x1 * si));
      }
    }
  return out;
}

}  // namespace r1::model
