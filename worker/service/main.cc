// r1-worker: serves one Qwen2 checkpoint over gRPC (Generate, GetLoad, grpc.health.v1) with
// continuous batching, plus Prometheus metrics on --metrics-listen.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/metrics_server.h"
#include "worker/engine/engine.h"
#include "worker/engine/host_memory.h"
#include "worker/service/inference_service.h"
#include "worker/service/prompt_codec.h"
#include "worker/service/server_credentials.h"
#include "worker/service/worker_metrics.h"

namespace {

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
  r1::Flags flags("r1-worker", "Serves a Qwen2 checkpoint over gRPC with continuous batching.");
  std::string* model = flags.String("model", "", "checkpoint directory (required)");
  std::string* listen = flags.String("listen", "127.0.0.1:50051",
                                     "gRPC address HOST:PORT (port 0: any free port)");
  std::string* device = flags.String("device", "auto", "auto, cpu, cuda or cuda:N");
  std::string* dtype = flags.String("dtype", "auto", "auto, bfloat16, float16 or float32");
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
          std::to_string(r1::engine::kDefaultCpuKvCacheMemory));
  double* kv_fraction = flags.Double(
      "kv-cache-fraction", 0.9,
      "on CUDA without --kv-cache-memory: the share of free device memory the KV cache takes, "
      "in (0, 1]");
  int64_t* block_size = flags.Int("block-size", 16, "tokens per KV-cache block");
  int64_t* prefill_chunk = flags.Int(
      "prefill-chunk", 512, "tokens fed per engine step (decodes plus prefill chunks)");
  int64_t* memory_limit = flags.Int(
      "memory-limit", 0, "when > 0, reported as device_memory_total_bytes (bytes)");
  std::string* chat_template =
      flags.String("chat-template", "auto", "auto, deepseek-r1 or chatml");
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
  flags.ParseOrExit(argc, argv);
  if (*keep_freed && !r1::engine::KeepFreedHostMemory()) {
    R1_LOG(WARNING) << "--keep-freed-memory: this C library has no such setting";
  }

  r1::LogLevel level;
  if (!r1::ParseLogLevel(*log_level, &level)) flags.Fail("--log-level: unknown level " + *log_level);
  r1::SetLogLevel(level);
  if (model->empty()) flags.Fail("--model is required");
  auto positive = [&](const char* name, int64_t v) {
    if (v <= 0) flags.Fail(std::string("--") + name + " must be > 0");
  };
  positive("max-running", *max_running);
  positive("block-size", *block_size);
  positive("prefill-chunk", *prefill_chunk);
  if (*kv_memory < 0) flags.Fail("--kv-cache-memory must be >= 0");
  if (!(*kv_fraction > 0 && *kv_fraction <= 1)) {
    flags.Fail("--kv-cache-fraction must be in (0, 1], got " + absl::StrCat(*kv_fraction));
  }
  positive("max-waiting", *max_waiting);
  if (*max_model_len < 0) flags.Fail("--max-model-len must be >= 0");
  if (*threads < 0) flags.Fail("--threads must be >= 0");
  if (*drain_timeout < 0) flags.Fail("--drain-timeout must be >= 0");
  if (*memory_limit < 0) flags.Fail("--memory-limit must be >= 0");
  std::string host;
  int port = 0;
  if (absl::Status s = r1::SplitHostPort(*listen, "--listen", &host, &port); !s.ok()) {
    flags.Fail(std::string(s.message()));
  }

  auto security =
      r1::service::WorkerSecurity::Load({*tls_cert, *tls_key, *tls_client_ca, *token_file});
  if (!security.ok()) flags.Fail(std::string(security.status().message()));

  auto codec = r1::service::LoadPromptCodec(*model, *chat_template);
  if (!codec.ok()) flags.Fail(std::string(codec.status().message()));

  r1::engine::EngineOptions eo;
  eo.model_dir = *model;
  eo.device = *device;
  eo.dtype = *dtype;
  eo.threads = static_cast<int32_t>(std::min<int64_t>(*threads, 1024));
  eo.max_running = static_cast<int32_t>(std::min<int64_t>(*max_running, 1 << 20));
  eo.max_waiting = static_cast<int32_t>(std::min<int64_t>(*max_waiting, 1 << 20));
  eo.max_model_len = static_cast<int32_t>(std::min<int64_t>(*max_model_len, INT32_MAX));
  eo.kv_cache_memory = *kv_memory;
  eo.kv_cache_fraction = *kv_fraction;
  eo.block_size = static_cast<int32_t>(std::min<int64_t>(*block_size, 1 << 16));
  eo.prefill_chunk = static_cast<int32_t>(std::min<int64_t>(*prefill_chunk, 1 << 20));
  eo.codec = *codec ? (*codec)->text_codec() : nullptr;
  auto engine = r1::engine::Engine::Create(eo);
  if (!engine.ok()) {
    std::cerr << "r1-worker: " << engine.status().message() << std::endl;
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
  int bound = 0;
  builder.AddListeningPort(*listen, security->credentials(), &bound);
  builder.RegisterService(security->Guard(&service));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    std::cerr << "r1-worker: cannot listen on " << *listen << std::endl;
    (*engine)->Shutdown();
    return 1;
  }
  // Load and warm-up ran in Engine::Create.
  server->GetHealthCheckService()->SetServingStatus(true);
  std::cout << "r1-worker: serving " << so.model_id << " on " << host << ":" << bound << " ("
            << security->Describe() << ")" << std::endl;

  int sig = 0;
  sigwait(&signals, &sig);
  R1_LOG(INFO) << "signal " << sig << ": draining (up to " << *drain_timeout << " s)";
  server->GetHealthCheckService()->SetServingStatus(false);
  service.StartDraining();
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(*drain_timeout * 1000));
  while (service.active_streams() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (service.active_streams() > 0) {
    R1_LOG(WARNING) << "drain timeout: cancelling " << service.active_streams() << " streams";
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  (*engine)->Shutdown();
  if (metrics_server) metrics_server->Stop();
  R1_LOG(INFO) << "drained, exiting";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
