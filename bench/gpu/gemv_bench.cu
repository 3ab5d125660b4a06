// The linear layers of a decode step, one kernel at a time: r1serve's GEMV (worker/model/cuda)
// for each weight of the 1.5B distill at 1-8 rows, in bf16, FP8 and int4, against the read
// bandwidth measured in the same run and against cuBLAS (16-bit). Every launch reads weights
// that are not in L2: a shape's launches cycle over enough copies of its weights to pass 1 GB,
// replayed as one CUDA graph (with programmatic dependent launch, as the model's graphs run).
// Then the GEMV part of a whole batch-1 step: 28 layers of qkv, o, gate/up and down with their
// own weights, and the lm_head.
//
// Build and run on the GPU machine (nvcc alone, no libtorch):
//   nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -I. bench/gpu/gemv_bench.cu \
//     worker/model/cuda/kernels.cu -lcublas -lcublasLt -o /tmp/gemv_bench && /tmp/gemv_bench [--rows 1,2,4,8]
// Output: one line per (format, shape, rows): median microseconds a launch, GB/s of weight bytes,
// and that rate over the measured read bandwidth.
#ifndef GEMV_BENCH_NO_CUBLAS
#include <cublasLt.h>
#include <cublas_v2.h>
#endif
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/gpu/device_bench.cuh"
#include "worker/model/cuda/kernels.h"

