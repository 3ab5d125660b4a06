#include "worker/model/int4_layout.h"

namespace r1::model {

bool Int4LayoutShapeOk(int64_t n, int64_t k, int64_t group) {
  return n > 0 && k > 0 && n % 8 == 0 && k % 256 == 0 && group == 128;
}

Int4Groups ToInt4GemvLayout(const Int4Groups& w) {
  const int64_t N = w.q.size(0), K = w.k, S = K / 256;
  TORCH_CHECK(Int4LayoutShapeOk(N, K, w.group), "the CUDA int4 layout takes K a multiple of 256, N of 8 and ",
              "groups of 128; got ", N, " x ", K, " in groups of ", w.group);
  // Column 256 s + 16 j + 4 c + e with j = 8 l + 2 w + h: [N, s, l, w, h, c, e].
  at::Tensor q = UnpackInt4(w.q, K).view({N, S, 2, 4, 2, 4, 4});
  // Lane c's load l, word w: its eight values r = 4 h + e, as [N, s, l, c, w, r].
  q = q.permute({0, 1, 2, 5, 3, 4, 6}).reshape({N, S, 2, 4, 4, 8});
  // Nibble i of the word holds r = 2 (i % 4) + i / 4.
  const at::Tensor order = at::tensor({0, 2, 4, 6, 1, 3, 5, 7}, at::TensorOptions().dtype(at::kLong).device(q.device()));
  at::Tensor nib = q.index_select(5, order).view({N, S, 2, 4, 4, 4, 2});
  at::Tensor bytes = nib.select(6, 0).bitwise_or(nib.select(6, 1).mul(16));  // byte b: nibbles 2 b, 2 b + 1
  auto records = [&](const at::Tensor& t) {  // [N, 2 S] -> [N / 8, S, 8, 2]
    return t.narrow(1, 0, 2 * S).reshape({N / 8, 8, S, 2}).permute({0, 2, 1, 3}).contiguous();
  };
  return Int4Groups{bytes.reshape({N, K / 2}).contiguous(), records(w.scale.to(at::kFloat)), records(w.zero), K,
                    w.group};
}

}  // namespace r1::model
