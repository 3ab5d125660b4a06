// GPU speed of the model on one checkpoint (make the 1.5B shape with
// `r1-mkmodel --preset r1-distill-qwen-1.5b --out DIR`). Prints, in one run:
//   - device-to-device copy bandwidth (a large torch copy, bytes read + written) and the bf16
//     matmul rate (an 8192^3 GEMM), the two rates the bounds below are taken at;
//   - time to first token for each --prompt-lens prompt, fed in chunks of --prefill-chunk
//     tokens as the engine feeds it (one step per chunk, argmax of the last read on the host;
//     median of --reps), against its FLOP bound (linear layers plus causal attention at the
//     measured matmul rate);
//   - decode tok/s for every --batch-sizes x --contexts cell: each sequence with its own blocks
//     and that many keys already cached (random K/V: attention's cost does not depend on the
//     values), the median and p99 step time over --decode-steps steps, argmax read on the host
//     each step as the engine does; against the bound (weights + the KV bytes the step reads)
//     / copy bandwidth. Cells whose KV cache does not fit in the free memory are skipped.
// Every figure line starts with "RESULT " so bench/gpu/run.sh can collect it.
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "common/flags.h"
#include "worker/model/device_memory.h"
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
void Sync(const at::Tensor& t) { (void)t.sum().item<double>(); }

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

