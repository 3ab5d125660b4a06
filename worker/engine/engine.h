// The engine's interface to the rest of the worker: plain structs and callbacks, no torch and
// no gRPC, so the service (gRPC) and the engine (torch) never share a translation unit.
//
// One engine thread owns the model, the KV cache and every sequence. Other threads hand it
// requests through Submit() (a queue handoff); it reports each step's new tokens through the
// request's RequestSink, on the engine thread, and never waits for the reader.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/random.h"
#include "common/sampling.h"
#include "common/status.h"
#include "worker/model/kernel_tuning.h"

namespace r1::grammar {
class CompiledGrammar;
}

namespace r1::engine {

using r1::SamplingOptions;

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };
const char* FinishReasonName(FinishReason r);  // "stop", "length", "cancelled", "error"


struct TokenInfo {
  int32_t id = -1;
  float logprob = 0.f;                           // filled when logprobs were asked for
  std::vector<std::pair<int32_t, float>> top;    // top alternatives, when asked for
};

// What one step made for one request. The last delta has finish != kNone and the totals.
struct Delta {
  std::vector<TokenInfo> tokens;
  // On the first delta when prompt log-probabilities were asked for: one entry per prompt
  // token; the first has no log-probability (nothing comes before it).
  std::vector<TokenInfo> prompt_logprobs;
  std::string text;  // whole UTF-8 characters; stop text removed
  FinishReason finish = FinishReason::kNone;
  std::string error;
  std::string matched_stop;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t reasoning_tokens = 0;  // of completion_tokens, those of the thought
  double queued_ms = 0, ttft_ms = 0, total_ms = 0;
};

// Where a request's output goes. Called on the engine thread: must not block.
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  virtual void OnDelta(Delta delta) = 0;
  // Polled once per step; true removes the request (its last delta says kCancelled).
  virtual bool Cancelled() const = 0;
};

// Incremental detokenization of one sequence's output.
class TextStream {
 public:
  virtual ~TextStream() = default;
  // Text completed by this token (may be empty while a UTF-8 character is incomplete).
  virtual std::string Add(int32_t id) = 0;
  // What is left at the end.
  virtual std::string Finish() = 0;
};

// The tokenizer side the engine needs; absent when the checkpoint has no tokenizer.
class TextCodec {
 public:
  virtual ~TextCodec() = default;
  virtual std::unique_ptr<TextStream> NewStream() = 0;
  // A stream that keeps special tokens in the text when `skip_special_tokens` is false (the
  // request's skip_special_tokens); a codec without special tokens may ignore it.
  virtual std::unique_ptr<TextStream> NewStreamWith(bool skip_special_tokens) {
    (void)skip_special_tokens;
    return NewStream();
  }
  // One token's text, for log-probabilities.
  virtual std::string TokenText(int32_t id) = 0;
};

struct EngineRequest {
  std::string request_id;
  std::vector<int32_t> prompt;  // non-empty
  SamplingOptions sampling;  // logprobs and top_logprobs included
  int32_t max_tokens = 0;       // 0: up to the model length
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // The stop string, stop token or EOS that ended the request is kept at the end of the text
  // (vLLM's include_stop_str_in_output; special tokens still follow skip_special_tokens).
  bool include_stop_str_in_output = false;
  bool skip_special_tokens = true;
  // Output constraints (token_constraints.h). The answer follows `grammar` (null: free), after
  // the thought when the prompt opens one.
  std::shared_ptr<const grammar::CompiledGrammar> grammar;
  std::vector<std::pair<int32_t, float>> logit_bias;  // ids in the vocabulary, unique
  int32_t min_tokens = 0;  // end-of-sequence and stop ids banned before this many tokens
  // Tokens of thought before "</think>" is forced; unset: EngineOptions::reasoning's default;
  // -1: no limit.
  std::optional<int32_t> thinking_token_budget;
  // A stream another worker started: the output it had delivered. The sequence continues
  // after it as if it had made it (OutputProcessor::Resume); max_tokens counts new tokens,
  // completion_tokens all of them.
  std::vector<int32_t> resume_output;
  // >= 0: the prompt tokens' log-probabilities, with this many alternatives each (<= 20).
  int32_t prompt_logprobs = -1;
  Clock::TimePoint arrival{};
  std::shared_ptr<RequestSink> sink;
};

// The model's thought, as the tokenizer spells it, and the thinking budget's defaults.
struct ReasoningOptions {
  int32_t think_start_id = -1;  // "<think>"; -1: the tokenizer has none (no thought tracked)
  int32_t think_end_id = -1;    // "</think>"
  int32_t default_budget = -1;  // --thinking-token-budget; -1: no limit
  std::vector<int32_t> budget_message;  // --thinking-budget-message, forced before "</think>"
};

// The KV cache's size on CPU when EngineOptions::kv_cache_memory is 0: this many bytes, or
// kDefaultCpuKvCacheTokens tokens of the model's KV when that is more (an R1 chain of thought
// runs to 32k tokens; float32, the default on CPUs without AVX512-BF16, fits 18k tokens of the
// 1.5B in 1 GiB).
constexpr int64_t kDefaultCpuKvCacheMemory = 1LL << 30;
constexpr int64_t kDefaultCpuKvCacheTokens = 32768;
// That default for a model whose KV takes bytes_per_token a token.
int64_t DefaultCpuKvCacheBytes(int64_t bytes_per_token);

