// Helpers of the standalone CUDA benches (gemv_bench.cu, attention_bench.cu): error checks, a
// CUDA graph timer, the read bandwidth they compare against, and list flags. nvcc only.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define BENCH_CHECK(x)                                                                        \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

namespace bench {

// Reads n 16-byte words once, eight loads in flight per thread.
__global__ void ReadKernel(const uint4* __restrict__ p, size_t n, unsigned* out) {
  unsigned acc = 0;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  for (; i + 7 * stride < n; i += 8 * stride) {
    uint4 v[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) v[u] = __ldcs(p + i + u * stride);
#pragma unroll
    for (int u = 0; u < 8; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n; i += stride) acc ^= p[i].x;
  if (acc == 0x9e3779b9u) *out = acc;  // never, in practice; keeps the loads
}

// The median milliseconds of `reps` replays of the CUDA graph that `launches` records on st.
template <typename F>
float TimeGraph(cudaStream_t st, int reps, F&& launches) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  BENCH_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  launches();
  BENCH_CHECK(cudaStreamEndCapture(st, &graph));
  BENCH_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t e0, e1;
  BENCH_CHECK(cudaEventCreate(&e0));
  BENCH_CHECK(cudaEventCreate(&e1));
  for (int i = 0; i < 3; ++i) BENCH_CHECK(cudaGraphLaunch(exec, st));
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    BENCH_CHECK(cudaEventRecord(e0, st));
    BENCH_CHECK(cudaGraphLaunch(exec, st));
    BENCH_CHECK(cudaEventRecord(e1, st));
    BENCH_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    BENCH_CHECK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// GB/s of reading 2 GiB once (the median of `reps`); prints the device and the READ line.
inline double ReadBandwidth(cudaStream_t st, int reps) {
  cudaDeviceProp prop;
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  const size_t bytes = size_t{2} << 30;
  uint4* buf;
  unsigned* sink;
  BENCH_CHECK(cudaMalloc(&buf, bytes));
  BENCH_CHECK(cudaMalloc(&sink, 4));
  BENCH_CHECK(cudaMemset(buf, 1, bytes));
  const float ms =
      TimeGraph(st, reps, [&] { ReadKernel<<<prop.multiProcessorCount * 4, 512, 0, st>>>(buf, bytes / 16, sink); });
  const double gbs = bytes / (ms * 1e-3) / 1e9;
  std::printf("device %s, %d SMs, L2 %d MiB\nREAD bytes=%zu ms=%.3f GBps=%.0f\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20, bytes, ms, gbs);
  BENCH_CHECK(cudaFree(buf));
  BENCH_CHECK(cudaFree(sink));
  return gbs;
}

// "1,2,4" as integers.
inline std::vector<int> ParseList(const char* s) {
  std::vector<int> out;
  for (const char* p = s; *p;) {
    out.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return out;
}

}  // namespace bench
