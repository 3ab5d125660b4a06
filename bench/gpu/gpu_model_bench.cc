// GPU speed of the model on one checkpoint (make the 1.5B shape with
// `r1-mkmodel --preset r1-distill-qwen-1.5b --out DIR`). Prints, in one run:
//   - device-to-device copy bandwidth (a large torch copy, bytes read + written) and the batch-1
//     decode bound it implies: bytes read per decode step (every weight but the embedding table,
//     of which one row is read) / bandwidth;
//   - time to first token for each --prompt-lens prompt (one prefill step + argmax, synchronised
//     by reading the token on the host; median of --reps);
//   - decode tok/s at each --batch-sizes (each sequence with its own blocks, --context tokens
//     already cached; median step time over --decode-steps steps, argmax read on the host each
//     step as the engine does).
// Every figure line starts with "RESULT " so bench/gpu/run.sh can collect it.
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "common/flags.h"
#include "worker/model/qwen2.h"

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// Device copy bandwidth in GB/s (bytes read + bytes written), best of 10 copies of 1 GiB.
double CopyBandwidthGBs(at::Device dev) {
  auto opts = at::TensorOptions().dtype(at::kByte).device(dev);
  at::Tensor a = at::randint(0, 255, {int64_t{1} << 30}, opts), b = at::empty_like(a);
  b.copy_(a);
  (void)b[0].item<uint8_t>();
  double best = 0;
  for (int i = 0; i < 10; ++i) {
    auto t = Clock::now();
    b.copy_(a);
    (void)b[0].item<uint8_t>();  // synchronises
    best = std::max(best, 2.0 * static_cast<double>(a.numel()) / Since(t) / 1e9);
  }
  return best;
}

