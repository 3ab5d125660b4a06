// CPU speed of the model on one checkpoint (make the real shape with
// `r1-mkmodel --preset r1-distill-qwen-1.5b --out DIR`). Prints, in one run:
//   - memory read bandwidth with all threads, and the batch-1 decode bound it implies:
//     (bytes of every weight but the embedding table) / bandwidth, against the run's best
//     bandwidth and, round by round, against the bandwidth read around that round's decode;
//   - per variant (a dtype and load options, e.g. "bfloat16+torch+copy"): load time, first
//     step, prefill tok/s for one N-token prompt, batch-1 and batch-B decode tok/s, RSS.
// With --decode-context C, decode runs after C tokens of context (a reasoning chain's length):
// the cache is filled with random K/V instead of a prefill of C tokens (the step's work is the
// same for any values), and the bound counts the KV bytes each step reads too. With
// --prefill-context C the prefill figure's prompt comes after C tokens of such a cache (a
// prompt chunk attending to a long conversation).
// The machine is shared: all variants are loaded first, then measured in alternating rounds
// (every variant once per round), and the figures are medians over all rounds, with the
// spread of the per-round medians beside them.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/median.h"
#include "bench/read_bandwidth.h"
#include "common/flags.h"
#include "worker/model/cpu_f32.h"
#include "worker/model/cpu_gemm.h"
#include "worker/model/cpu_int8.h"
#include "worker/model/cpu_parallel.h"
#include "worker/model/cpu_weights.h"
#include "worker/model/qwen2.h"

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
using r1::bench::Median;

// A /proc/self/status field in GB (VmHWM: peak resident set since the last reset; VmRSS).
double StatusGb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::stod(line.substr(std::strlen(field))) / 1e6;
  return 0;
}
void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
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

// The prompt decode starts after when there is no --decode-context.
constexpr int64_t kPromptTokens = 16;

// A batch of sequences with their own KV cache, stepping together.
struct Stream {
  r1::model::Qwen2Model* model;
  std::unique_ptr<r1::model::KvCache> cache;
  std::vector<r1::model::SequenceStep> seqs;
  std::vector<int32_t> next;

  Stream(r1::model::Qwen2Model& m, int64_t batch, int64_t max_len) : model(&m) {
    const int64_t block = 16, per_seq = (max_len + block - 1) / block + 1;
    cache = std::make_unique<r1::model::KvCache>(m.config(), batch * per_seq, block, m.dtype(), at::kCPU);
    seqs.resize(static_cast<size_t>(batch));
    for (int64_t i = 0; i < batch; ++i)
      for (int64_t k = 0; k < per_seq; ++k)
        seqs[static_cast<size_t>(i)].block_table.push_back(static_cast<int32_t>(i * per_seq + k));
  }
  size_t Vocab() const { return static_cast<size_t>(model->config().vocab_size); }
  // Before the decode steps: with `context` > 0 every sequence has that many tokens in the cache
  // already (random K/V: the same work for any values) and the next step feeds one token;
  // otherwise each prefills a kPromptTokens-token prompt.
  absl::Status Start(int64_t context) {
    if (context <= 0) return Step(kPromptTokens).status();
    RandomCache();
    next.assign(seqs.size(), 0);
    for (size_t i = 0; i < seqs.size(); ++i) {
      seqs[i].num_cached = context;
      seqs[i].num_new = 0;
      next[i] = static_cast<int32_t>((i * 7919 + 13) % Vocab());
    }
    return absl::OkStatus();
  }
  void RandomCache() {
    for (int64_t l = 0; l < model->config().num_hidden_layers; ++l) {
      cache->k(l).normal_();
      cache->v(l).normal_();
    }
  }
  // Every sequence feeds `prompt_len` tokens (when starting, after `cached` tokens already in
  // the cache) or its next token; returns seconds.
  absl::StatusOr<double> Step(int64_t prompt_len, int64_t cached = 0) {
    r1::model::StepBatch b;
    for (size_t i = 0; i < seqs.size(); ++i) {
      auto& s = seqs[i];
      s.num_cached += s.num_new;
      if (prompt_len > 0) {
        s.num_cached = cached;
        s.num_new = prompt_len;
        for (int64_t t = 0; t < prompt_len; ++t)
          b.tokens.push_back(static_cast<int32_t>((i * 131 + static_cast<size_t>(t) * 7919) % Vocab()));
      } else {
        s.num_new = 1;
        b.tokens.push_back(next[i]);
      }
    }
    b.seqs = seqs;
    auto t = Clock::now();
    auto logits = model->Forward(b, *cache);
    double dt = Since(t);
    if (!logits.ok()) return logits.status();
    at::Tensor ids = logits->argmax(-1);
    next.resize(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) next[i] = static_cast<int32_t>(ids[static_cast<int64_t>(i)].item<int64_t>());
    return dt;
  }
};

