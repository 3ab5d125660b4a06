#include "gateway/main/gateway.h"

#include "common/log.h"
#include "common/api_keys.h"
#include "gateway/main/exchange.h"
#include "gateway/main/models.h"
#include "gateway/main/tokenize_route.h"
#include "gateway/openai/response.h"
#include "gateway/upstream/status_map.h"

namespace r1::gw {

namespace bhttp = boost::beast::http;

namespace {
Clock::Duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::Duration>(std::chrono::duration<double>(s));
}
}  // namespace

Clock::Duration GatewayContext::WithinDeadline(double timeout_s) const {
  return timeout_s < options.request_timeout_s ? Seconds(timeout_s) : Clock::Duration::zero();
}

GatewayContext::GatewayContext(GatewayOptions options_in, WorkerPool* pool_in,
                               GatewayMetrics* metrics_in, const Clock* clock_in,
                               Random* random_in, StartCallFn start_call)
    : options(std::move(options_in)),
      pool(pool_in),
      metrics(metrics_in),
      clock(clock_in),
      random(random_in),
      retry(options.retry, &active_requests, random_in),
      // A timeout past the call's deadline would never fire: none.
      attempt_env{clock_in, std::move(start_call), WithinDeadline(options.first_token_timeout_s),
                  WithinDeadline(options.stall_timeout_s), Seconds(options.request_timeout_s)} {}

int64_t UnixSeconds(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::seconds>(clock.WallNow().time_since_epoch())
      .count();
}

void SendError(GatewayContext* ctx, ResponseSink& sink, const std::string& route,
               unsigned status, std::string_view type, std::string_view message,
               std::string_view param, std::string_view code, const http::Headers& extra) {
  ctx->metrics->Request(route, status);
  sink.SendResponse(status, "application/json", ErrorJson(message, type, param, code), extra);
}

Gateway::Gateway(GatewayOptions options, WorkerPool* pool, GatewayMetrics* metrics,
                 const Clock* clock, Random* random, StartCallFn start_call)
    : ctx_(std::move(options), pool, metrics, clock, random, std::move(start_call)) {
  using S = std::shared_ptr<http::Session>;
  router_.Add(bhttp::verb::get, "/healthz", [this](const S& s, http::Request&&) {
    ctx_.metrics->Request("/healthz", 200);
    s->SendResponse(200, "text/plain", "ok\n");
  });
  router_.Add(bhttp::verb::get, "/readyz", [this](const S& s, http::Request&&) {
    bool ready = !ctx_.draining && ctx_.pool->AnyHealthy();
    ctx_.metrics->Request("/readyz", ready ? 200 : 503);
    s->SendResponse(ready ? 200 : 503, "text/plain", ready ? "ready\n" : "no healthy worker\n");
  });
  if (ctx_.options.metrics_route) {
    router_.Add(bhttp::verb::get, "/metrics", [this](const S& s, http::Request&&) {
      ctx_.metrics->Request("/metrics", 200);
      s->SendResponse(200, "text/plain; version=0.0.4", ctx_.metrics->Serialize(*ctx_.pool));
    });
  }
  // vLLM's probe path: 200 while some worker serves (as /readyz), else 503.
  router_.Add(bhttp::verb::get, "/health", [this](const S& s, http::Request&&) {
    bool ready = !ctx_.draining && ctx_.pool->AnyHealthy();
    ctx_.metrics->Request("/health", ready ? 200 : 503);
    s->SendResponse(ready ? 200 : 503, "text/plain", "");
  });
  router_.Add(bhttp::verb::get, "/version", [this](const S& s, http::Request&&) {
    ctx_.metrics->Request("/version", 200);
    s->SendResponse(200, "application/json", "{\"version\":\"" R1SERVE_VERSION "\"}");
  });
  router_.Add(bhttp::verb::get, "/v1/models", [this](const S& s, http::Request&&) {
    ctx_.metrics->Request("/v1/models", 200);
    s->SendResponse(200, "application/json",
                    ModelsResponse(ModelCards(*ctx_.pool), UnixSeconds(*ctx_.clock)));
  });
  router_.AddPrefix(bhttp::verb::get, "/v1/models/", [this](const S& s, http::Request&& r) {
    std::string_view path = http::PathOf(std::string_view(r.target().data(), r.target().size()));
    std::string id = http::PercentDecode(path.substr(std::string_view("/v1/models/").size()));
    SessionSink sink(s);
    auto report = FindModel(*ctx_.pool, id);
    if (!report) {
      SendError(&ctx_, sink, "/v1/models/{id}", 404, "invalid_request_error",
                ModelNotFoundMessage(id), "model", "model_not_found");
      return;
    }
    ctx_.metrics->Request("/v1/models/{id}", 200);
    s->SendResponse(200, "application/json", ModelJson(CardOf(*report), UnixSeconds(*ctx_.clock)));
  });
  router_.Add(bhttp::verb::post, "/tokenize", [this](const S& s, http::Request&& r) {
    HandleTokenize(&ctx_, s, std::move(r), /*detokenize=*/false);
  });
  router_.Add(bhttp::verb::post, "/detokenize", [this](const S& s, http::Request&& r) {
    HandleTokenize(&ctx_, s, std::move(r), /*detokenize=*/true);
  });
  router_.Add(bhttp::verb::post, "/v1/chat/completions", [this](const S& s, http::Request&& r) {
    Generate(s, std::move(r), true);
  });
  router_.Add(bhttp::verb::post, "/v1/completions", [this](const S& s, http::Request&& r) {
    Generate(s, std::move(r), false);
  });
}