namespace {

using r1::model::cuda::DType;
using r1::model::cuda::Gemv;
using r1::model::cuda::GemvArgs;
using r1::model::cuda::GemvOut;


enum class Fmt { kBf16, kFp8, kInt4 };
const char* Name(Fmt f) { return f == Fmt::kBf16 ? "bf16" : f == Fmt::kFp8 ? "fp8" : "int4"; }

struct Shape {
  const char* name;
  int64_t N;  // outputs (gate/up: N each, 2 N rows of W)
  int K;
  GemvOut mode;
  bool norm, bias;
};
// DeepSeek-R1-Distill-Qwen-1.5B: hidden 1536, 12 + 2 + 2 heads of 128, intermediate 8960.
const Shape kQkv{"qkv", 2048, 1536, GemvOut::kStore, true, true};
const Shape kO{"o", 1536, 1536, GemvOut::kResidual, false, false};
const Shape kGateUp{"gate_up", 8960, 1536, GemvOut::kSiluMul, true, false};
const Shape kDown{"down", 1536, 8960, GemvOut::kResidual, false, false};
const Shape kLmHead{"lm_head", 151936, 1536, GemvOut::kStoreF32, true, false};

int64_t WRows(const Shape& s) { return s.mode == GemvOut::kSiluMul ? 2 * s.N : s.N; }

// One copy of a shape's weights in a format: the bytes a launch reads, and the pointers.
struct Weights {
  void* w = nullptr;
  float* scale = nullptr;  // FP8 row scales, or int4 group scales
  uint8_t* zero = nullptr;  // int4 zero points
  size_t bytes = 0;
};

Weights MakeWeights(const Shape& s, Fmt f) {
  Weights w;
  const int64_t rows = WRows(s);
  size_t wb = f == Fmt::kBf16 ? rows * s.K * 2 : f == Fmt::kFp8 ? rows * s.K : rows * s.K / 2;
  BENCH_CHECK(cudaMalloc(&w.w, wb));
  // 0x3c: bf16 pairs of 0.0115, e4m3 1.5, int4 nibbles 12 and 3. The values do not change the time.
  BENCH_CHECK(cudaMemset(w.w, 0x3c, wb));
  w.bytes = wb;
  if (f == Fmt::kFp8) {
    BENCH_CHECK(cudaMalloc(&w.scale, rows * 4));
    BENCH_CHECK(cudaMemset(w.scale, 0, rows * 4));
    w.bytes += rows * 4;
  } else if (f == Fmt::kInt4) {
    const int64_t recs = rows * (s.K / 128);
    BENCH_CHECK(cudaMalloc(&w.scale, recs * 4));
    BENCH_CHECK(cudaMalloc(&w.zero, recs));
    BENCH_CHECK(cudaMemset(w.scale, 0, recs * 4));
    BENCH_CHECK(cudaMemset(w.zero, 8, recs));
    w.bytes += recs * 5;
  }
  return w;
}

void Free(Weights& w) {
  cudaFree(w.w);
  cudaFree(w.scale);
  cudaFree(w.zero);
}

// Activations for M rows: x (and the norm weight and bias) in bf16, y big enough for any shape.
struct Acts {
  void* x;
  void* norm_w;
  void* bias;
  void* y;
};

GemvArgs ArgsFor(const Shape& s, Fmt f, const Weights& w, const Acts& a, int M) {
  GemvArgs g;
  g.dt = DType::kBF16;
  g.x = a.x;
  g.ldx = s.K;
  g.M = M;
  g.K = s.K;
  g.norm_w = s.norm ? a.norm_w : nullptr;
  g.w = w.w;
  g.N = s.N;
  g.bias = s.bias ? a.bias : nullptr;
  g.y = a.y;
  g.ldy = s.N;
  g.mode = s.mode;
  if (f == Fmt::kFp8) g.w_scale = w.scale;
  if (f == Fmt::kInt4) {
    g.int4_scale = w.scale;
    g.int4_zero = w.zero;
  }
  return g;
}

using bench::ParseList;
using bench::TimeGraph;

#ifndef GEMV_BENCH_NO_CUBLAS
// cuBLASLt's heuristic candidates (up to 8) for y = x W^T at M rows, each timed over the copies:
// what choosing among them at startup would give against cublasGemmEx's default.
void LtSweep(cublasLtHandle_t lt, void* ws, size_t ws_bytes, const Shape& s, const std::vector<Weights>& copies,
             const Acts& acts, int M, cudaStream_t st, int reps, double read_gbs) {
  const int n = static_cast<int>(WRows(s));
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulPreference_t pref;
  cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
  cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, s.K, n, s.K);
  cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, s.K, M, s.K);
  cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, n, M, n);
  cublasLtMatmulPreferenceCreate(&pref);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof(ws_bytes));
  cublasLtMatmulHeuristicResult_t res[8];
  int found = 0;
  cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 8, res, &found);
  const float one = 1.f, zero = 0.f;
  double first = 0, best = 1e30;
  int best_i = -1;
  for (int i = 0; i < found; ++i) {
    cublasStatus_t bs = CUBLAS_STATUS_SUCCESS;
    const float ms = TimeGraph(st, reps, [&] {
      for (const Weights& w : copies)
        bs = cublasLtMatmul(lt, op, &one, w.w, la, acts.x, lb, &zero, acts.y, lc, acts.y, lc, &res[i].algo, ws,
                            ws_bytes, st);
    });
    if (bs != CUBLAS_STATUS_SUCCESS) continue;
    const double us = ms * 1e3 / copies.size();
    if (i == 0) first = us;
    if (us < best) best = us, best_i = i;
  }
  const size_t bytes = copies[0].bytes;
  std::printf("LT shape=%s N=%d K=%d M=%d candidates=%d first_us=%.2f best_us=%.2f best=%d GBps=%.0f of_read=%.2f\n",
              s.name, n, s.K, M, found, first, best, best_i, bytes / (best * 1e-6) / 1e9,
              bytes / (best * 1e-6) / 1e9 / read_gbs);
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(op);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> rows = {1, 2, 4, 8};
  std::string only_fmt;
  bool cublas_peer = true;
  std::vector<int> lt_rows;  // --lt: cuBLASLt's candidates at these rows (bf16)
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--rows") && i + 1 < argc) {
      rows = ParseList(argv[++i]);
      for (int m : rows)
        if (m < 1 || m > 8) return std::fprintf(stderr, "--rows: rows in [1, 8] (the GEMV's)\n"), 2;
    } else if (!std::strcmp(argv[i], "--format") && i + 1 < argc) {
      only_fmt = argv[++i];
      for (size_t at = 0; at <= only_fmt.size();) {  // every name one of the formats
        const size_t end = std::min(only_fmt.find(',', at), only_fmt.size());
        const std::string name = only_fmt.substr(at, end - at);
        if (name != "bf16" && name != "fp8" && name != "int4")
          return std::fprintf(stderr, "--format: '%s' is not bf16, fp8 or int4\n", name.c_str()), 2;
        at = end + 1;
      }
    } else if (!std::strcmp(argv[i], "--lt") && i + 1 < argc) {
      lt_rows = ParseList(argv[++i]);
      for (int m : lt_rows)
        if (m < 1 || m > 256) return std::fprintf(stderr, "--lt: rows in [1, 256]\n"), 2;
    } else if (!std::strcmp(argv[i], "--no-cublas")) {
      cublas_peer = false;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--rows 1,2,4,8] [--format bf16,fp8,int4] [--no-cublas] [--lt 16,64,256]\n"
                   "Times r1serve's GEMV on the 1.5B distill's weight shapes against the read bandwidth.\n",
                   argv[0]);
      return std::strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  cudaStream_t st;
  BENCH_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  const int reps = 15;

  const double read_gbs = bench::ReadBandwidth(st, reps);

  Acts acts;
  const size_t max_rows = 256;  // --lt's rows at most
  BENCH_CHECK(cudaMalloc(&acts.x, max_rows * 8960 * 2));
  BENCH_CHECK(cudaMalloc(&acts.norm_w, 8960 * 2));
  BENCH_CHECK(cudaMalloc(&acts.bias, 8960 * 2));
  BENCH_CHECK(cudaMalloc(&acts.y, max_rows * 151936 * 4));
  for (void* p : {acts.x, acts.norm_w, acts.bias}) BENCH_CHECK(cudaMemset(p, 0x3c, p == acts.x ? max_rows * 8960 * 2 : 8960 * 2));
  BENCH_CHECK(cudaMemset(acts.y, 0, max_rows * 151936 * 4));

#ifndef GEMV_BENCH_NO_CUBLAS
  cublasHandle_t blas = nullptr;
  void* blas_ws = nullptr;
  if (cublas_peer) {
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) return std::fprintf(stderr, "cublasCreate failed\n"), 1;
    BENCH_CHECK(cudaMalloc(&blas_ws, 32 << 20));
    cublasSetStream(blas, st);
    cublasSetWorkspace(blas, blas_ws, 32 << 20);
  }
