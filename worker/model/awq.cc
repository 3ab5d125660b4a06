#include "worker/model/awq.h"

namespace r1::model {
namespace {

// The bit offset of column j's nibble, for columns 0-7 of each int32.
at::Tensor ColumnShifts() {
  std::vector<int64_t> s(8);
  for (int j = 0; j < 8; ++j) s[j] = 4 * kAwqNibbleOfColumn[j];
  return at::tensor(s, at::kLong);
}

}  // namespace

at::Tensor UnpackAwqColumns(const at::Tensor& packed) {
  TORCH_CHECK(packed.dim() == 2 && packed.scalar_type() == at::kInt, "UnpackAwqColumns: int32 [R, C], got ",
              packed.sizes(), " ", packed.scalar_type());
  at::Tensor v = packed.to(at::kLong).unsqueeze(-1).bitwise_right_shift(ColumnShifts()).bitwise_and(15);
  return v.reshape({packed.size(0), -1}).to(at::kByte);
}

at::Tensor PackAwqColumns(const at::Tensor& q) {
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == at::kByte && q.size(1) % 8 == 0,
              "PackAwqColumns: uint8 [R, 8 C], got ", q.sizes(), " ", q.scalar_type());
  at::Tensor v = q.to(at::kLong).view({q.size(0), -1, 8}).bitwise_left_shift(ColumnShifts()).sum(-1);
  // Bit 31 set: the int32 is negative (two's complement), as AutoAWQ's int32 tensors hold it.
  return at::where(v >= (int64_t{1} << 31), v - (int64_t{1} << 32), v).to(at::kInt);
}

Int4Groups Int4FromAwq(const at::Tensor& qweight, const at::Tensor& qzeros, const at::Tensor& scales,
                       int64_t group) {
  const int64_t K = qweight.size(0), N = qweight.size(1) * 8, G = Int4NumGroups(K, group);
  TORCH_CHECK(K % group == 0 && qzeros.size(0) == K / group && scales.size(0) == K / group &&
                  scales.size(1) == N && qzeros.size(1) * 8 == N,
              "Int4FromAwq: qweight ", qweight.sizes(), ", qzeros ", qzeros.sizes(), ", scales ",
              scales.sizes(), ", group ", group);
  // Ours is row-major in W (one row per output channel); AWQ's is K-major. Groups the padding
  // adds past K (group 32 only) get scale 0 and zero 0.
  at::Tensor q = PackInt4(UnpackAwqColumns(qweight).t().contiguous());
  at::Tensor zero = at::constant_pad_nd(UnpackAwqColumns(qzeros).t(), {0, G - K / group}).contiguous();
  at::Tensor scale = at::constant_pad_nd(scales.to(at::kFloat).t(), {0, G - K / group}).contiguous();
  return {q, scale, zero, K, group};
}

AwqTensors AwqFromInt4(const Int4Groups& w) {
  const int64_t K = w.k, N = w.q.size(0);
  TORCH_CHECK(K % w.group == 0 && N % 8 == 0, "AwqFromInt4: K ", K, " is not a multiple of group ",
              w.group, " or N ", N, " of 8");
  const int64_t G = K / w.group;
  return {PackAwqColumns(UnpackInt4(w.q, K).t().contiguous()),
          PackAwqColumns(w.zero.narrow(1, 0, G).t().contiguous()),
          w.scale.narrow(1, 0, G).t().contiguous()};
}

}  // namespace r1::model
