// r1-worker: serves one Qwen2 or Llama checkpoint over gRPC (Generate, GetLoad,
// grpc.health.v1) with continuous batching, plus Prometheus metrics on --metrics-listen.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/metrics_server.h"
#include "common/port_check.h"
#include "worker/engine/engine.h"
#include "worker/engine/host_memory.h"
#include "worker/service/engine_watchdog.h"
#include "worker/service/generation_defaults.h"
#include "worker/service/inference_service.h"
#include "worker/service/memory_report.h"
#include "worker/service/output_flags.h"
#include "worker/service/prompt_codec.h"
#include "worker/service/server_credentials.h"
#include "worker/service/worker_metrics.h"

namespace {

constexpr char kServiceName[] = "r1serve.v1.Inference";

// Blocks SIGTERM/SIGINT in every thread; main waits for them with sigwait.
sigset_t BlockSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

int Run(int argc, char** argv) {
  sigset_t signals = BlockSignals();
  r1::Flags flags("r1-worker",
                  "Serves a Qwen2 or Llama checkpoint over gRPC with continuous batching.");
  std::string* model = flags.String("model", "", "checkpoint directory (required)");
  std::string* listen = flags.String("listen", "127.0.0.1:50051",
                                     "gRPC address HOST:PORT (port 0: any free port)");
  std::string* device = flags.String("device", "auto", "auto, cpu, cuda or cuda:N");
  std::string* dtype = flags.String("dtype", "auto", "auto (bfloat16 on CUDA and on CPUs with AVX512-BF16, else float32), bfloat16, float16 or float32");
  std::string* quantization = flags.String("quantization", "auto", "auto (the checkpoint's own: int8 for a compressed-tensors W8A8 checkpoint, int4 for an AutoAWQ GEMM one, else none), none, int8 (CPU: int8 linear layers with per-channel scales, quantized at load from a floating checkpoint; activations quantized per token), int4 (4-bit linear layers in groups with scales and zero points, quantized at load or from an AWQ checkpoint; CPU: activations int8 per token; CUDA: groups of 128, --dtype bfloat16 or float16, the int4 GEMV for steps of up to --int4-gemv-max-rows tokens), awq (an AWQ checkpoint, run as int4) or fp8 (CUDA, compute capability 8.9+, --dtype bfloat16: e4m3 linear layers with per-channel scales, quantized at load; activations e4m3 per token in GEMMs)");
  bool* int8_lm_head = flags.Bool("int8-lm-head", true, "with --quantization int8 or int4 on the CPU: lm_head int8 too (per-row scales, quantized at load; a W8A8 checkpoint keeps it floating; on CUDA it stays in --dtype); --int8-lm-head=false keeps it in --dtype");
  bool* fp8_lm_head = flags.Bool("fp8-lm-head", true, "with --quantization fp8: lm_head e4m3 too (per-row scales, quantized at load); --fp8-lm-head=false keeps it in --dtype");
  int64_t* int4_group = flags.Int("int4-group-size", 128, "with --quantization int4 on a floating checkpoint: columns per group (32, 64 or 128); an AWQ checkpoint brings its own");
  int64_t* threads = flags.Int("threads", 0, "CPU threads for the model; 0: one per core");
  std::string* metrics_listen =
      flags.String("metrics-listen", "", "HOST:PORT for GET /metrics (empty: off)");
  double* drain_timeout = flags.Double(
      "drain-timeout", 30, "seconds in-flight streams may take to finish after SIGTERM");
  int64_t* max_running = flags.Int("max-running", 64, "most sequences in one batch");
  int64_t* max_waiting =
      flags.Int("max-waiting", 256, "most requests queued; beyond it RESOURCE_EXHAUSTED");
  int64_t* max_model_len = flags.Int(
      "max-model-len", 0, "most tokens (prompt + output) per sequence; 0: the model's limit");
  int64_t* kv_memory = flags.Int(
      "kv-cache-memory", 0,
      "bytes for the KV cache (sets the block count); 0: on CUDA --kv-cache-fraction of the "
      "device memory free after loading the model, on CPU " +
          std::to_string(r1::engine::kDefaultCpuKvCacheMemory) + " or " +
          std::to_string(r1::engine::kDefaultCpuKvCacheTokens) + " tokens' worth, whichever is more");
  double* kv_fraction = flags.Double(
      "kv-cache-fraction", 0.9,
      "on CUDA without --kv-cache-memory: the share of free device memory the KV cache takes, "
      "in (0, 1]");
  std::string* kv_dtype = flags.String(
      "kv-cache-dtype", "auto",
      "auto (the model's dtype) or fp8 (e4m3 with a scale per token and KV head: about half the "
      "bytes; CUDA kernels only)");
  int64_t* block_size = flags.Int("block-size", 16, "tokens per KV-cache block");
  int64_t* prefill_chunk = flags.Int(
      "prefill-chunk", 0,
      "tokens fed per engine step (decodes plus prefill chunks); 0: 512 on CPU, 2048 on CUDA");
  int64_t* max_wait_steps = flags.Int(
      "max-wait-steps", 256,
      "engine steps after its arrival from which a request is served ahead of shorter prompts "
      "(no request starves behind a stream of short ones)");
  int64_t* admit_headroom = flags.Int(
      "admit-headroom-tokens", 64,
      "admit a waiting request only if the free KV blocks then still hold this many more tokens "
      "for each running sequence: under KV pressure, fewer admissions that are preempted again "
      "at once (0: admit whenever its first chunk fits)");
  bool* prefix_caching = flags.Bool(
      "enable-prefix-caching", true,
      "keep the full KV blocks of finished prompts and outputs for later requests that start "
      "the same way: their prefill skips the cached blocks");
  double* engine_stall_timeout = flags.Double(
      "engine-stall-timeout", 60,
      "seconds the engine thread may go without a step while it has work; then health says "
      "NOT_SERVING until it steps again (0: never)");
  std::string* fault_hang_file = flags.String(
      "fault-hang-engine-file", "",
      "testing: while this file exists the engine thread stops before its next step (a hung "
      "engine in a live process)");
  int64_t* memory_limit = flags.Int(
      "memory-limit", 0, "when > 0, reported as device_memory_total_bytes (bytes)");
  std::string* chat_template =
      flags.String("chat-template", "auto", "auto, deepseek-r1 or chatml");
  std::string* generation_config = flags.String(
      "generation-config", "auto",
      "auto: generation_config.json's temperature, top_p and top_k apply to requests that leave "
      "them unset (as vLLM); none: they do not");
  std::string* served_name =
      flags.String("served-model-name", "", "model id in load reports (default: --model's name)");
  std::string* log_level = flags.String("log-level", "info", "debug, info, warning or error");
  bool* keep_freed = flags.Bool(
      "keep-freed-memory", true,
      "keep freed host memory for reuse (one malloc arena, no mmap, no trim): large per-step "
      "buffers then cost no page faults; resident memory stays at its peak");
  std::string* tls_cert = flags.String("tls-cert", "", "PEM certificate (chain) for TLS on the gRPC port, with --tls-key (empty: plaintext)");
  std::string* tls_key = flags.String("tls-key", "", "PEM private key of --tls-cert");
  std::string* tls_client_ca = flags.String("tls-client-ca", "", "PEM CA bundle: clients must present a certificate it signed (mTLS; needs --tls-cert)");
  std::string* token_file = flags.String("auth-token-file", "", "file of accepted tokens, one a line: Inference calls must send 'authorization: Bearer TOKEN' (health checks stay open)");
  // Structured outputs and the thinking budget (output_flags.h).
  r1::service::OutputFlags output_flags = r1::service::AddOutputFlags(flags);
  // Kernel tuning (model/kernel_tuning.h), logged at start.
  r1::model::KernelTuningFlags tuning_flags(flags);
  flags.ParseOrExit(argc, argv);
  if (*keep_freed && !r1::engine::KeepFreedHostMemory()) {
    R1_LOG(WARNING) << "--keep-freed-memory: this C library has no such setting";
  }

  r1::LogLevel level;
  if (!r1::ParseLogLevel(*log_level, &level)) flags.Fail("--log-level: unknown level " + *log_level);
  r1::SetLogLevel(level);
  if (*drain_timeout < 0) flags.Fail("--drain-timeout must be >= 0");
  if (*memory_limit < 0) flags.Fail("--memory-limit must be >= 0");
  if (!(*engine_stall_timeout >= 0 && *engine_stall_timeout <= 1e8))
    flags.Fail("--engine-stall-timeout must be in [0, 1e8] seconds");
  std::string host;
  int port = 0;
  if (absl::Status s = r1::SplitHostPort(*listen, "--listen", &host, &port); !s.ok()) {
    flags.Fail(std::string(s.message()));
  }

  // A taken port is an error now, not after loading the model (and never a shared port:
  // SO_REUSEPORT is off below).
  if (absl::Status s = r1::CheckListenAddress(host, port); !s.ok()) {
    std::cerr << "r1-worker: --listen " << s.message() << std::endl;
    return 1;
  }
  auto generation = r1::service::LoadGenerationDefaults(*model, *generation_config);
  if (!generation.ok()) flags.Fail(std::string(generation.status().message()));

  auto security =
      r1::service::WorkerSecurity::Load({*tls_cert, *tls_key, *tls_client_ca, *token_file});
  if (!security.ok()) flags.Fail(std::string(security.status().message()));

  auto clamp32 = [](int64_t v) { return static_cast<int32_t>(std::clamp<int64_t>(v, INT32_MIN, INT32_MAX)); };
  r1::engine::EngineOptions eo;
  eo.model_dir = *model;
  eo.device = *device;
  eo.dtype = *dtype;
  eo.quantization = *quantization;
  eo.int8_lm_head = *int8_lm_head;
  eo.fp8_lm_head = *fp8_lm_head;
  eo.int4_group_size = *int4_group;
  eo.threads = clamp32(*threads);
  eo.max_running = clamp32(*max_running);
  eo.max_waiting = clamp32(*max_waiting);
  eo.max_model_len = clamp32(*max_model_len);
  eo.kv_cache_memory = *kv_memory;
  eo.kv_cache_fraction = *kv_fraction;
  eo.kv_cache_dtype = *kv_dtype;
  eo.block_size = clamp32(*block_size);
  eo.prefill_chunk = clamp32(*prefill_chunk);
  eo.max_wait_steps = clamp32(*max_wait_steps);
  eo.admit_headroom_tokens = clamp32(*admit_headroom);
  eo.enable_prefix_caching = *prefix_caching;
  eo.fault_hang_file = *fault_hang_file;
  eo.tuning = tuning_flags.Get();
  if (absl::Status v = r1::engine::ValidateEngineOptions(eo); !v.ok()) flags.Fail(std::string(v.message()));

  auto codec = r1::service::LoadPromptCodec(*model, *chat_template);
  if (!codec.ok()) flags.Fail(std::string(codec.status().message()));
  eo.codec = *codec ? (*codec)->text_codec() : nullptr;
  // Bad --grammar-* values fail now, not after the model has loaded.
  if (auto g = r1::grammar::CompilerOptionsFromFlags(output_flags.grammar); !g.ok())
    flags.Fail(std::string(g.status().message()));
  auto reasoning = r1::service::ReasoningFromFlags(output_flags, codec->get());
  if (!reasoning.ok()) flags.Fail(std::string(reasoning.status().message()));
  eo.reasoning = std::move(*reasoning);
  auto engine = r1::engine::Engine::Create(eo);
  if (!engine.ok()) {
    std::cerr << "r1-worker: " << engine.status().message() << std::endl;
    return 1;
  }
  auto compiler = r1::service::CompilerFromFlags(output_flags, codec->get(), (*engine)->vocab_size());
  if (!compiler.ok()) {
    std::cerr << "r1-worker: " << compiler.status().message() << std::endl;
    (*engine)->Shutdown();
    return 1;
  }
  if (!*codec) {
    R1_LOG(WARNING) << *model << " has no tokenizer: only token-id prompts work";
  }

  r1::service::WorkerMetrics metrics;
  r1::service::ServiceOptions so;
  so.model_id = *served_name;
  if (so.model_id.empty()) {
    std::string m = *model;
    while (m.size() > 1 && m.back() == '/') m.pop_back();
    so.model_id = m.substr(m.find_last_of('/') + 1);
  }
  so.memory_limit = *memory_limit;
  // What live work holds on CPU is measured against this (memory_report.h): the model, the
  // whole KV cache and the warm-up are in.
  so.resident_at_start = r1::service::ResidentMemoryBytes();
  so.generation = *generation;
  R1_LOG(INFO) << "sampling defaults for fields a request leaves unset: "
               << r1::service::DescribeDefaults(so.generation);
  so.compiler = compiler->get();
  r1::service::InferenceService service(engine->get(), *codec, &metrics, so);

  std::unique_ptr<r1::MetricsServer> metrics_server;
  if (!metrics_listen->empty()) {
    metrics_server = std::make_unique<r1::MetricsServer>(metrics.registry,
                                                         [&] { service.UpdateMetrics(); });
    auto mport = metrics_server->Start(*metrics_listen);
    if (!mport.ok()) {
      std::cerr << "r1-worker: " << mport.status().message() << std::endl;
      return 1;
    }
    std::cout << "r1-worker: metrics on " << host << ":" << *mport << std::endl;
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // Clients (the gateway) ping every few seconds to notice dead workers, also while a long
  // prefill sends no data: accept those pings instead of answering GOAWAY too_many_pings.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // gRPC sets SO_REUSEPORT by default: a second worker on this port would then start and take
  // half the connections. Off, a taken port fails the bind.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int bound = 0;
  builder.AddListeningPort(*listen, security->credentials(), &bound);
  builder.RegisterService(security->Guard(&service));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    absl::Status why = r1::CheckListenAddress(host, port);
    std::cerr << "r1-worker: cannot listen on " << *listen
              << (why.ok() ? "" : std::string(": ") + std::string(why.message())) << std::endl;
    (*engine)->Shutdown();
    return 1;
  }
  // Load and warm-up ran in Engine::Create. Health answers for the whole server ("") and
  // for the service by name, as grpc.health.v1 clients ask either.
  server->GetHealthCheckService()->SetServingStatus(true);
  server->GetHealthCheckService()->SetServingStatus(kServiceName, true);
  std::unique_ptr<r1::service::EngineWatchdog> watchdog;
  if (*engine_stall_timeout > 0) {
    watchdog = std::make_unique<r1::service::EngineWatchdog>(
        engine->get(),
        std::chrono::duration_cast<r1::Clock::Duration>(
            std::chrono::duration<double>(*engine_stall_timeout)),
        [&](bool stalled, r1::Clock::Duration for_how_long) {
          metrics.engine_stalled->Set(stalled ? 1 : 0);
          if (stalled) {
            R1_LOG(ERROR) << "engine thread made no step for "
                          << std::chrono::duration<double>(for_how_long).count()
                          << " s with work queued (--engine-stall-timeout): health NOT_SERVING";
          } else {
            R1_LOG(WARNING) << "engine thread steps again: health SERVING";
          }
          if (!service.draining()) server->GetHealthCheckService()->SetServingStatus(!stalled);
        });
    watchdog->Start();
  }
  std::cout << "r1-worker: serving " << so.model_id << " on " << host << ":" << bound << " ("
            << security->Describe() << ")" << std::endl;

  int sig = 0;
  sigwait(&signals, &sig);
  R1_LOG(INFO) << "signal " << sig << ": draining (up to " << *drain_timeout << " s)";
  service.StartDraining();  // first: the engine watchdog then leaves health alone
  server->GetHealthCheckService()->SetServingStatus(false);
  server->GetHealthCheckService()->SetServingStatus(kServiceName, false);
  const r1::Clock* clock = r1::SystemClock::Get();
  auto deadline = clock->Now() + std::chrono::milliseconds(static_cast<int64_t>(*drain_timeout * 1000));
  while (service.active_streams() > 0 && clock->Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (service.active_streams() > 0) {
    R1_LOG(WARNING) << "drain timeout: cancelling " << service.active_streams() << " streams";
  }
  if (watchdog) watchdog->Stop();
  server->Shutdown(clock->WallNow() + std::chrono::milliseconds(500));
  (*engine)->Shutdown();
  if (metrics_server) metrics_server->Stop();
  R1_LOG(INFO) << "drained, exiting";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
