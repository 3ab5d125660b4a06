// Qwen2Model's weights, shared by the CPU path (qwen2.cc) and the CUDA path (qwen2_cuda.cc).
// Internal to worker/model.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "worker/model/qwen2.h"
#include "worker/model/safetensors.h"

namespace r1::model {

struct Qwen2Model::Layer {
  at::Tensor input_norm;  // [H]
  at::Tensor wqkv;        // [(heads + 2 kv_heads) * head_dim, H]: q, k, v stacked
  at::Tensor bqkv;        // [(heads + 2 kv_heads) * head_dim]
  at::Tensor wo;          // [H, heads * head_dim]
  at::Tensor post_norm;   // [H]
  at::Tensor wgate;       // [I, H]
  at::Tensor wup;         // [I, H]
  at::Tensor wdown;       // [H, I]
  at::Tensor wgate_up;    // off the CPU: [2 I, H], gate and up stacked (wgate, wup view it)
};

struct Qwen2Model::Weights {
  std::unique_ptr<Checkpoint> checkpoint;  // the mapping that aliased tensors view
  at::Tensor embed;                        // [V, H]
  std::vector<Layer> layers;
  at::Tensor norm;      // [H]
  at::Tensor lm_head;   // [V, H] (the embedding when tied)
  at::Tensor inv_freq;  // [head_dim / 2], float32
};

// Qwen2RMSNorm (qwen2.cc): in float32, then back to the input dtype, then times the weight.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w, double eps);

}  // namespace r1::model
