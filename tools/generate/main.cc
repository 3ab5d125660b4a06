// r1-generate: one prompt in, its completion out, straight through the model (no server).
// Timing (load, prefill tok/s, decode tok/s) goes to stderr.
#include <ATen/ATen.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "worker/engine/sampler.h"
#include "worker/model/qwen2.h"
#include "worker/tokenizer/chat_template.h"
#include "worker/tokenizer/detokenizer.h"
#include "worker/tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags(
      "r1-generate",
      "Generates a completion for one prompt with a Qwen2 or Llama checkpoint, without a server.");
  std::string* model_dir = flags.String("model", "", "checkpoint directory (required)");
  std::string* prompt = flags.String("prompt", "", "prompt text (needs the tokenizer files)");
  std::string* prompt_ids = flags.String("prompt-ids", "", "prompt as token ids: ID,ID,...");
  bool* chat = flags.Bool("chat", false, "render --prompt as one user message with the chat template");
  std::string* chat_template = flags.String("chat-template", "auto", "auto | deepseek-r1 | chatml");
  std::string* tokenizer_path = flags.String("tokenizer", "", "tokenizer.json or its directory (default: --model)");
  int64_t* max_tokens = flags.Int("max-tokens", 128, "most tokens to generate");
  double* temperature = flags.Double("temperature", 0.0, "sampling temperature; 0 means greedy");
  double* top_p = flags.Double("top-p", 1.0, "nucleus sampling mass, in (0, 1]");
  int64_t* top_k = flags.Int("top-k", 0, "keep the k most likely tokens; 0: off");
  double* min_p = flags.Double("min-p", 0.0, "drop tokens below min-p times the top probability");
  double* rep = flags.Double("repetition-penalty", 1.0, "repetition penalty (1: off)");
  double* presence = flags.Double("presence-penalty", 0.0, "presence penalty, in [-2, 2]");
  double* frequency = flags.Double("frequency-penalty", 0.0, "frequency penalty, in [-2, 2]");
  int64_t* seed = flags.Int("seed", 0, "random seed: the same seed gives the same output");
  bool* ignore_eos = flags.Bool("ignore-eos", false, "keep going past end-of-sequence tokens");
  std::string* device = flags.String("device", "auto", "auto | cpu | cuda | cuda:N");
  std::string* dtype = flags.String("dtype", "auto", "auto (bfloat16 on CUDA and on CPUs with AVX512-BF16, else float32), bfloat16, float16 or float32");
  std::string* quantization = flags.String("quantization", "auto", "auto (the checkpoint's own: int8 for a compressed-tensors W8A8 checkpoint, int4 for an AutoAWQ GEMM one, else none), none, int8 (CPU: int8 linear layers with per-channel scales, quantized at load from a floating checkpoint; activations quantized per token), int4 (4-bit linear layers in groups with scales and zero points, quantized at load or from an AWQ checkpoint; CPU: activations int8 per token; CUDA: groups of 128, --dtype bfloat16 or float16, the int4 GEMV for steps of up to --int4-gemv-max-rows tokens), awq (an AWQ checkpoint, run as int4) or fp8 (CUDA, compute capability 8.9+, --dtype bfloat16: e4m3 linear layers with per-channel scales, quantized at load; activations e4m3 per token in GEMMs)");
  bool* int8_lm_head = flags.Bool("int8-lm-head", true, "with --quantization int8 or int4 on the CPU: lm_head int8 too (per-row scales, quantized at load; a W8A8 checkpoint keeps it floating; on CUDA it stays in --dtype); --int8-lm-head=false keeps it in --dtype");
  bool* fp8_lm_head = flags.Bool("fp8-lm-head", true, "with --quantization fp8: lm_head e4m3 too (per-row scales, quantized at load); --fp8-lm-head=false keeps it in --dtype");
  int64_t* int4_group = flags.Int("int4-group-size", 128, "with --quantization int4 on a floating checkpoint: columns per group (32, 64 or 128); an AWQ checkpoint brings its own");
  std::string* output = flags.String("output", "text", "text | ids (generated ids, comma-separated)");
  int64_t* threads = flags.Int("threads", 0, "CPU threads; 0: one per core");
  int64_t* chunk = flags.Int("prefill-chunk", 512, "prompt tokens per prefill step");
  flags.ParseOrExit(argc, argv);

  if (model_dir->empty()) flags.Fail("--model is required");
  if (prompt->empty() == prompt_ids->empty()) flags.Fail("give exactly one of --prompt and --prompt-ids");
  if (*output != "text" && *output != "ids") flags.Fail("--output must be text or ids");
  if (*max_tokens < 1) flags.Fail("--max-tokens must be at least 1");
  if (*temperature < 0 || *temperature > 100) flags.Fail("--temperature must be in [0, 100]");
  if (!(*top_p > 0 && *top_p <= 1)) flags.Fail("--top-p must be in (0, 1]");
  if (*top_k < 0) flags.Fail("--top-k must be >= 0");
  if (*min_p < 0 || *min_p > 1) flags.Fail("--min-p must be in [0, 1]");
  if (*rep <= 0 || *rep > 100) flags.Fail("--repetition-penalty must be in (0, 100]");
  if (std::abs(*presence) > 2 || std::abs(*frequency) > 2)
    flags.Fail("--presence-penalty and --frequency-penalty must be in [-2, 2]");
  if (*chunk < 1) flags.Fail("--prefill-chunk must be at least 1");
  if (*chat && prompt->empty()) flags.Fail("--chat needs --prompt");
  auto resolved_device = r1::model::ResolveDevice(*device);
  if (!resolved_device.ok()) flags.Fail(std::string(resolved_device.status().message()));
  if (auto d = r1::model::ResolveDtype(*dtype, *resolved_device); !d.ok())
    flags.Fail(std::string(d.status().message()));

  // The prompt as ids.
  std::vector<int32_t> ids;
  for (const std::string& item : r1::SplitCommaList(*prompt_ids)) {
    int32_t id;
    if (!absl::SimpleAtoi(item, &id) || id < 0) flags.Fail("--prompt-ids: '" + item + "' is not a token id");
    ids.push_back(id);
  }
  bool need_tokenizer = !prompt->empty() || *output == "text";
  std::unique_ptr<r1::tokenizer::Tokenizer> tok;
  if (need_tokenizer) {
    std::string path = tokenizer_path->empty() ? *model_dir : *tokenizer_path;
    auto t = std::filesystem::is_directory(path) ? r1::tokenizer::Tokenizer::FromDir(path)
                                                 : r1::tokenizer::Tokenizer::FromFile(path);
    if (!t.ok()) flags.Fail(std::string(t.status().message()));
    tok = std::move(*t);
    if (!prompt->empty()) {
      std::string text = *prompt;
      if (*chat) {
        auto kind = r1::tokenizer::ResolveChatTemplate(*chat_template, *model_dir);
        if (!kind.ok()) flags.Fail(std::string(kind.status().message()));
        auto rendered = r1::tokenizer::RenderChat(*kind, {{"user", *prompt}}, true);
        if (!rendered.ok()) flags.Fail(std::string(rendered.status().message()));
        text = *rendered;
      }
      auto enc = tok->Encode(text);
      if (!enc.ok()) flags.Fail(std::string(enc.status().message()));
      ids = *enc;
    }
  }
  if (ids.empty()) flags.Fail("the prompt has no tokens");

  auto t_load = Clock::now();
  r1::model::LoadOptions lo{*device, *dtype, static_cast<int>(*threads)};
  lo.quantization = *quantization;
  lo.int8_lm_head = *int8_lm_head;
  lo.fp8_lm_head = *fp8_lm_head;
  lo.int4_group_size = *int4_group;
  auto loaded = r1::model::Qwen2Model::Load(*model_dir, lo);
  if (!loaded.ok()) flags.Fail(std::string(loaded.status().message()));
  auto& model = **loaded;
  const auto& cfg = model.config();
  double load_s = Since(t_load);
  for (int32_t id : ids)
    if (id >= cfg.vocab_size)
      flags.Fail(absl::StrCat("--prompt-ids: token id ", id, " is outside the vocabulary (", cfg.vocab_size, ")"));
  int64_t total_len = std::min<int64_t>(static_cast<int64_t>(ids.size()) + *max_tokens,
                                        cfg.max_position_embeddings);
  if (static_cast<int64_t>(ids.size()) >= cfg.max_position_embeddings)
    flags.Fail(absl::StrCat("the prompt (", ids.size(), " tokens) does not fit the model's length ",
                            cfg.max_position_embeddings));

  const int64_t block = 16;
  r1::model::KvCache cache(cfg, (total_len + block - 1) / block, block, model.dtype(), model.device());
  r1::model::SequenceStep seq;
  for (int64_t b = 0; b < cache.num_blocks(); ++b) seq.block_table.push_back(static_cast<int32_t>(b));

  r1::engine::SamplingOptions so;
  so.temperature = static_cast<float>(*temperature);
  so.top_p = static_cast<float>(*top_p);
  so.top_k = static_cast<int32_t>(*top_k);
  so.min_p = static_cast<float>(*min_p);
  so.repetition_penalty = static_cast<float>(*rep);
  so.presence_penalty = static_cast<float>(*presence);
  so.frequency_penalty = static_cast<float>(*frequency);
  r1::engine::SamplerState state(static_cast<uint64_t>(*seed));
  state.prompt = ids;

  auto step = [&](const std::vector<int32_t>& tokens, int64_t cached) -> at::Tensor {
    r1::model::StepBatch b;
    b.tokens = tokens;
    seq.num_cached = cached;
    seq.num_new = static_cast<int64_t>(tokens.size());
    b.seqs = {seq};
    auto logits = model.Forward(b, cache);
    if (!logits.ok()) {
      std::cerr << "r1-generate: " << logits.status().message() << "\n";
      std::exit(1);
    }
    return *logits;
  };

  // Prefill in chunks; the last chunk's logits give the first token.
  auto t_prefill = Clock::now();
  at::Tensor logits;
  for (size_t start = 0; start < ids.size(); start += static_cast<size_t>(*chunk)) {
    size_t end = std::min(ids.size(), start + static_cast<size_t>(*chunk));
    logits = step(std::vector<int32_t>(ids.begin() + static_cast<long>(start), ids.begin() + static_cast<long>(end)),
                  static_cast<int64_t>(start));
  }
  double prefill_s = Since(t_prefill);

  std::optional<r1::tokenizer::IncrementalDetokenizer> detok;
  if (*output == "text") detok.emplace(*tok, /*skip_special_tokens=*/false);
  auto is_eos = [&](int32_t t) {
    return !*ignore_eos && std::find(cfg.eos_token_ids.begin(), cfg.eos_token_ids.end(), t) != cfg.eos_token_ids.end();
  };
  std::vector<int32_t> out;
  auto t_decode = Clock::now();
  int64_t pos = static_cast<int64_t>(ids.size());
  const char* finish = "length";
  while (true) {
    int32_t t = r1::engine::SampleBatch(logits, {&so}, {&state})[0].token;
    out.push_back(t);
    if (detok && !is_eos(t)) std::cout << detok->Add(t) << std::flush;
    if (is_eos(t)) {
      finish = "stop";
      break;
    }
    // The next step writes t at position pos: stop when there is no room for it.
    if (static_cast<int64_t>(out.size()) >= *max_tokens || pos >= total_len) break;
    logits = step({t}, pos);
    ++pos;
  }
  double decode_s = Since(t_decode);
  if (*output == "ids") {
    for (size_t i = 0; i < out.size(); ++i) std::cout << (i ? "," : "") << out[i];
    std::cout << "\n";
  } else {
    std::cout << detok->Finish() << "\n";
  }
  // Decode steps: one per generated token after the first (which came from the prefill).
  size_t decode_steps = out.size() > 0 ? out.size() - 1 : 0;
  std::cerr << absl::StrCat("r1-generate: load ", load_s, " s; prefill ", ids.size(), " tokens in ",
                            prefill_s, " s (", ids.size() / std::max(prefill_s, 1e-9),
                            " tok/s); decode ", decode_steps, " tokens in ", decode_s, " s (",
                            decode_steps / std::max(decode_s, 1e-9), " tok/s); finish ", finish,
                            "; device ", model.device().str(), ", dtype ",
                            c10::toString(model.dtype()),
                            model.quantization() == "none" ? "" : ", " + model.QuantizationSummary(), "\n");
  return 0;
}