std::vector<int64_t> Ints(const r1::Flags& flags, const std::string& name, const std::string& v) {
  std::vector<int64_t> out;
  for (const std::string& s : r1::SplitCommaList(v)) {
    int64_t x;
    if (!absl::SimpleAtoi(s, &x) || x < 1) flags.Fail("--" + name + ": '" + s + "' is not a positive integer");
    out.push_back(x);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("gpu_model_bench", "GPU time to first token, decode tok/s and the batch-1 bound of one checkpoint.");
  std::string* model_dir = flags.String("model", "", "checkpoint directory (required)");
  std::string* device = flags.String("device", "cuda", "cuda | cuda:N | cpu");
  std::string* dtype = flags.String("dtype", "bfloat16", "bfloat16 | float16 | float32");
  std::string* prompt_lens = flags.String("prompt-lens", "128,2048", "prompt lengths for time to first token");
  std::string* batch_sizes = flags.String("batch-sizes", "1", "decode batch sizes");
  int64_t* context = flags.Int("context", 128, "tokens already cached per sequence when decoding starts");
  int64_t* reps = flags.Int("reps", 5, "prefill runs per prompt length (median)");
  int64_t* steps = flags.Int("decode-steps", 128, "decode steps per batch size (median step time)");
  bool* graphs = flags.Bool("cuda-graphs", true, "let the model replay CUDA graphs for decode steps");
  bool* kernels = flags.Bool("cuda-kernels", true,
                             "our fused CUDA kernels and paged attention (false: the plain ATen step)");
  std::string* label = flags.String("label", "r1serve", "name printed in the RESULT lines");
  flags.ParseOrExit(argc, argv);
  if (model_dir->empty()) flags.Fail("--model is required");
  std::vector<int64_t> plens = Ints(flags, "prompt-lens", *prompt_lens);
  std::vector<int64_t> bsizes = Ints(flags, "batch-sizes", *batch_sizes);
  if (*context < 1 || *reps < 1 || *steps < 1) flags.Fail("--context, --reps and --decode-steps must be >= 1");

  r1::model::LoadOptions lo;
  lo.device = *device;
  lo.dtype = *dtype;
  lo.cuda_graphs = *graphs;
  lo.cuda_kernels = *kernels;
  auto t0 = Clock::now();
  auto m = r1::model::Qwen2Model::Load(*model_dir, lo);
  if (!m.ok()) flags.Fail(std::string(m.status().message()));
  auto& model = **m;
  const auto& cfg = model.config();
  const at::Device dev = model.device();
  std::printf("RESULT %s load_s %.2f device %s dtype %s\n", label->c_str(), Since(t0), dev.str().c_str(),
              c10::toString(model.dtype()));

  double bw = CopyBandwidthGBs(dev);
  const int64_t elt = static_cast<int64_t>(c10::elementSize(model.dtype()));
  const int64_t embed = cfg.vocab_size * cfg.hidden_size * elt;
  const double step_gb = static_cast<double>(model.weight_bytes() - embed + cfg.hidden_size * elt) / 1e9;
  std::printf("RESULT %s copy_bandwidth_GBs %.0f bytes_per_step_GB %.3f batch1_bound_tok_s %.0f\n",
              label->c_str(), bw, step_gb, bw / step_gb);
  std::fflush(stdout);

  const int64_t block = 16;
  int64_t max_len = std::max<int64_t>(65, *context + *steps + 8);  // 65: the warm-up prompt
  for (int64_t p : plens) max_len = std::max(max_len, p + 1);
  const int64_t blocks_per_seq = (max_len + block - 1) / block;
  const int64_t max_b = *std::max_element(bsizes.begin(), bsizes.end());
  r1::model::KvCache cache(cfg, blocks_per_seq * max_b, block, model.dtype(), dev);
  auto seq_for = [&](int64_t i) {
    r1::model::SequenceStep s;
    for (int64_t b = 0; b < blocks_per_seq; ++b) s.block_table.push_back(static_cast<int32_t>(b * max_b + i));
    return s;
  };
  auto run = [&](const r1::model::StepBatch& b) {
    auto r = model.Forward(b, cache);
    if (!r.ok()) flags.Fail(std::string(r.status().message()));
    return r->argmax(-1).to(at::kCPU);  // the host sync the engine has each step
  };
  auto prompt = [&](int64_t n, int64_t salt) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + salt * 104729) % std::min<int64_t>(cfg.vocab_size, 150000));
    return v;
  };

  // Warm-up: cuBLAS handles, kernels' first launches.
  for (int i = 0; i < 2; ++i) {
    r1::model::StepBatch b;
    b.tokens = prompt(64, 0);
    b.seqs = {seq_for(0)};
    b.seqs[0].num_new = 64;
    run(b);
  }
  for (int64_t p : plens) {
    std::vector<double> t;
    for (int64_t r = 0; r < *reps + 1; ++r) {
      r1::model::StepBatch b;
      b.tokens = prompt(p, r);
      b.seqs = {seq_for(0)};
      b.seqs[0].num_new = p;
      auto s = Clock::now();
      run(b);
      if (r > 0) t.push_back(Since(s));
    }
    std::printf("RESULT %s ttft_ms prompt %ld median %.2f min %.2f\n", label->c_str(), p, 1e3 * Median(t),
                1e3 * *std::min_element(t.begin(), t.end()));
    std::fflush(stdout);
  }
  for (int64_t B : bsizes) {
    // Prefill every sequence's context, then decode B tokens per step.
    std::vector<r1::model::SequenceStep> seqs;
    for (int64_t i = 0; i < B; ++i) {
      r1::model::StepBatch b;
      b.tokens = prompt(*context, i);
      b.seqs = {seq_for(i)};
      b.seqs[0].num_new = *context;
      run(b);
      seqs.push_back(b.seqs[0]);
      seqs.back().num_cached = *context;
      seqs.back().num_new = 1;
    }
    std::vector<int32_t> next(static_cast<size_t>(B), 1);
    std::vector<double> t;
    for (int64_t st = 0; st < *steps + 3; ++st) {
      r1::model::StepBatch b;
      b.tokens = next;
      b.seqs = seqs;
      auto s = Clock::now();
      at::Tensor ids = run(b);
      if (st >= 3) t.push_back(Since(s));  // the first steps may capture graphs
      for (int64_t i = 0; i < B; ++i) {
        next[static_cast<size_t>(i)] = static_cast<int32_t>(ids[i].item<int64_t>());
        ++seqs[static_cast<size_t>(i)].num_cached;
      }
    }
    double med = Median(t);
    std::printf("RESULT %s decode batch %ld context %ld step_ms median %.3f p99 %.3f tok_s %.1f\n",
                label->c_str(), B, *context, 1e3 * med, 1e3 * Percentile(t, 0.99), B / med);
    std::fflush(stdout);
  }
  return 0;
}
