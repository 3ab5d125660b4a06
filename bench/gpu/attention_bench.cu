// Decode attention alone: r1serve's paged attention (worker/model/cuda, with its split merge) for
// the 1.5B distill's shape (12 query heads, 2 KV heads of 128, bf16, 16-token blocks) over 28
// layers' own caches, one launch per layer in a CUDA graph with programmatic dependent launch as
// the model's graphs run, so that no layer's keys come from L2. For each batch and context it
// times the model's split count (PagedAttentionSplits for the graph bucket's context) and the
// fixed counts asked for, and reports microseconds a layer and the KV bytes a layer reads over
// that time, against the read bandwidth measured in the same run.
//
// Build and run on the GPU machine (nvcc alone, no libtorch):
//   nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -I. bench/gpu/attention_bench.cu \
//     worker/model/cuda/kernels.cu -o /tmp/attention_bench && /tmp/attention_bench
//   [--batches 1,16,64] [--contexts 128,4096,16384,32768] [--splits 1,8,32,128] [--stages 2]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bench/gpu/device_bench.cuh"
#include "worker/model/cuda/kernels.h"

namespace {

using r1::model::cuda::DType;
using r1::model::cuda::kMaxAttentionSplits;
using r1::model::cuda::PagedAttention;
using r1::model::cuda::PagedAttentionArgs;
using bench::ParseList;
using bench::TimeGraph;


constexpr int kLayers = 28, kNh = 12, kKvh = 2, kD = 128, kBlock = 16;

// Small random bf16 values (keys and queries of unit scale), on the device.
__global__ void FillKernel(__nv_bfloat16* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = __float2bfloat16((static_cast<float>(h & 0xffff) / 65535.f - 0.5f) * 2.f);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> batches = {1, 16, 64}, contexts = {128, 4096, 16384, 32768}, splits = {1, 8, 32, 128};
  int stages = 2;
  for (int i = 1; i < argc; ++i) {
    auto list = [&](std::vector<int>* v) {
      if (i + 1 >= argc) return false;
      *v = ParseList(argv[++i]);
      return !v->empty();
    };
    bool ok = true;
    if (!std::strcmp(argv[i], "--batches")) {
      ok = list(&batches);
    } else if (!std::strcmp(argv[i], "--contexts")) {
      ok = list(&contexts);
    } else if (!std::strcmp(argv[i], "--splits")) {
      ok = list(&splits);
    } else if (!std::strcmp(argv[i], "--stages") && i + 1 < argc) {
      stages = std::atoi(argv[++i]);
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "usage: %s [--batches 1,16,64] [--contexts 128,4096,16384,32768] [--splits 1,8,32,128] "
                   "[--stages 2|3]\nTimes r1serve's decode attention (and its split merge) on the 1.5B "
                   "shape over 28 layers' caches.\n",
                   argv[0]);
      return std::strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  for (int s : splits)
    if (s < 1 || s > kMaxAttentionSplits) return std::fprintf(stderr, "--splits: 1 to %d\n", kMaxAttentionSplits), 2;
  for (int b : batches)
    if (b < 1 || b > 256) return std::fprintf(stderr, "--batches: 1 to 256\n"), 2;
  for (int c : contexts)
    if (c < 1 || c > 65536) return std::fprintf(stderr, "--contexts: 1 to 65536\n"), 2;
  cudaDeviceProp prop;
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t st;
  BENCH_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  const int reps = 15;

  const double read_gbs = bench::ReadBandwidth(st, reps);

  const int ld = (kNh + 2 * kKvh) * kD;
  for (int B : batches) {
    for (int ctx : contexts) {
      // Every sequence holds ctx keys, the query is its last; blocks laid out one sequence after
      // another in each layer's cache.
      const int64_t per_seq = (ctx + kBlock - 1) / kBlock, slots = B * per_seq * kBlock;
      const size_t cache_elems = static_cast<size_t>(slots) * kKvh * kD;
      std::vector<__nv_bfloat16*> kc(kLayers), vc(kLayers);
      bool fits = true;
      for (int l = 0; l < kLayers && fits; ++l) {
        fits = cudaMalloc(&kc[l], cache_elems * 2) == cudaSuccess && cudaMalloc(&vc[l], cache_elems * 2) == cudaSuccess;
        if (fits) {
          FillKernel<<<1024, 256, 0, st>>>(kc[l], cache_elems, 2 * l + 1);
          FillKernel<<<1024, 256, 0, st>>>(vc[l], cache_elems, 2 * l + 2);
        }
      }
      if (!fits) {
        cudaGetLastError();
        std::printf("ATTN B=%d context=%d does not fit\n", B, ctx);
        for (int l = 0; l < kLayers; ++l) cudaFree(kc[l]), cudaFree(vc[l]);
        continue;
      }
      // The graph bucket's context (next power of two >= the keys, at least 64) sets the tables'
      // width and the rule's split count, as in the model.
      int64_t bucket = 64;
      while (bucket < ctx) bucket *= 2;
      const int64_t width = bucket / kBlock;
      std::vector<int32_t> tables(static_cast<size_t>(B * width), 0), rows(B), lens(B, ctx), seq(B);
      for (int b = 0; b < B; ++b) {
        rows[b] = b;
        seq[b] = b;
        for (int64_t j = 0; j < per_seq; ++j) tables[b * width + j] = static_cast<int32_t>(b * per_seq + j);
      }
      int32_t *d_tables, *d_rows, *d_lens, *d_seq;
      __nv_bfloat16 *qkv, *out;
      float* partial;
      BENCH_CHECK(cudaMalloc(&d_tables, tables.size() * 4));
      BENCH_CHECK(cudaMalloc(&d_rows, B * 4));
      BENCH_CHECK(cudaMalloc(&d_lens, B * 4));
      BENCH_CHECK(cudaMalloc(&d_seq, B * 4));
      BENCH_CHECK(cudaMemcpy(d_tables, tables.data(), tables.size() * 4, cudaMemcpyHostToDevice));
      BENCH_CHECK(cudaMemcpy(d_rows, rows.data(), B * 4, cudaMemcpyHostToDevice));
      BENCH_CHECK(cudaMemcpy(d_lens, lens.data(), B * 4, cudaMemcpyHostToDevice));
      BENCH_CHECK(cudaMemcpy(d_seq, seq.data(), B * 4, cudaMemcpyHostToDevice));
      BENCH_CHECK(cudaMalloc(&qkv, static_cast<size_t>(B) * ld * 2));
      BENCH_CHECK(cudaMalloc(&out, static_cast<size_t>(B) * kNh * kD * 2));
      BENCH_CHECK(cudaMalloc(&partial, static_cast<size_t>(B) * kNh * kMaxAttentionSplits * (kD + 2) * 4));
      FillKernel<<<64, 256, 0, st>>>(qkv, static_cast<size_t>(B) * ld, 7);
      BENCH_CHECK(cudaStreamSynchronize(st));

      const int rule = r1::model::cuda::PagedAttentionSplits(B, kKvh, bucket, prop.multiProcessorCount);
      std::vector<int> counts = {rule};
      for (int s : splits)
        if (s != rule) counts.push_back(s);
      const double kv_bytes = static_cast<double>(B) * ctx * kKvh * kD * 2 * 2;  // K and V, one layer
      for (int S : counts) {
        PagedAttentionArgs a;
        a.dt = DType::kBF16;
        a.qkv = qkv;
        a.ld = ld;
        a.q_rows = d_rows;
        a.q_lens = d_lens;
        a.q_seq = d_seq;
        a.tables = d_tables;
        a.table_stride = width;
        a.block_size = kBlock;
        a.n_queries = B;
        a.nh = kNh;
        a.kvh = kKvh;
        a.D = kD;
        a.scale = 1.f / std::sqrt(static_cast<float>(kD));
        a.nsplit = S;
        a.stages = stages;
        a.partial = partial;
        a.out = out;
        a.out_ld = kNh * kD;
        int err = 0;
        const float ms = TimeGraph(st, reps, [&] {
          for (int l = 0; l < kLayers; ++l) {
            a.k_cache = kc[l];
            a.v_cache = vc[l];
            err |= PagedAttention(a, st);
          }
        });
        const double us = ms * 1e3 / kLayers, gbs = kv_bytes / (us * 1e-6) / 1e9;
        std::printf("ATTN B=%d context=%d bucket=%lld splits=%d%s stages=%d us_per_layer=%.2f kv_MB=%.2f GBps=%.0f "
                    "of_read=%.2f%s\n",
                    B, ctx, static_cast<long long>(bucket), S, S == rule ? " (rule)" : "", stages, us, kv_bytes / 1e6,
                    gbs, gbs / read_gbs, err ? " (launch error)" : "");
      }
      for (int l = 0; l < kLayers; ++l) cudaFree(kc[l]), cudaFree(vc[l]);
      cudaFree(d_tables), cudaFree(d_rows), cudaFree(d_lens), cudaFree(d_seq);
      cudaFree(qkv), cudaFree(out), cudaFree(partial);
    }
  }
  return 0;
}
