// engine_bench: the engine in-process (no gRPC) with N concurrent greedy streams; prints
// decode tok/s, so per-step host overhead can be profiled (perf record, or --log-level debug for
// each step's plan / model / sampling / emit times) apart from the service.
//   engine_bench --model DIR [--device cpu] [--dtype float32] [--streams 256]
//                [--prompt-len 16] [--max-tokens 64] [--threads 0]
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>

#include "common/flags.h"
#include "common/log.h"
#include "worker/engine/engine.h"
#include "worker/engine/host_memory.h"

namespace {

// Counts tokens; signals when every stream has ended.
struct Done {
  std::mutex mu;
  std::condition_variable cv;
  int left = 0;
  std::atomic<int64_t> tokens{0};
};

class CountingSink : public r1::engine::RequestSink {
 public:
  explicit CountingSink(Done* d) : done_(d) {}
  void OnDelta(r1::engine::Delta d) override {
    done_->tokens += static_cast<int64_t>(d.tokens.size());
    if (d.finish != r1::engine::FinishReason::kNone) {
      std::lock_guard<std::mutex> lock(done_->mu);
      if (--done_->left == 0) done_->cv.notify_all();
    }
  }
  bool Cancelled() const override { return false; }

 private:
  Done* done_;
};

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("engine_bench", "The engine in-process with N concurrent greedy streams.");
  std::string* model = flags.String("model", "", "checkpoint directory (required)");
  std::string* device = flags.String("device", "cpu", "cpu, cuda or cuda:N");
  std::string* dtype = flags.String("dtype", "float32", "auto, bfloat16, float16 or float32");
  int64_t* streams = flags.Int("streams", 256, "concurrent requests");
  int64_t* prompt_len = flags.Int("prompt-len", 16, "prompt tokens per request");
  int64_t* max_tokens = flags.Int("max-tokens", 64, "tokens generated per request");
  int64_t* threads = flags.Int("threads", 0, "CPU threads for the model; 0: one per core");
  std::string* log_level =
      flags.String("log-level", "warning", "debug prints each step's plan/model/sampling/emit ms");
  bool* keep_freed =
      flags.Bool("keep-freed-memory", true, "as r1-worker's flag: malloc keeps freed memory");
  flags.ParseOrExit(argc, argv);
  if (*keep_freed) r1::engine::KeepFreedHostMemory();
  if (model->empty()) flags.Fail("--model is required");
  if (*streams <= 0 || *prompt_len <= 0 || *max_tokens <= 0) {
    flags.Fail("--streams, --prompt-len and --max-tokens must be > 0");
  }
  r1::LogLevel level;
  if (!r1::ParseLogLevel(*log_level, &level)) flags.Fail("--log-level: unknown level " + *log_level);
  r1::SetLogLevel(level);
  r1::engine::EngineOptions o;
  o.model_dir = *model;
  o.device = *device;
  o.dtype = *dtype;
  o.threads = static_cast<int32_t>(*threads);
  o.max_running = static_cast<int32_t>(*streams);
  o.max_waiting = static_cast<int32_t>(*streams);
  o.prefill_chunk = static_cast<int32_t>(std::max<int64_t>(512, *streams));
  auto engine = r1::engine::Engine::Create(o);
  if (!engine.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  Done done;
  done.left = static_cast<int>(*streams);
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < *streams; ++i) {
    r1::engine::EngineRequest r;
    for (int64_t j = 0; j < *prompt_len; ++j)
      r.prompt.push_back(static_cast<int32_t>(1000 + (i * 131 + j * 17) % 50000));
    r.max_tokens = static_cast<int32_t>(*max_tokens);
    r.ignore_eos = true;
    r.sink = std::make_shared<CountingSink>(&done);
    if (absl::Status s = (*engine)->Submit(std::move(r)); !s.ok()) {
      std::fprintf(stderr, "engine_bench: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  {
    std::unique_lock<std::mutex> lock(done.mu);
    done.cv.wait(lock, [&] { return done.left == 0; });
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Steps: prefill of all prompts (within the token budget) then max_tokens - 1 decode steps.
  std::printf("streams %lld, prompt %lld, max tokens %lld on %s: %lld tokens in %.2f s = %.0f tok/s\n",
              static_cast<long long>(*streams), static_cast<long long>(*prompt_len),
              static_cast<long long>(*max_tokens), (*engine)->device_name().c_str(),
              static_cast<long long>(done.tokens.load()), s, done.tokens.load() / s);
  (*engine)->Shutdown();
  return 0;
}