void Gateway::Handle(const std::shared_ptr<http::Session>& session, http::Request&& request) {
  std::string_view path = http::PathOf(std::string_view(request.target().data(), request.target().size()));
  unsigned status = 0;
  const http::Router::Route* route = router_.Find(request.method(), path, &status);
  const std::string route_label =
      !route ? "other" : path.substr(0, 11) == "/v1/models/" ? "/v1/models/{id}" : std::string(path);
  SessionSink sink(session);
  if (path.substr(0, 4) == "/v1/" && !ctx_.options.api_keys.empty()) {
    auto auth = request[bhttp::field::authorization];
    if (!Authorized(std::string_view(auth.data(), auth.size()), ctx_.options.api_keys)) {
      ctx_.metrics->Rejected("unauthorized");
      SendError(&ctx_, sink, route_label, 401, "invalid_request_error",
                "Incorrect API key provided. Pass it as 'Authorization: Bearer KEY'.", "",
                "invalid_api_key", {{"WWW-Authenticate", "Bearer"}});
      return;
    }
  }
  if (!route) {
    http::Headers allow;
    if (status == 405) allow.emplace_back("Allow", router_.Allow(path));
    SendError(&ctx_, sink, route_label, status, "invalid_request_error",
              status == 404 ? "no such route: " + EscapeForLog(path, 100)
                            : "method not allowed on " + EscapeForLog(path, 100),
              "", "", allow);
    return;
  }
  (*route)(session, std::move(request));
}

void Gateway::Generate(const std::shared_ptr<http::Session>& session, http::Request&& request,
                       bool chat) {
  const std::string route = chat ? "/v1/chat/completions" : "/v1/completions";
  auto sink = std::make_shared<SessionSink>(session);
  ParseOptions popts;
  popts.ignore_unknown_fields = ctx_.options.ignore_unknown_fields;
  auto params =
      ParseGenRequest(chat ? ApiKind::kChat : ApiKind::kCompletion, request.body(), popts);
  if (!params.ok()) {
    ctx_.metrics->Rejected("bad_request");
    R1_LOG(DEBUG) << "bad request on " << route << ": " << EscapeForLog(std::string(params.status().message()));
    HttpErrorKind kind = HttpForStatus(params.status().code());
    SendError(&ctx_, *sink, route, kind.http_status, kind.type,
              std::string(params.status().message()), ParamOf(params.status()));
    return;
  }
  // Routing by model: an unknown model is a 404, as with OpenAI and vLLM. Before any worker
  // reported (none healthy yet) the request goes on and gets the 503 of "no worker".
  const std::vector<std::string> served = ctx_.pool->ModelIds();
  if (!served.empty() && std::find(served.begin(), served.end(), params->model) == served.end()) {
    ctx_.metrics->Rejected("bad_request");
    SendError(&ctx_, *sink, route, 404, "invalid_request_error",
              ModelNotFoundMessage(params->model), "model", "model_not_found");
    return;
  }
  if (!params->tools_json.empty()) {
    auto report = FindModel(*ctx_.pool, params->model);
    if (report && !report->tools()) {
      ctx_.metrics->Rejected("bad_request");
      SendError(&ctx_, *sink, route, 400, "invalid_request_error",
                "the chat template of '" + params->model + "' (" +
                    (report->chat_template().empty() ? "none" : report->chat_template()) +
                    ") has no tool support",
                "tools");
      return;
    }
  }
  // The limit counts sequences: n choices of each prompt are n worker streams.
  const int64_t sequences =
      static_cast<int64_t>(params->n) * static_cast<int64_t>(chat ? 1 : params->prompts.size());
  const int64_t limit = ctx_.options.max_concurrent_requests;
  if (sequences > limit) {
    ctx_.metrics->Rejected("bad_request");
    SendError(&ctx_, *sink, route, 400, "invalid_request_error",
              "this request asks for " + std::to_string(sequences) +
                  " sequences (n x prompts); the gateway runs at most " + std::to_string(limit) +
                  " at a time",
              "n");
    return;
  }
  if (ctx_.active_sequences.fetch_add(sequences) + sequences > limit) {
    ctx_.active_sequences -= sequences;
    ctx_.metrics->Rejected("overload");
    SendError(&ctx_, *sink, route, 429, "rate_limit_error",
              "too many concurrent requests; retry later", "", "rate_limit_exceeded",
              {{"Retry-After", std::to_string(ctx_.options.retry_after_s)}});
    return;
  }
  ++ctx_.active_requests;  // the exchange's Finish counts it out
  // The sequences stay counted until the exchange is gone, which is after every worker stream
  // it started has ended (each holds a reference until its call is done).
  GatewayContext* ctx = &ctx_;
  std::shared_ptr<Exchange> exchange(
      new Exchange(&ctx_, std::move(sink), std::make_shared<AsioStrand>(session->executor()),
                   std::move(*params), route),
      [ctx, sequences](Exchange* e) {
        delete e;
        ctx->active_sequences -= sequences;
      });
  exchange->Start();
}

}  // namespace r1::gw