struct Variant {
  std::string label, dtype;
  r1::model::LoadOptions options;
  std::unique_ptr<r1::model::Qwen2Model> model;
  double load_s = 0, first_step_s = 0, rss_gb = 0;
  double weights_gb = 0;                             // all but the embedding: read every step
  double kv_gb = 0;                                  // KV bytes a batch-1 decode step reads
  std::vector<double> prefill, decode, batch;        // per-step seconds
  std::vector<double> decode_rounds, batch_rounds;   // per-round medians, tok/s
  std::vector<double> decode_bw;                     // per round: GB/s read around its decode
};

// "bfloat16+torch+copy": a dtype, then options (+kernel / +torch, +copy / +map, +int8 / +none)
// that override LoadOptions' defaults.
bool ParseVariant(const std::string& spec, int threads, Variant* v, std::string* err) {
  std::vector<std::string> parts = absl::StrSplit(spec, '+');
  v->label = spec;
  v->dtype = parts[0];
  v->options.device = "cpu";
  v->options.dtype = parts[0];
  v->options.num_threads = threads;
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    if (p == "kernel") v->options.tuning.cpu_kernels = true;
    else if (p == "torch") v->options.tuning.cpu_kernels = false;
    else if (p == "copy") v->options.cpu_copy_weights = true;
    else if (p == "map") v->options.cpu_copy_weights = false;
    else if (p == "int8" || p == "int4" || p == "none") v->options.quantization = p;
    else if (p == "g32" || p == "g64" || p == "g128") v->options.int4_group_size = std::stoi(p.substr(1));
    else if (p == "floathead") v->options.int8_lm_head = false;
    else if (p == "noamx") v->options.tuning.cpu_amx = false;
    else {
      *err = "--variants: unknown option '" + p + "' in '" + spec + "' (kernel, torch, copy, map, int8, int4, none, floathead, noamx, g32, g64, g128)";
      return false;
    }
  }
  return true;
}