// The matmul rate in TFLOP/s of an n x n x n GEMM in `dtype`, best of 5.
double MatmulTflops(at::Device dev, at::ScalarType dtype, int64_t n = 8192) {
  auto opts = at::TensorOptions().dtype(dtype).device(dev);
  at::Tensor a = at::randn({n, n}, opts), b = at::randn({n, n}, opts);
  Sync(at::mm(a, b));
  double best = 0;
  for (int i = 0; i < 5; ++i) {
    auto t = Clock::now();
    at::Tensor c = at::mm(a, b);
    (void)c[0][0].item<float>();
    best = std::max(best, 2.0 * n * n * n / Since(t) / 1e12);
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
  r1::Flags flags("gpu_model_bench", "GPU time to first token and decode tok/s of one checkpoint, each against its bound.");
  std::string* model_dir = flags.String("model", "", "checkpoint directory (required)");
  std::string* device = flags.String("device", "cuda", "cuda | cuda:N | cpu");
  std::string* dtype = flags.String("dtype", "bfloat16", "bfloat16 | float16 | float32");
  std::string* prompt_lens = flags.String("prompt-lens", "128,2048", "prompt lengths for time to first token");
  int64_t* prefill_chunk = flags.Int("prefill-chunk", 0, "tokens per prefill step for time to first token; 0: the whole prompt in one step");
  std::string* batch_sizes = flags.String("batch-sizes", "1", "decode batch sizes");
  std::string* contexts = flags.String("contexts", "128", "tokens already cached per sequence when decoding starts (a list: one grid row each)");
  int64_t* reps = flags.Int("reps", 5, "prefill runs per prompt length (median)");
  int64_t* steps = flags.Int("decode-steps", 128, "decode steps per cell (median and p99 step time)");
  std::string* kv_dtype = flags.String("kv-cache-dtype", "auto", "auto (the model's dtype) or fp8");
  std::string* label = flags.String("label", "r1serve", "name printed in the RESULT lines");
  std::string* quantization = flags.String("quantization", "auto", "the linear layers' weights, as r1-worker's flag: auto, none, fp8, int4 or awq on the GPU");
  bool* fp8_lm_head = flags.Bool("fp8-lm-head", true, "with --quantization fp8: lm_head e4m3 too (per-row scales, quantized at load); --fp8-lm-head=false keeps it in --dtype");
  bool* random_weights = flags.Bool("random-weights", false,
                                    "draw random weights (std 0.02) on the device instead of reading safetensors: "
                                    "--model then needs only config.json (r1-mkmodel --config-only), for shapes "
                                    "whose checkpoint does not fit the disk");
  r1::model::KernelTuningFlags tuning_flags(flags);
  flags.ParseOrExit(argc, argv);
  if (model_dir->empty()) flags.Fail("--model is required");
  std::vector<int64_t> plens = Ints(flags, "prompt-lens", *prompt_lens);
  std::vector<int64_t> bsizes = Ints(flags, "batch-sizes", *batch_sizes);
  std::vector<int64_t> ctxs = Ints(flags, "contexts", *contexts);
  if (*reps < 1 || *steps < 1 || *prefill_chunk < 0) flags.Fail("--reps and --decode-steps must be >= 1, --prefill-chunk >= 0");
  const bool fp8 = *kv_dtype == "fp8";
  if (!fp8 && *kv_dtype != "auto") flags.Fail("--kv-cache-dtype must be auto or fp8");

  r1::model::LoadOptions lo;
  lo.device = *device;
  lo.dtype = *dtype;
  lo.quantization = *quantization;
  lo.fp8_lm_head = *fp8_lm_head;
  if (*random_weights) lo.random_weights_std = 0.02;
  lo.tuning = tuning_flags.Get();
  auto t0 = Clock::now();
  auto m = r1::model::Qwen2Model::Load(*model_dir, lo);
  if (!m.ok()) flags.Fail(std::string(m.status().message()));
  auto& model = **m;
  const auto& cfg = model.config();
  const at::Device dev = model.device();
  std::printf("RESULT %s load_s %.2f device %s dtype %s quantization %s kv_cache %s tuning %s\n", label->c_str(),
              Since(t0), dev.str().c_str(), c10::toString(model.dtype()), model.quantization().c_str(),
              fp8 ? "fp8" : "model", lo.tuning.Describe().c_str());

  const double bw = CopyBandwidthGBs(dev);
  const double tflops = MatmulTflops(dev, model.dtype());
  const int64_t elt = static_cast<int64_t>(c10::elementSize(model.dtype()));
  const int64_t embed = cfg.vocab_size * cfg.hidden_size * elt;
  const double weight_gb = static_cast<double>(model.weight_bytes() - embed + cfg.hidden_size * elt) / 1e9;
  const int64_t block = 16;
  // KV bytes one cached token costs (K and V of every layer, with FP8's scales).
  const double kv_token = static_cast<double>(r1::model::KvCache::BytesPerBlock(cfg, block, model.dtype(), fp8)) / block;
  std::printf("RESULT %s copy_bandwidth_GBs %.0f bytes_per_step_GB %.3f batch1_bound_tok_s %.0f matmul_tflops %.0f kv_bytes_per_token %.0f\n",
              label->c_str(), bw, weight_gb, bw / weight_gb, tflops, kv_token);
  std::fflush(stdout);

  // Linear-layer weights per token (multiply-adds) for the prefill FLOP bound.
  const double D = static_cast<double>(cfg.head_dim()), H = static_cast<double>(cfg.hidden_size);
  const double nh = static_cast<double>(cfg.num_attention_heads), kvh = static_cast<double>(cfg.num_key_value_heads);
  const double linear_params = static_cast<double>(cfg.num_hidden_layers) *
                               (H * (nh + 2 * kvh) * D + nh * D * H + 3.0 * H * static_cast<double>(cfg.intermediate_size));

  auto prompt = [&](int64_t n, int64_t salt) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + salt * 104729) % std::min<int64_t>(cfg.vocab_size, 150000));
    return v;
  };
  // A cache with `seqs` sequences of `per_seq` blocks each, interleaved (sequence i owns blocks
  // b * seqs + i), so that no two sequences' blocks are adjacent.
  auto table_for = [&](int64_t i, int64_t seqs, int64_t per_seq) {
    std::vector<int32_t> t;
    for (int64_t b = 0; b < per_seq; ++b) t.push_back(static_cast<int32_t>(b * seqs + i));
    return t;
  };

  // Time to first token, chunked as the engine feeds a long prompt.
  {
    const int64_t kWarmUpPrompt = 64;
    int64_t max_p = std::max(kWarmUpPrompt, *std::max_element(plens.begin(), plens.end()));
    const int64_t per_seq = (max_p + 1 + block - 1) / block;
    r1::model::KvCache cache(cfg, per_seq, block, model.dtype(), dev, fp8);
    auto prefill = [&](const std::vector<int32_t>& toks) {
      const int64_t n = static_cast<int64_t>(toks.size());
      const int64_t chunk = *prefill_chunk > 0 ? *prefill_chunk : n;
      at::Tensor logits;
      for (int64_t at = 0; at < n; at += chunk) {
        r1::model::StepBatch b;
        const int64_t k = std::min(chunk, n - at);
        b.tokens.assign(toks.begin() + at, toks.begin() + at + k);
        r1::model::SequenceStep s;
        s.num_cached = at;
        s.num_new = k;
        s.block_table = table_for(0, 1, per_seq);
        s.want_logits = at + k == n;
        b.seqs = {s};
        auto r = model.Forward(b, cache);
        if (!r.ok()) flags.Fail(std::string(r.status().message()));
        logits = *r;
      }
      (void)logits.argmax(-1).item<int64_t>();  // the host sync the engine has
    };
    for (int i = 0; i < 2; ++i) prefill(prompt(kWarmUpPrompt, 0));  // cuBLAS handles, first launches
    for (int64_t p : plens) {
      std::vector<double> t;
      for (int64_t r = 0; r < *reps + 1; ++r) {
        auto toks = prompt(p, r);
        auto s = Clock::now();
        prefill(toks);
        if (r > 0) t.push_back(Since(s));
      }
      const double flops = 2.0 * linear_params * static_cast<double>(p) +
                           2.0 * static_cast<double>(p) * static_cast<double>(p) * nh * D *
                               static_cast<double>(cfg.num_hidden_layers);
      const double bound_s = flops / (tflops * 1e12);
      const double med = Median(t);
      std::printf("RESULT %s ttft_ms prompt %ld chunk %ld median %.2f min %.2f flop_bound_ms %.2f frac %.2f\n",
                  label->c_str(), p, *prefill_chunk > 0 ? *prefill_chunk : p, 1e3 * med,
                  1e3 * *std::min_element(t.begin(), t.end()), 1e3 * bound_s, bound_s / med);
      std::fflush(stdout);
    }
  }

  for (int64_t C : ctxs) {
    for (int64_t B : bsizes) {
      const int64_t per_seq = (C + *steps + 8 + block - 1) / block;
      const double need = static_cast<double>(B * per_seq * block) * kv_token;
      r1::model::DeviceMemory mem = r1::model::QueryDeviceMemory(dev);
      const double free_bytes = mem.available
          ? static_cast<double>(mem.free_bytes + std::max<int64_t>(0, mem.reserved_bytes - mem.allocated_bytes))
          : 64e9;
      if (need > 0.85 * free_bytes) {
        std::printf("RESULT %s decode batch %ld context %ld skipped kv_GB %.1f free_GB %.1f\n", label->c_str(), B, C,
                    need / 1e9, free_bytes / 1e9);
        std::fflush(stdout);
        continue;
      }
      std::vector<double> t, host;
      {
        r1::model::KvCache cache(cfg, B * per_seq, block, model.dtype(), dev, fp8);
        for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
          if (fp8) {  // random e4m3 bytes below 0x7f (finite), scales near 1/448
            cache.k(l).random_(0, 0x7f);
            cache.v(l).random_(0, 0x7f);
            cache.k_scale(l).uniform_(0.5 / 448, 1.0 / 448);
            cache.v_scale(l).uniform_(0.5 / 448, 1.0 / 448);
          } else {
            cache.k(l).uniform_(-1, 1);
            cache.v(l).uniform_(-1, 1);
          }
        }
        std::vector<r1::model::SequenceStep> seqs;
        for (int64_t i = 0; i < B; ++i) {
          r1::model::SequenceStep s;
          s.num_cached = C;
          s.num_new = 1;
          s.block_table = table_for(i, B, per_seq);
          seqs.push_back(std::move(s));
        }
        std::vector<int32_t> next(static_cast<size_t>(B), 1);
        for (int64_t st = 0; st < *steps + 3; ++st) {
          r1::model::StepBatch b;
          b.tokens = next;
          b.seqs = seqs;
          auto s = Clock::now();
          auto r = model.Forward(b, cache);
          if (!r.ok()) flags.Fail(std::string(r.status().message()));
          const double queued = Since(s);  // the host's own cost: packing, copies, launches
          at::Tensor ids = r->argmax(-1).to(at::kCPU);  // the host sync the engine has each step
          if (st >= 3) {  // the first steps may capture graphs
            t.push_back(Since(s));
            host.push_back(queued);
          }
          for (int64_t i = 0; i < B; ++i) {
            next[static_cast<size_t>(i)] = static_cast<int32_t>(ids[i].item<int64_t>());
            ++seqs[static_cast<size_t>(i)].num_cached;
          }
        }
      }
      const double med = Median(t);
      // Bytes a step reads: the weights once, and every sequence's K/V (its mean context).
      const double ctx_mean = static_cast<double>(C) + static_cast<double>(*steps) / 2;
      const double step_bytes = weight_gb * 1e9 + static_cast<double>(B) * ctx_mean * kv_token;
      const double bound = static_cast<double>(B) / (step_bytes / (bw * 1e9));
      // host_ms: the median time Forward takes to return (the step queued, not run): the CPU's
      // share of a step, which the GPU's work must hide.
      std::printf("RESULT %s decode batch %ld context %ld step_ms median %.3f p99 %.3f tok_s %.1f bound_tok_s %.0f frac %.2f host_ms %.3f\n",
                  label->c_str(), B, C, 1e3 * med, 1e3 * Percentile(t, 0.99), B / med, bound, B / med / bound,
                  1e3 * Median(host));
      std::fflush(stdout);
    }
  }
  return 0;
}
