// The model's weights as a plain struct: loaded once (weights.cc) and read by both device paths
// (qwen2_eager.cc on the CPU and as the CUDA reference, qwen2_cuda.cc with our kernels).
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/model/config.h"
#include "worker/model/cpu_int4.h"
#include "worker/model/safetensors.h"

namespace r1::model {

struct LayerWeights {
  at::Tensor input_norm;  // [H]
  at::Tensor wqkv;        // [(heads + 2 kv_heads) * head_dim, H]: q, k, v stacked
  at::Tensor bqkv;        // [(heads + 2 kv_heads) * head_dim]; undefined without a q/k/v bias
  at::Tensor wo;          // [H, heads * head_dim]
  at::Tensor post_norm;   // [H]
  at::Tensor wgate;       // [I, H]
  at::Tensor wup;         // [I, H]
  at::Tensor wdown;       // [H, I]
  at::Tensor wgate_up;    // off the CPU: [2 I, H], gate and up stacked (wgate, wup view it)
  // Int8 weights (cpu_int8.h): the matrices above are int8 and these their float32 per-row
  // scales; undefined when the weights are floating point.
  at::Tensor sqkv, so, sgate, sup, sdown;
  // FP8 weights (CUDA, forward_path.h QuantizeWeightsFp8): wqkv, wo, wgate_up and wdown hold e4m3
  // bytes (kByte) and sqkv, so, sgate_up and sdown their float32 per-row scales; wgate and wup
  // are undefined.
  at::Tensor sgate_up;
  // Int4 weights (cpu_int4.h): set, and the matrices above undefined, when the layers are int4.
  // On CUDA (PrepareInt4Cuda) they hold the GEMV's layout (kernels.h), and gate and up are
  // stacked in gate_up4 (gate4 and up4 undefined).
  Int4Groups qkv4, o4, gate4, up4, down4, gate_up4;
};

struct ModelWeights {
  std::unique_ptr<Checkpoint> checkpoint;  // the mapping that aliased tensors view (CPU)
  at::Tensor embed;                        // [V, H]
  std::vector<LayerWeights> layers;
  at::Tensor norm;      // [H]
  at::Tensor lm_head;   // [V, H] (the embedding when tied, unless it is int8)
  // Set when lm_head is int8 (cpu_int8.h) or e4m3 (CUDA, QuantizeWeightsFp8): its float32
  // per-row scales [V]. A quantized lm_head is its own tensor even when the embeddings are tied
  // (lookups keep the floating table).
  at::Tensor lm_head_scale;
  // For the load log, when lm_head_scale is set: what it was quantized from.
  std::string lm_head_origin;
  at::Tensor inv_freq;  // [head_dim / 2], float32

  // Bytes of all weights held (a tied floating lm_head once).
  int64_t bytes(bool tied) const;
};

struct WeightLoadOptions {
  at::ScalarType dtype = at::kBFloat16;
  at::Device device{at::kCPU};
  // CPU: copy the weights into one huge-page arena instead of viewing the mapped file
  // (cpu_weights.h says when that pays).
  bool cpu_copy_weights = false;
  // The linear layers' weights as int8 with per-row scales (CPU): read as they are from an
  // int8 checkpoint, or quantized at load from a floating one. Embeddings, norms, biases and
  // lm_head stay in `dtype` unless int8_lm_head.
  bool int8 = false;
  // lm_head (or the tied embedding's copy for it) as int8 with per-row scales, quantized at
  // load from whatever the checkpoint holds (W8A8 checkpoints keep lm_head floating).
  bool int8_lm_head = false;
  // > 0: the linear layers' weights as int4 in groups of this many columns (CPU): converted
  // from an AWQ checkpoint (whose own group size this must be), or quantized at load from a
  // floating one.
  int64_t int4_group = 0;
};

// Reads DIR's safetensors into the model's dtype and device. Errors name the file and tensor.
absl::StatusOr<std::unique_ptr<ModelWeights>> LoadWeights(const std::string& dir,
                                                          const ModelConfig& cfg,
                                                          const WeightLoadOptions& options);

// Random weights in the config's shapes, drawn on options.device (normal with standard deviation
// `init_std`, norms 1, seeded): for benchmarking shapes whose checkpoint would not fit a disk
// (the 32B and 70B distills). Never for serving.
std::unique_ptr<ModelWeights> RandomWeights(const ModelConfig& cfg, const WeightLoadOptions& options,
                                            double init_std, uint64_t seed);

}  // namespace r1::model