std::string Spread(std::vector<double> v) {
  if (v.size() < 2) return "";
  auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  return absl::StrFormat(" (rounds %.2f-%.2f)", *lo, *hi);
}

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("cpu_model_bench", "CPU prefill/decode speed, bandwidth bound and memory of one checkpoint.");
  std::string* model_dir = flags.String("model", "", "checkpoint directory (required)");
  std::string* variants_flag = flags.String(
      "variants", "bfloat16,float32",
      "variants measured side by side, comma-separated: a dtype (bfloat16, float32) and options "
      "that override the defaults: +kernel or +torch (our CPU kernels: AVX512-BF16 for bfloat16, the "
      "row-invariant ones for float32; or libtorch's at::linear and at::bmm), "
      "+copy or +map (weights copied into anonymous huge pages at load, or viewing the mapped file), "
      "+int8, +int4 or +none (--quantization: int8 or int4 linear layers, or the checkpoint's floating "
      "weights), +g32 / +g64 / +g128 (int4 group size), +floathead (lm_head stays in the dtype; "
      "--int8-lm-head=false), +noamx (--cpu-amx=false: no AMX tiles in the attention)");
  int64_t* threads = flags.Int("threads", 0, "threads; 0: one per core");
  int64_t* rounds = flags.Int("rounds", 5, "measurement rounds (each runs every variant once)");
  int64_t* prefill_tokens = flags.Int("prefill-tokens", 512, "prompt length for the prefill figure (0: skip)");
  int64_t* decode_steps = flags.Int(
      "decode-steps", 8,
      "batch-1 decode steps per variant per round (read bandwidth is measured right before and after them)");
  int64_t* batch = flags.Int("decode-batch", 16, "also decode this many sequences at once (0: skip)");
  int64_t* batch_steps = flags.Int("batch-steps", 3, "batched decode steps per variant per round");
  int64_t* context = flags.Int("decode-context", 0,
                               "decode after this many tokens of context (random K/V in the cache, no "
                               "prefill); 0: after a 16-token prompt");
  int64_t* prefill_context = flags.Int("prefill-context", 0,
                                       "the prefill figure's prompt after this many tokens of context (random "
                                       "K/V in the cache); 0: a fresh prompt");
  flags.ParseOrExit(argc, argv);
  if (model_dir->empty()) flags.Fail("--model is required");
  if (*rounds < 1 || *decode_steps < 1 || *batch_steps < 1 || *prefill_tokens < 0 || *batch < 0 || *context < 0 ||
      *prefill_context < 0)
    flags.Fail("--rounds, --decode-steps and --batch-steps must be >= 1; --prefill-tokens, --decode-batch, "
               "--decode-context and --prefill-context >= 0");
  int nthreads = *threads > 0 ? static_cast<int>(*threads) : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(nthreads);
  // Tokens of context before the first decode step (the bound's KV bytes).
  const int64_t decode_context = *context > 0 ? *context : kPromptTokens;

  std::vector<Variant> vars;
  for (const std::string& spec : r1::SplitCommaList(*variants_flag)) {
    Variant v;
    std::string err;
    if (!ParseVariant(spec, nthreads, &v, &err)) flags.Fail(err);
    vars.push_back(std::move(v));
  }
  if (vars.empty()) flags.Fail("--variants is empty");

  std::printf("load average at start: %s\n", LoadAverage().c_str());
  // Bandwidth is measured again around every round's decode: a busy machine only lowers it, so
  // the best figure of the run is the overall bound's.
  double bw1 = r1::bench::ReadBandwidthGBs(1, 5), bw = r1::bench::ReadBandwidthGBs(nthreads, 5);
  const double bw_small = r1::bench::ReadBandwidthGBs(nthreads, 5, r1::bench::Pages::kSmall);
  std::printf("threads %d; AVX512-BF16 kernel available: %s; float32 kernels: %s; int8/int4 kernels: %s\n", nthreads,
              r1::model::CpuGemmAvailable() ? "yes" : "no",
              r1::model::BestF32Isa() == r1::model::F32Isa::kAvx2 ? "AVX2+FMA" : "scalar",
              r1::model::Int8IsaName(r1::model::BestInt8Isa()));
  std::printf("memory read bandwidth at start (best of 5): %.1f GB/s with %d threads, %.1f GB/s with 1, "
              "over a buffer laid out as the weights are (%.0f%% in 2 MiB pages); over 4 KiB pages %.1f GB/s\n",
              bw, nthreads, bw1, 100.0 * r1::bench::BandwidthBufferHugeBytes() / r1::bench::kBandwidthBytes,
              bw_small);
  std::fflush(stdout);
  double ckpt_gb = 0, cache_gbs = PageCacheReadGBs(*model_dir, &ckpt_gb);
  std::printf("checkpoint %.2f GB; read from the page cache at %.1f GB/s (%.2f s)\n", ckpt_gb,
              cache_gbs, ckpt_gb / cache_gbs);
  std::fflush(stdout);

  // Load every variant (peak RSS is the process's: exact when one variant runs alone).
  ResetPeakRss();
  const int64_t P = *prefill_tokens;
  for (Variant& v : vars) {
    double rss0 = StatusGb("VmRSS:");
    auto t0 = Clock::now();
    auto m = r1::model::Qwen2Model::Load(*model_dir, v.options);
    if (!m.ok()) flags.Fail(std::string(m.status().message()));
    v.load_s = Since(t0);
    v.model = std::move(*m);
    Stream warm(*v.model, 1, 8);
    auto first = warm.Step(4);  // the first step touches every weight page
    if (!first.ok()) flags.Fail(std::string(first.status().message()));
    v.first_step_s = *first;
    v.rss_gb = StatusGb("VmRSS:") - rss0;
    const auto& cfg = v.model->config();
    int64_t embed_bytes = cfg.vocab_size * cfg.hidden_size * static_cast<int64_t>(c10::elementSize(v.model->dtype()));
    v.weights_gb = (v.model->weight_bytes() - embed_bytes) / 1e9;
    // K and V of every layer for each token of context: the cache's own bytes per slot.
    const int64_t kv_token = r1::model::KvCache::BytesPerBlock(cfg, 1, v.model->dtype());
    v.kv_gb = decode_context * kv_token / 1e9;
    std::printf("%-24s loaded in %.2f s, first step %.2f s, RSS +%.2f GB; file pages mapped 2 MiB "
                "at a time (process): %.2f GB\n",
                v.label.c_str(), v.load_s, v.first_step_s, v.rss_gb, r1::model::FilePmdMappedBytes() / 1e9);
    std::fflush(stdout);
  }

  for (int64_t r = 0; r < *rounds; ++r) {
    for (Variant& v : vars) {
      if (P > 0) {
        Stream s(*v.model, 1, *prefill_context + P + 1);
        if (*prefill_context > 0) s.RandomCache();
        auto dt = s.Step(P, *prefill_context);
        if (!dt.ok()) flags.Fail(std::string(dt.status().message()));
        v.prefill.push_back(*dt);
      }
      // Batch 1: a 16-token prompt (or --decode-context tokens of cache), then decode steps.
      Stream s(*v.model, 1, decode_context + *decode_steps + 1);
      if (absl::Status st = s.Start(*context); !st.ok()) flags.Fail(std::string(st.message()));
      // This round's bound: bandwidth read right before and right after these decode steps, the
      // higher of the two (a busy moment only lowers it). One sample at the round's start, before
      // the prefills, once read 3.9 GB/s and put decode at 779% of its bound.
      const double bw_before = r1::bench::ReadBandwidthGBs(nthreads, 2);
      std::vector<double> round;
      for (int64_t i = 0; i < *decode_steps; ++i) {
        auto dt = s.Step(0);
        if (!dt.ok()) flags.Fail(std::string(dt.status().message()));
        round.push_back(*dt);
        v.decode.push_back(*dt);
      }
      v.decode_rounds.push_back(1.0 / Median(round));
      v.decode_bw.push_back(std::max(bw_before, r1::bench::ReadBandwidthGBs(nthreads, 2)));
      bw = std::max(bw, v.decode_bw.back());
      if (*batch > 0) {
        Stream sb(*v.model, *batch, decode_context + *batch_steps + 1);
        if (absl::Status st = sb.Start(*context); !st.ok()) flags.Fail(std::string(st.message()));
        std::vector<double> br;
        for (int64_t i = 0; i < *batch_steps; ++i) {
          auto dt = sb.Step(0);
          if (!dt.ok()) flags.Fail(std::string(dt.status().message()));
          br.push_back(*dt);
          v.batch.push_back(*dt);
        }
        v.batch_rounds.push_back(*batch / Median(br));
      }
    }
  }

  std::printf("load average at end: %s; peak RSS of the process %.2f GB (with the bandwidth test's two %.2f GB buffers)\n",
              LoadAverage().c_str(), StatusGb("VmHWM:"), r1::bench::kBandwidthBytes / 1e9);
  for (const Variant& v : vars) {
    std::string line = absl::StrFormat("%-24s", v.label);
    if (P > 0) {
      std::vector<double> tok_s;
      for (double t : v.prefill) tok_s.push_back(P / t);
      line += absl::StrFormat(" | prefill %d tokens%s: %.1f tok/s%s", P,
                              *prefill_context > 0 ? absl::StrFormat(" after %d", *prefill_context) : "",
                              Median(tok_s), Spread(tok_s));
    }
    line += absl::StrFormat(" | decode batch 1: %.2f tok/s%s", 1.0 / Median(v.decode), Spread(v.decode_rounds));
    if (*batch > 0)
      line += absl::StrFormat(" | batch %d: %.1f tok/s%s", *batch, *batch / Median(v.batch), Spread(v.batch_rounds));
    std::printf("%s\n", line.c_str());
  }
  // Batch-1 decode reads every weight but the embedding once a step, and its context's K and V:
  // tok/s <= bandwidth / bytes.
  std::printf("batch-1 bound = GB of weights (all but the embedding) + GB of KV cache read (%lld tokens of "
              "context) / GB/s of read bandwidth; each round's decode against the bandwidth read right before "
              "and after its steps (the higher)\n",
              static_cast<long long>(decode_context));
  for (const Variant& v : vars) {
    const double step_gb = v.weights_gb + v.kv_gb;
    const double best_bound = bw / step_gb;
    std::printf("%-24s (%.3g + %.3g) GB / %.1f GB/s (best of the run) = %.2f tok/s; decode at %.0f%% of it\n",
                v.label.c_str(), v.weights_gb, v.kv_gb, bw, best_bound, 100 / Median(v.decode) / best_bound);
    std::vector<double> ratios;
    for (size_t r = 0; r < v.decode_rounds.size(); ++r) {
      const double bound = v.decode_bw[r] / step_gb;
      ratios.push_back(v.decode_rounds[r] / bound);
      std::printf("%-24s   round %zu: decode %.2f tok/s; %.1f GB/s around it: bound %.2f tok/s; %.0f%%\n",
                  v.label.c_str(), r + 1, v.decode_rounds[r], v.decode_bw[r], bound, 100 * ratios.back());
    }
    std::printf("%-24s   median of the rounds' decode / that round's bound: %.0f%%\n", v.label.c_str(),
                100 * Median(ratios));
  }
  return 0;
}
