// CPU speed of the model on one checkpoint (make the real shape with
// `r1-mkmodel --preset r1-distill-qwen-1.5b --out DIR`). Prints, in one run:
//   - memory read bandwidth with all threads, and the batch-1 decode bound it implies:
//     (bytes of every weight but the embedding table) / bandwidth;
//   - per dtype (and for bf16, our AVX512-BF16 kernel and libtorch's at::linear side by side):
//     load time, prefill tok/s for one N-token prompt, batch-1 decode tok/s (medians), peak RSS.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "worker/model/cpu_gemm.h"
#include "worker/model/qwen2.h"

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Peak resident set since the last reset, in GB (VmHWM); reset by writing 5 to clear_refs.
double PeakRssGb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1e6;
  return 0;
}
void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }

// Read bandwidth: every thread sums its part of a 2 GiB buffer; best of several passes.
double ReadBandwidthGBs() {
  const size_t n = size_t{512} << 20;  // floats
  std::vector<float> buf(n, 1.0f);
  double best = 0;
  volatile float sink = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t = Clock::now();
    std::vector<float> partial(static_cast<size_t>(at::get_num_threads()) * 16, 0.f);
    at::parallel_for(0, static_cast<int64_t>(n / 64), 1 << 14, [&](int64_t b, int64_t e) {
      float s[16] = {0};
      for (int64_t i = b * 64; i < e * 64; i += 16)
        for (int j = 0; j < 16; ++j) s[j] += buf[static_cast<size_t>(i + j)];
      partial[static_cast<size_t>(at::get_thread_num()) * 16] += std::accumulate(s, s + 16, 0.f);
    });
    double dt = Since(t);
    sink = sink + std::accumulate(partial.begin(), partial.end(), 0.f);
    best = std::max(best, n * 4 / dt / 1e9);
  }
  return best;
}

struct Result {
  std::string label;
  double load_s, first_step_s, prefill_tok_s, decode_tok_s, batch_tok_s, peak_rss_gb;
};

// Aggregate decode tok/s of `b` sequences (16-token prompts) stepping together.
double BatchDecodeTokS(r1::model::Qwen2Model& model, int64_t b, int64_t steps) {
  const auto& cfg = model.config();
  const int64_t block = 16, per_seq = (16 + steps + block) / block + 1;
  r1::model::KvCache cache(cfg, b * per_seq, block, model.dtype(), at::kCPU);
  std::vector<r1::model::SequenceStep> seqs(static_cast<size_t>(b));
  r1::model::StepBatch prefill;
  for (int64_t i = 0; i < b; ++i) {
    auto& s = seqs[static_cast<size_t>(i)];
    for (int64_t k = 0; k < per_seq; ++k) s.block_table.push_back(static_cast<int32_t>(i * per_seq + k));
    s.num_new = 16;
    for (int64_t t = 0; t < 16; ++t) prefill.tokens.push_back(static_cast<int32_t>((i * 131 + t * 17) % 150000));
  }
  prefill.seqs = seqs;
  auto logits = model.Forward(prefill, cache);
  if (!logits.ok()) return 0;
  std::vector<double> times;
  for (int64_t step = 0; step < steps; ++step) {
    r1::model::StepBatch d;
    at::Tensor next = logits->argmax(-1);
    for (int64_t i = 0; i < b; ++i) {
      auto& s = seqs[static_cast<size_t>(i)];
      s.num_cached = 16 + step;
      s.num_new = 1;
      d.tokens.push_back(static_cast<int32_t>(next[i].item<int64_t>()));
    }
    d.seqs = seqs;
    auto t = Clock::now();
    logits = model.Forward(d, cache);
    times.push_back(Since(t));
    if (!logits.ok()) return 0;
  }
  return b / Median(times);
}

