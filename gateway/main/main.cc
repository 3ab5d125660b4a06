// r1-gateway: OpenAI-compatible HTTP in front of r1-worker gRPC servers.
#include <malloc.h>

#include <csignal>
#include <cstdio>
#include <iostream>

#include "common/api_keys.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/metrics_server.h"
#include "common/port_check.h"
#include "gateway/http/server.h"
#include "gateway/main/gateway.h"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("r1-gateway",
                  "OpenAI-compatible HTTP gateway: routes /v1/chat/completions and "
                  "/v1/completions to r1-worker gRPC servers.");
  std::string* listen = flags.String("listen", "127.0.0.1:8080", "HOST:PORT to serve HTTP on (port 0: any free port, printed)");
  std::string* workers = flags.String("workers", "", "worker HOST:PORT[,HOST:PORT...]");
  std::string* workers_dns = flags.String("workers-dns", "", "NAME:PORT resolved to workers (e.g. a Kubernetes headless service)");
  double* dns_refresh = flags.Double("dns-refresh", 10, "seconds between DNS re-resolutions");
  std::string* api_key_file = flags.String("api-key-file", "", "file with one API key per line; when set, /v1 routes need 'Authorization: Bearer KEY'");
  int64_t* max_body = flags.Int("max-body-bytes", 1 << 20, "largest request body (413 above)");
  int64_t* max_header = flags.Int("max-header-bytes", 16 << 10, "largest request header (431 above)");
  int64_t* max_connections = flags.Int("max-connections", 10000, "most open client connections");
  int64_t* max_concurrent = flags.Int("max-concurrent-requests", 1024, "most sequences in flight, a request counting one per choice (n x prompts); 429 above, 400 for a request larger than the whole limit");
  int64_t* header_timeout = flags.Int("header-timeout", 10, "seconds for a request's header: from accept on a new connection, from the request's first byte on a kept-alive one");
  int64_t* idle_timeout = flags.Int("idle-timeout", 60, "seconds a kept-alive connection may wait for its next request");
  double* lingering_time = flags.Double("lingering-time", 2, "after a response that closes the connection, the most seconds spent reading and dropping what the client still sends before closing");
  int64_t* body_timeout = flags.Int("body-timeout", 30, "seconds to receive a request body");
  int64_t* max_buffered_output = flags.Int("max-buffered-output-bytes", 64 << 10, "a connection's output queued in the gateway at which its request stops reading from the workers (gRPC flow control then holds them); reading resumes below half of it");
  double* write_timeout = flags.Double("write-timeout", 30, "seconds a response write may wait while the client acknowledges no byte (it stopped reading) before the connection is reset and its request cancelled on the workers (0: no limit)");
  double* request_timeout = flags.Double("request-timeout", 600, "deadline in seconds of one attempt's Generate call (each retry gets its own)");
  double* first_token_timeout = flags.Double("first-token-timeout", 120, "seconds an attempt may wait for its first token; then the worker counts as failed and the request is retried elsewhere (0: no limit)");
  double* stall_timeout = flags.Double("stall-timeout", 60, "seconds a stream may go without a message after its first token; then the worker is suspect and the stream resumes elsewhere (0: no limit)");
  int64_t* max_resumes = flags.Int("max-resumes", 3, "most times one choice is resumed on another worker after its worker failed mid-stream (0: never)");
  std::string* routing = flags.String("routing", "prefix-aware", "least-connections, load (reported running + waiting and KV use) or prefix-aware (load plus the predicted cached prefix)");
  double* balance_abs = flags.Double("routing-balance-abs", 2, "prefix-aware: requests a worker may be above the least loaded one and still be chosen for its cached prefix");
  double* balance_rel = flags.Double("routing-balance-rel", 0.5, "prefix-aware: ... or this share of the least loaded one's load, when larger");
  double* breaker_threshold = flags.Double("breaker-memory-threshold", 0.90, "a worker whose memory held by live work is above this fraction of its total is busy: no new requests until a load report shows less");
  int64_t* breaker_failures = flags.Int("breaker-failures", 5, "consecutive failures that eject a worker (open its breaker)");
  int64_t* breaker_cooldown = flags.Int("breaker-cooldown-ms", 5000, "milliseconds the first ejection lasts before a half-open probe; each ejection in a row doubles it");
  int64_t* breaker_max_cooldown = flags.Int("breaker-max-cooldown-ms", 60000, "most milliseconds one ejection lasts; a worker closed this long starts again from --breaker-cooldown-ms");
  double* max_ejection = flags.Double("max-ejection-percent", 50, "most workers ejected for failures at once, in percent (at least one)");
  double* panic_threshold = flags.Double("panic-threshold", 50, "when fewer than this percent of the healthy workers are left un-ejected, ignore ejections (panic mode; 0: never)");
  int64_t* max_attempts = flags.Int("max-attempts", 3, "most attempts per request (first one included)");
  int64_t* retry_base = flags.Int("retry-base-ms", 25, "backoff base interval in milliseconds (full jitter)");
  int64_t* retry_cap = flags.Int("retry-cap-ms", 250, "backoff cap in milliseconds");
  double* budget_percent = flags.Double("retry-budget-percent", 20, "retries in flight allowed, as a percentage of requests in flight");
  int64_t* budget_min = flags.Int("retry-budget-min", 10, "retries in flight always allowed");
  int64_t* health_interval = flags.Int("health-interval-ms", 1000, "milliseconds from one health and load poll of a worker to its next (each worker on its own schedule)");
  int64_t* health_timeout = flags.Int("health-timeout-ms", 1000, "milliseconds a health or load poll may take");
  int64_t* suspect_after = flags.Int("suspect-after-failed-checks", 2, "failed health polls in a row that make a worker suspect: its streams resume and its waiting requests retry elsewhere");
  bool* no_split = flags.Bool("no-reasoning-split", false, "do not split '...</think>' into reasoning_content");
  bool* ignore_unknown = flags.Bool("ignore-unknown-fields", false, "log and ignore request fields the gateway does not know (vLLM's way) instead of answering 400");
  int64_t* threads = flags.Int("threads", 2, "HTTP io threads");
  double* drain_timeout = flags.Double("drain-timeout", 30, "seconds requests in flight may take to finish after SIGTERM");
  std::string* metrics_listen = flags.String("metrics-listen", "", "HOST:PORT to serve GET /metrics on instead of the API port (its worker labels name internal addresses)");
  std::string* worker_tls_ca = flags.String("worker-tls-ca", "", "PEM CA bundle: talk TLS to workers and check their certificates against it (empty: plaintext)");
  std::string* worker_tls_cert = flags.String("worker-tls-cert", "", "PEM client certificate presented to workers (mTLS), with --worker-tls-key");
  std::string* worker_tls_key = flags.String("worker-tls-key", "", "PEM private key of --worker-tls-cert");
  std::string* worker_tls_name = flags.String("worker-tls-server-name", "", "name the workers' certificates must carry (default: the host of each worker address)");
  int64_t* stream_window = flags.Int("worker-stream-window-bytes", 1024, "HTTP/2 flow-control window of each worker stream: what a worker may send ahead of what the gateway read (a stream paused for a slow client holds at most this much in the gateway)");
  std::string* worker_token = flags.String("worker-token-file", "", "file whose first token is sent to workers as 'authorization: Bearer TOKEN'");
  std::string* log_level = flags.String("log-level", "info", "debug|info|warning|error");
  flags.ParseOrExit(argc, argv);

  r1::LogLevel level;
  if (!r1::ParseLogLevel(*log_level, &level)) flags.Fail("--log-level must be debug, info, warning or error");
  r1::SetLogLevel(level);
  if (workers->empty() && workers_dns->empty()) flags.Fail("give --workers or --workers-dns");
  if (*max_body <= 0 || *max_header <= 0 || *max_connections <= 0 || *max_concurrent <= 0)
    flags.Fail("limits must be positive");
  if (*breaker_threshold <= 0 || *breaker_threshold > 1) flags.Fail("--breaker-memory-threshold must be in (0, 1]");
  if (*max_attempts < 1) flags.Fail("--max-attempts must be at least 1");
  if (*retry_base < 1 || *retry_cap < *retry_base) flags.Fail("need 1 <= --retry-base-ms <= --retry-cap-ms");
  if (*threads < 1 || *threads > 256) flags.Fail("--threads must be in [1, 256]");
  if (*health_interval < 10) flags.Fail("--health-interval-ms must be at least 10");
  if (*breaker_failures < 1 || *breaker_cooldown < 0 || *breaker_max_cooldown < *breaker_cooldown)
    flags.Fail("need --breaker-failures >= 1 and 0 <= --breaker-cooldown-ms <= --breaker-max-cooldown-ms");
  if (!(*max_ejection >= 0 && *max_ejection <= 100)) flags.Fail("--max-ejection-percent must be in [0, 100]");
  if (!(*panic_threshold >= 0 && *panic_threshold <= 100)) flags.Fail("--panic-threshold must be in [0, 100]");
  if (*health_timeout < 10) flags.Fail("--health-timeout-ms must be at least 10");
  if (*suspect_after < 1) flags.Fail("--suspect-after-failed-checks must be at least 1");
  if (*max_resumes < 0 || *max_resumes > 1000) flags.Fail("--max-resumes must be in [0, 1000]");
  r1::gw::RoutingPolicy policy;
  if (!r1::gw::ParseRoutingPolicy(*routing, &policy))
    flags.Fail("--routing must be least-connections, load or prefix-aware");
  if (!(*balance_abs >= 0) || !(*balance_rel >= 0))
    flags.Fail("--routing-balance-abs and --routing-balance-rel must be >= 0");
  if (*dns_refresh <= 0) flags.Fail("--dns-refresh must be positive");
  if (*drain_timeout < 0) flags.Fail("--drain-timeout must be >= 0");
  if (*header_timeout < 1 || *idle_timeout < 1 || *body_timeout < 1 || *request_timeout <= 0)
    flags.Fail("timeouts must be positive");
  // Durations are held in nanoseconds: keep them far from overflowing (1e8 s is 3 years).
  if (!(*request_timeout <= 1e8)) flags.Fail("--request-timeout must be at most 1e8 seconds");
  if (!(*first_token_timeout >= 0 && *first_token_timeout <= 1e8))
    flags.Fail("--first-token-timeout must be in [0, 1e8] seconds");
  if (!(*stall_timeout >= 0 && *stall_timeout <= 1e8))
    flags.Fail("--stall-timeout must be in [0, 1e8] seconds");
  if (!(*lingering_time >= 0 && *lingering_time <= 3600)) flags.Fail("--lingering-time must be in [0, 3600]");
  if (!(*write_timeout >= 0 && *write_timeout <= 1e8)) flags.Fail("--write-timeout must be in [0, 1e8] seconds");
  if (*max_buffered_output < 1024) flags.Fail("--max-buffered-output-bytes must be at least 1024");
  if (*stream_window < 1024 || *stream_window > (1 << 30))
    flags.Fail("--worker-stream-window-bytes must be in [1024, 2^30]");

  r1::gw::GatewayOptions gopts;
  if (!api_key_file->empty()) {
    auto keys = r1::LoadKeyFile(*api_key_file);
    if (!keys.ok()) flags.Fail(std::string(keys.status().message()));
    gopts.api_keys = *keys;
  }
  gopts.max_concurrent_requests = *max_concurrent;
  gopts.retry.max_attempts = static_cast<int>(*max_attempts);
  gopts.retry.base_ms = static_cast<uint64_t>(*retry_base);
  gopts.retry.cap_ms = static_cast<uint64_t>(*retry_cap);
  gopts.retry.budget_percent = *budget_percent;
  gopts.retry.budget_min = static_cast<uint32_t>(std::max<int64_t>(0, *budget_min));
  gopts.reasoning_split = !*no_split;
  gopts.ignore_unknown_fields = *ignore_unknown;
  gopts.request_timeout_s = *request_timeout;
  gopts.first_token_timeout_s = *first_token_timeout;
  gopts.stall_timeout_s = *stall_timeout;
  gopts.max_resumes = static_cast<int>(*max_resumes);
  gopts.metrics_route = metrics_listen->empty();

  r1::gw::PoolOptions popts;
  popts.static_workers = r1::SplitCommaList(*workers);
  for (const auto& w : popts.static_workers) {
    std::string host;
    int port;
    if (!r1::gw::http::ParseHostPort(w, &host, &port).ok() || port == 0)
      flags.Fail("bad worker address '" + w + "' (want HOST:PORT)");
  }
  {
    std::string host;
    int port;
    absl::Status ls = r1::gw::http::ParseHostPort(*listen, &host, &port);
    if (!ls.ok()) flags.Fail("--listen: " + std::string(ls.message()));
    // A taken port: one clear line and a non-zero exit.
    if (absl::Status free = r1::CheckListenAddress(host, port); !free.ok()) {
      std::fprintf(stderr, "r1-gateway: --listen %s\n", std::string(free.message()).c_str());
      return 1;
    }
  }
  popts.dns_name = *workers_dns;
  popts.dns_refresh_s = *dns_refresh;
  popts.health_interval_ms = static_cast<int>(*health_interval);
  popts.memory_threshold = *breaker_threshold;
  popts.breaker.failure_threshold = static_cast<int>(*breaker_failures);
  popts.breaker.cooldown = std::chrono::milliseconds(*breaker_cooldown);
  popts.stream_window_bytes = static_cast<int>(*stream_window);
  popts.breaker.max_cooldown = std::chrono::milliseconds(*breaker_max_cooldown);
  popts.health_timeout_ms = static_cast<int>(*health_timeout);
  popts.suspect_after_failed_checks = static_cast<int>(*suspect_after);
  popts.max_ejection_percent = *max_ejection;
  popts.panic_threshold_percent = *panic_threshold;
  popts.routing.policy = policy;
  popts.routing.balance_abs = *balance_abs;
  popts.routing.balance_rel = *balance_rel;
  auto security = r1::gw::LoadChannelSecurity(
      {*worker_tls_ca, *worker_tls_cert, *worker_tls_key, *worker_tls_name, *worker_token});
  if (!security.ok()) flags.Fail(std::string(security.status().message()));
  popts.security = std::move(*security);

  r1::SystemRandom random;
  r1::gw::GatewayMetrics metrics;
  r1::gw::WorkerPool pool(popts, r1::SystemClock::Get(), &random);
  r1::gw::Gateway gateway(gopts, &pool, &metrics, r1::SystemClock::Get(), &random);

  r1::gw::http::ServerOptions sopts;
  sopts.max_body_bytes = static_cast<uint64_t>(*max_body);
  sopts.max_header_bytes = static_cast<uint32_t>(*max_header);
  sopts.max_connections = *max_connections;
  sopts.header_timeout = std::chrono::seconds(*header_timeout);
  sopts.idle_timeout = std::chrono::seconds(*idle_timeout);
  sopts.body_timeout = std::chrono::seconds(*body_timeout);
  sopts.lingering_time = std::chrono::milliseconds(static_cast<int64_t>(*lingering_time * 1000));
  sopts.max_buffered_output_bytes = static_cast<uint64_t>(*max_buffered_output);
  sopts.write_timeout = std::chrono::milliseconds(static_cast<int64_t>(*write_timeout * 1000));
  sopts.threads = static_cast<int>(*threads);
  sopts.on_refused = [&metrics](unsigned status) {
    metrics.Rejected(status == 413 ? "too_large" : "bad_request");
    metrics.Request("other", status);
  };
  r1::gw::http::Server server(sopts, [&gateway](const auto& s, r1::gw::http::Request&& r) {
    gateway.Handle(s, std::move(r));
  });
  metrics.SetConnectionCount([&server] { return server.connections(); });

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
  pool.Start();
  absl::Status st = server.Start(*listen);
  if (!st.ok()) {
    std::fprintf(stderr, "r1-gateway: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  std::unique_ptr<r1::MetricsServer> metrics_server;
  if (!metrics_listen->empty()) {
    metrics_server = std::make_unique<r1::MetricsServer>(metrics.registry(),
                                                         [&] { metrics.Refresh(pool); });
    auto mport = metrics_server->Start(*metrics_listen);
    if (!mport.ok()) {
      std::fprintf(stderr, "r1-gateway: %s\n", std::string(mport.status().message()).c_str());
      return 1;
    }
    std::printf("METRICS %d\n", *mport);
  }
  const r1::gw::ChannelSecurity& sec = popts.security;
  R1_LOG(INFO) << "r1-gateway listening on port " << server.port() << " with "
               << pool.Snapshot().size() << " worker(s), routing " << *routing
               << ", reached over " << (!sec.tls() ? "plaintext" : sec.cert.empty() ? "TLS" : "mTLS")
               << (sec.token.empty() ? "" : " + token");
  std::printf("LISTENING %d\n", server.port());
  std::fflush(stdout);
  // Freed memory goes back to the system: glibc keeps what the gateway's threads freed in their
  // arenas, and after a burst (hundreds of streams, slow readers) that stayed resident for
  // good. Every 5 s, when requests have ended since the last look, malloc_trim returns it.
  int64_t seen_requests = 0;
  for (int tick = 1; !g_stop; ++tick) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (tick % 50 != 0) continue;
    const int64_t now_requests = gateway.context()->active_requests.load();
    if (now_requests < seen_requests) malloc_trim(0);
    seen_requests = now_requests;
  }
  // Drain: no new connections, /readyz 503, requests in flight may finish.
  R1_LOG(INFO) << "r1-gateway draining " << gateway.context()->active_requests.load()
               << " request(s)";
  gateway.context()->draining = true;
  server.StopAccepting();
  const r1::Clock* clock = r1::SystemClock::Get();
  auto drain_end =
      clock->Now() + std::chrono::milliseconds(static_cast<int64_t>(*drain_timeout * 1000));
  while (gateway.context()->active_requests > 0 && clock->Now() < drain_end)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // last bytes out
  R1_LOG(INFO) << "r1-gateway stopping";
  server.Stop();
  if (metrics_server) metrics_server->Stop();
  pool.Stop();
  return 0;
}