#else
  const void* blas = nullptr;  // built without cuBLAS: no peer lines
  (void)cublas_peer;
#endif

  const std::vector<Fmt> fmts = {Fmt::kBf16, Fmt::kFp8, Fmt::kInt4};
  for (Fmt f : fmts) {
    if (!only_fmt.empty() && ("," + only_fmt + ",").find(std::string(",") + Name(f) + ",") == std::string::npos)
      continue;
    for (const Shape* s : {&kQkv, &kO, &kGateUp, &kDown, &kLmHead}) {
      // Copies of the weights so that the launches of one replay read more than 1 GB.
      std::vector<Weights> copies;
      size_t total = 0;
      while (total < (size_t{1} << 30) || copies.size() < 2) {
        copies.push_back(MakeWeights(*s, f));
        total += copies.back().bytes;
      }
      const size_t bytes = copies[0].bytes;
      for (int M : rows) {
        int err = 0;
        const float ms = TimeGraph(st, reps, [&] {
          for (const Weights& w : copies) err |= Gemv(ArgsFor(*s, f, w, acts, M), st);
        });
        if (err) {
          std::printf("GEMV fmt=%s shape=%s M=%d error %d\n", Name(f), s->name, M, err);
          continue;
        }
        const double us = ms * 1e3 / copies.size();
        const double gbs = bytes / (us * 1e-6) / 1e9;
        std::printf("GEMV fmt=%s shape=%s N=%lld K=%d M=%d bytes=%zu us=%.2f GBps=%.0f of_read=%.2f\n", Name(f),
                    s->name, static_cast<long long>(WRows(*s)), s->K, M, bytes, us, gbs, gbs / read_gbs);
#ifndef GEMV_BENCH_NO_CUBLAS
        if (blas && f == Fmt::kBf16) {
          // The plain product y = x W^T (no norm or epilogue), as the model's cuBLAS path runs it
          // (column-major: y^T [N, M] = W [N, K] x^T [K, M]).
          const float one = 1.f, zero = 0.f;
          const int n = static_cast<int>(WRows(*s));
          cublasStatus_t bs = CUBLAS_STATUS_SUCCESS;
          const float bms = TimeGraph(st, reps, [&] {
            for (const Weights& w : copies)
              bs = cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, n, M, s->K, &one, w.w, CUDA_R_16BF, s->K, acts.x,
                                CUDA_R_16BF, s->K, &zero, acts.y, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT);
          });
          const double bus = bms * 1e3 / copies.size();
          std::printf("CUBLAS fmt=bf16 shape=%s N=%d K=%d M=%d bytes=%zu us=%.2f GBps=%.0f of_read=%.2f%s\n",
                      s->name, n, s->K, M, bytes, bus, bytes / (bus * 1e-6) / 1e9,
                      bytes / (bus * 1e-6) / 1e9 / read_gbs, bs == CUBLAS_STATUS_SUCCESS ? "" : " (error)");
        }
#else
        (void)blas;
#endif
      }
#ifndef GEMV_BENCH_NO_CUBLAS
      if (blas && f == Fmt::kBf16 && !lt_rows.empty()) {
        static cublasLtHandle_t lt = nullptr;
        if (lt == nullptr && cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) return std::fprintf(stderr, "cublasLtCreate failed\n"), 1;
        for (int M : lt_rows) LtSweep(lt, blas_ws, 32 << 20, *s, copies, acts, M, st, reps, read_gbs);
      }
#endif
      for (Weights& w : copies) Free(w);
    }

    // The GEMVs of a batch-1 step: 28 layers with their own weights, then the lm_head.
    std::vector<Weights> layer;
    size_t step_bytes = 0;
    for (int l = 0; l < 28; ++l)
      for (const Shape* s : {&kQkv, &kO, &kGateUp, &kDown}) {
        layer.push_back(MakeWeights(*s, f));
        step_bytes += layer.back().bytes;
      }
    Weights head = MakeWeights(kLmHead, Fmt::kBf16);  // the model keeps the lm_head in bf16
    step_bytes += head.bytes;
    for (int M : rows) {
      int err = 0;
      const float ms = TimeGraph(st, reps, [&] {
        size_t i = 0;
        for (int l = 0; l < 28; ++l)
          for (const Shape* s : {&kQkv, &kO, &kGateUp, &kDown}) err |= Gemv(ArgsFor(*s, f, layer[i++], acts, M), st);
        err |= Gemv(ArgsFor(kLmHead, Fmt::kBf16, head, acts, M), st);
      });
      const double gbs = step_bytes / (ms * 1e-3) / 1e9;
      std::printf("STEP fmt=%s M=%d bytes=%zu ms=%.3f GBps=%.0f of_read=%.2f%s\n", Name(f), M, step_bytes, ms, gbs,
                  gbs / read_gbs, err ? " (error)" : "");
    }
    for (Weights& w : layer) Free(w);
    Free(head);
  }
  return 0;
}
