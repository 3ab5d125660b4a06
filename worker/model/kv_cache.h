// The paged KV cache: K and V for every layer in fixed-size blocks, tensors of shape
// [num_blocks * block_size, num_key_value_heads, head_dim]. Position p of a sequence lives at
// row block_table[p / block_size] * block_size + p % block_size.
//
// In the model's dtype, or in FP8 (e4m3, one byte a value; CUDA kernels only): then each
// (slot, kv head) row of 128 values has a float scale in k_scale / v_scale
// ([slots, num_key_value_heads]), its largest magnitude / 448, so no value saturates. The FP8
// cache holds (D + 4) / (2 D) of the bytes: 0.52 for head_dim 128.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "worker/model/config.h"

namespace r1::model {

class KvCache {
 public:
  // dtype: the model's; fp8: store K/V as e4m3 with scales instead.
  KvCache(const ModelConfig& cfg, int64_t num_blocks, int64_t block_size, at::ScalarType dtype,
          at::Device device, bool fp8 = false);
  static int64_t BytesPerBlock(const ModelConfig& cfg, int64_t block_size, at::ScalarType dtype,
                               bool fp8 = false);

  int64_t num_blocks() const { return num_blocks_; }
  int64_t block_size() const { return block_size_; }
  at::ScalarType dtype() const { return dtype_; }  // the model's
  bool fp8() const { return fp8_; }
  at::Tensor& k(int64_t layer) { return k_[layer]; }
  at::Tensor& v(int64_t layer) { return v_[layer]; }
  at::Tensor& k_scale(int64_t layer) { return k_scale_[layer]; }  // FP8 only
  at::Tensor& v_scale(int64_t layer) { return v_scale_[layer]; }

 private:
  int64_t num_blocks_, block_size_;
  at::ScalarType dtype_;
  bool fp8_;
  std::vector<at::Tensor> k_, v_, k_scale_, v_scale_;
};

}  // namespace r1::model