struct EngineOptions {
  std::string model_dir;
  std::string device = "cpu";
  std::string dtype = "auto";
  std::string quantization = "auto";  // model::LoadOptions::quantization
  bool int8_lm_head = true;           // model::LoadOptions::int8_lm_head
  bool fp8_lm_head = true;            // model::LoadOptions::fp8_lm_head
  int64_t int4_group_size = 128;      // model::LoadOptions::int4_group_size
  int32_t threads = 0;                // CPU threads for libtorch; 0: one per core
  int32_t max_running = 64;
  int32_t max_waiting = 256;
  int32_t max_model_len = 0;          // 0: the model's max_position_embeddings
  // Bytes for the KV cache. 0: on CUDA, kv_cache_fraction of the device memory free once the
  // model is loaded; on CPU, kDefaultCpuKvCacheMemory.
  int64_t kv_cache_memory = 0;
  double kv_cache_fraction = 0.9;     // in (0, 1]
  std::string kv_cache_dtype = "auto";  // auto (the model's dtype) or fp8
  int32_t block_size = 16;
  int32_t prefill_chunk = 0;          // tokens per step; 0: the device's default (512 CPU, 2,048 CUDA)
  // A waiting request that has waited this many steps is admitted before any request that
  // arrived after it, whatever its length (no starvation behind a stream of short prompts).
  int32_t max_wait_steps = 256;
  // A waiting request is admitted only if the free KV blocks then still hold this many more
  // tokens for each running sequence (and the rest of their prompts): under KV pressure, fewer
  // admissions that the running sequences' growth would preempt again at once (scheduler.h).
  // 0: admit whenever the first chunk fits.
  int32_t admit_headroom_tokens = 64;
  // Keep full KV blocks of finished sequences, keyed by their tokens, for later sequences with
  // the same prefix (block_allocator.h).
  bool enable_prefix_caching = true;
  // Testing: while this file exists the engine thread stops before its next step (a hung
  // engine in a live process, for the watchdog's tests). Empty: off.
  std::string fault_hang_file;
  model::KernelTuning tuning;
  std::shared_ptr<TextCodec> codec;   // may be null
  ReasoningOptions reasoning;
  const Clock* clock = SystemClock::Get();
  Random* random = nullptr;           // seeds unseeded requests; null: a SystemRandom of its own
};

// Every limit checked in one place (the worker's flags and Engine::Create both use it):
// InvalidArgument naming the flag.
absl::Status ValidateEngineOptions(const EngineOptions& options);

// Counters and gauges, readable from any thread.
struct EngineLoad {
  int32_t running = 0;
  int32_t waiting = 0;
  int64_t blocks_used = 0;
  int64_t blocks_total = 0;
  int64_t preemptions = 0;
  int64_t kv_cache_bytes = 0;  // the KV cache's memory (every block)
  int32_t block_size = 0;      // tokens per KV block
  bool prefix_caching = false;
  // Tokens looked up in the prefix cache at admission, and found (Scheduler).
  int64_t prefix_cache_queries = 0;
  int64_t prefix_cache_hits = 0;
  // Engine steps so far: a watchdog sees the engine thread move (or not) by it.
  int64_t steps = 0;
  // Device memory, read at most every kDeviceMemoryRefreshMs (never per token). On CUDA:
  // cudaMemGetInfo (used = total - free, all processes) and libtorch's caching allocator. Off
  // CUDA, device_memory_available is false and the figures are 0.
  bool device_memory_available = false;
  int64_t device_memory_used = 0;
  int64_t device_memory_total = 0;
  int64_t allocator_allocated = 0;  // bytes in live tensors
  int64_t allocator_reserved = 0;   // bytes the allocator holds from the driver
};
constexpr int kDeviceMemoryRefreshMs = 250;

class Engine {
 public:
  // Loads the model, sizes the KV cache, runs a warm-up step and starts the engine thread.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options);
  virtual ~Engine() = default;

  // Queues requests, all or none (the n choices of one Generate call): RESOURCE_EXHAUSTED
  // when fewer than requests.size() places are left under --max-waiting, UNAVAILABLE after
  // StopAccepting(). On OK each sink gets a final delta eventually.
  virtual absl::Status SubmitAll(std::vector<EngineRequest> requests) = 0;
  // One request.
  absl::Status Submit(EngineRequest request) {
    std::vector<EngineRequest> one;
    one.push_back(std::move(request));
    return SubmitAll(std::move(one));
  }
  virtual EngineLoad Load() const = 0;
  // Refuse new work (draining).
  virtual void StopAccepting() = 0;
  // Ends every request (kCancelled) and joins the engine thread.
  virtual void Shutdown() = 0;

  virtual int32_t max_model_len() const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual std::string device_name() const = 0;
  virtual int32_t max_running() const = 0;
  virtual int32_t max_waiting() const = 0;
};

}  // namespace r1::engine