// Bytes of the checkpoint's files read from the page cache with read(), GB/s (the file is read
// once before, so it is cached).
double PageCacheReadGBs(const std::string& dir, double* total_gb) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
  std::vector<char> buf(size_t{8} << 20);
  double best = 0;
  for (int rep = 0; rep < 2; ++rep) {
    size_t bytes = 0;
    auto t = Clock::now();
    for (const std::string& f : files) {
      std::FILE* fp = std::fopen(f.c_str(), "rb");
      if (!fp) continue;
      for (size_t n; (n = std::fread(buf.data(), 1, buf.size(), fp)) > 0;) bytes += n;
      std::fclose(fp);
    }
    best = std::max(best, bytes / Since(t) / 1e9);
    *total_gb = bytes / 1e9;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("cpu_model_bench", "CPU prefill/decode speed, bandwidth bound and memory of one checkpoint.");
  std::string* model_dir = flags.String("model", "", "checkpoint directory (required)");
  std::string* dtypes = flags.String("dtypes", "bfloat16,float32", "dtypes to measure, comma-separated");
  bool* compare = flags.Bool("compare-kernel", true, "for bf16, also measure our AVX512-BF16 kernel");
  int64_t* threads = flags.Int("threads", 0, "threads; 0: one per core");
  int64_t* prefill_tokens = flags.Int("prefill-tokens", 512, "prompt length for the prefill figure");
  int64_t* prefill_reps = flags.Int("prefill-reps", 3, "prefill runs (median)");
  int64_t* decode_steps = flags.Int("decode-steps", 24, "decode steps (median step time)");
  int64_t* batch = flags.Int("decode-batch", 16, "also decode this many sequences at once (0: skip)");
  flags.ParseOrExit(argc, argv);
  if (model_dir->empty()) flags.Fail("--model is required");
  int nthreads = *threads > 0 ? static_cast<int>(*threads) : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(nthreads);

  double bw = ReadBandwidthGBs();
  std::printf("threads %d; AVX512-BF16 kernel available: %s\n", nthreads,
              r1::model::CpuGemmAvailable() ? "yes" : "no");
  std::printf("memory read bandwidth (all threads, best of 5): %.1f GB/s\n", bw);
  std::fflush(stdout);

  double ckpt_gb = 0, cache_gbs = PageCacheReadGBs(*model_dir, &ckpt_gb);
  std::printf("checkpoint %.2f GB; read from the page cache at %.1f GB/s (%.2f s)\n", ckpt_gb,
              cache_gbs, ckpt_gb / cache_gbs);
  std::fflush(stdout);
  std::vector<Result> results;
  double bound_tok_s = 0, weights_gb = 0;
  for (const std::string& dtype : r1::SplitCommaList(*dtypes)) {
    // libtorch's linear (the default), and for bf16 our kernel beside it.
    std::vector<bool> kernels = {false};
    if (dtype == "bfloat16" && *compare) kernels.push_back(true);
    for (bool use_kernel : kernels) {
      ResetPeakRss();
      auto t0 = Clock::now();
      r1::model::LoadOptions lo{"cpu", dtype, nthreads, use_kernel};
      auto m = r1::model::Qwen2Model::Load(*model_dir, lo);
      if (!m.ok()) flags.Fail(std::string(m.status().message()));
      double load_s = Since(t0);
      auto& model = **m;
      const auto& cfg = model.config();
      int64_t embed_bytes = cfg.vocab_size * cfg.hidden_size * static_cast<int64_t>(c10::elementSize(model.dtype()));
      if (dtype == "bfloat16") {
        weights_gb = (model.weight_bytes() - embed_bytes) / 1e9;
        bound_tok_s = bw / weights_gb;
      }
      const int64_t P = *prefill_tokens, block = 16;
      r1::model::KvCache cache(cfg, (P + *decode_steps + 2 * block) / block + 1, block, model.dtype(), at::kCPU);
      r1::model::SequenceStep s;
      for (int64_t b = 0; b < cache.num_blocks(); ++b) s.block_table.push_back(static_cast<int32_t>(b));
      auto step = [&](std::vector<int32_t> toks, int64_t cached) {
        r1::model::StepBatch batch;
        s.num_cached = cached;
        s.num_new = static_cast<int64_t>(toks.size());
        batch.tokens = std::move(toks);
        batch.seqs = {s};
        auto r = model.Forward(batch, cache);
        if (!r.ok()) flags.Fail(std::string(r.status().message()));
        return r->argmax(-1)[0].item<int64_t>();
      };
      std::vector<int32_t> prompt(static_cast<size_t>(P));
      for (int64_t i = 0; i < P; ++i) prompt[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919) % 150000);
      auto t_first = Clock::now();
      step({1, 2, 3, 4}, 0);  // the first step touches every weight page
      double first_step_s = Since(t_first);
      std::vector<double> prefill;
      int64_t next = 0;
      for (int64_t r = 0; r < *prefill_reps; ++r) {
        auto t = Clock::now();
        next = step(prompt, 0);
        prefill.push_back(Since(t));
      }
      std::vector<double> decode;
      int64_t pos = P;
      for (int64_t i = 0; i < *decode_steps; ++i) {
        auto t = Clock::now();
        next = step({static_cast<int32_t>(next)}, pos++);
        decode.push_back(Since(t));
      }
      double batch_tok_s = *batch > 0 ? BatchDecodeTokS(model, *batch, std::max<int64_t>(4, *decode_steps / 3)) : 0;
      std::string label = dtype + (dtype == "bfloat16" ? (use_kernel ? " (r1 kernel)" : " (libtorch linear)") : "");
      results.push_back({label, load_s, first_step_s, P / Median(prefill), 1.0 / Median(decode),
                         batch_tok_s, PeakRssGb()});
      const Result& res = results.back();
      std::printf("%-26s load %.2f s + first step %.2f s | prefill %ld tokens: %.1f tok/s | "
                  "decode batch 1: %.2f tok/s | decode batch %ld: %.1f tok/s | peak RSS %.2f GB\n",
                  res.label.c_str(), res.load_s, res.first_step_s, P, res.prefill_tok_s,
                  res.decode_tok_s, *batch, res.batch_tok_s, res.peak_rss_gb);
      std::fflush(stdout);
    }
  }
  if (bound_tok_s > 0) {
    std::printf("batch-1 bound: %.2f GB of weights (all but the embedding) / %.1f GB/s = %.2f tok/s\n",
                weights_gb, bw, bound_tok_s);
    for (const Result& r : results)
      if (r.label.rfind("bfloat16", 0) == 0)
        std::printf("%-26s decode at %.0f%% of the bound\n", r.label.c_str(), 100 * r.decode_tok_s / bound_tok_s);
  }
  return 0;
}
