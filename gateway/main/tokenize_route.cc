#include "gateway/main/tokenize_route.h"

#include <boost/json.hpp>

#include "absl/strings/str_cat.h"
#include "gateway/main/models.h"
#include "gateway/main/proto_build.h"
#include "gateway/openai/tool_request.h"
#include "gateway/upstream/status_map.h"

namespace r1::gw {
namespace json = boost::json;

namespace {

constexpr double kTokenizeTimeoutS = 30;

// A unary call's state until its callback ran (gRPC's callback API owns no memory).
template <typename Req, typename Resp>
struct UnaryCall {
  grpc::ClientContext context;
  Req request;
  Resp response;
  std::shared_ptr<Worker> worker;  // keeps the stub alive
};

absl::Status Bad(std::string_view param, std::string_view message) {
  return InvalidParam(param, message);
}

const json::value* Get(const json::object& o, std::string_view name) {
  auto it = o.find(name);
  return it == o.end() || it->value().is_null() ? nullptr : &it->value();
}

// Only the fields vLLM's /tokenize and /detokenize take; the defaults r1serve cannot change
// are refused when set otherwise.
absl::Status CheckKeys(const json::object& o, bool detokenize) {
  for (const auto& kv : o) {
    std::string_view k(kv.key().data(), kv.key().size());
    bool known = k == "model" || (detokenize ? k == "tokens"
                                             : (k == "prompt" || k == "messages" || k == "tools" ||
                                                k == "add_special_tokens" ||
                                                k == "add_generation_prompt" ||
                                                k == "return_token_strs"));
    if (!known) return Bad(k, "Unrecognized request argument supplied: " + std::string(k));
  }
  if (const json::value* v = Get(o, "add_special_tokens"); v && !(v->is_bool() && !v->get_bool()))
    return Bad("add_special_tokens", "prompts are tokenized as given: add_special_tokens must be false");
  if (const json::value* v = Get(o, "add_generation_prompt"); v && !(v->is_bool() && v->get_bool()))
    return Bad("add_generation_prompt", "the rendered chat always ends with the generation prompt");
  return absl::OkStatus();
}

absl::Status BuildTokenize(const json::object& o, r1serve::v1::TokenizeRequest* req,
                           bool* token_strs) {
  if (const json::value* v = Get(o, "return_token_strs")) {
    if (!v->is_bool()) return Bad("return_token_strs", "'return_token_strs' must be a boolean");
    *token_strs = v->get_bool();
  }
  const json::value* prompt = Get(o, "prompt");
  const json::value* messages = Get(o, "messages");
  if (!!prompt == !!messages) return Bad("prompt", "give one of 'prompt' or 'messages'");
  if (prompt) {
    if (!prompt->is_string()) return Bad("prompt", "'prompt' must be a string");
    req->set_text(std::string(prompt->get_string()));
    return absl::OkStatus();
  }
  GenParams p;
  p.kind = ApiKind::kChat;
  R1_RETURN_IF_ERROR(ParseChatMessages(o, &p));
  R1_RETURN_IF_ERROR(ParseTools(o, &p));
  FillChatPrompt(p, req->mutable_chat());
  return absl::OkStatus();
}

absl::Status BuildDetokenize(const json::object& o, r1serve::v1::DetokenizeRequest* req) {
  const json::value* v = Get(o, "tokens");
  if (!v || !v->is_array()) return Bad("tokens", "'tokens' must be an array of token ids");
  for (const json::value& e : v->get_array()) {
    if (!e.is_int64() && !e.is_uint64()) return Bad("tokens", "'tokens' must hold integers");
    int64_t id = e.is_int64() ? e.get_int64() : static_cast<int64_t>(e.get_uint64());
    if (id < 0 || id > INT32_MAX) return Bad("tokens", "'tokens' holds an out-of-range id");
    req->add_token_ids(static_cast<int32_t>(id));
  }
  return absl::OkStatus();
}

// A healthy worker serving `model` (any model when empty), least busy first.
std::shared_ptr<Worker> PickWorker(WorkerPool& pool, const std::string& model) {
  std::shared_ptr<Worker> best;
  for (auto& w : pool.Snapshot()) {
    if (w->removed || !w->healthy || (!model.empty() && !w->Serves(model))) continue;
    if (!best || w->active < best->active) best = w;
  }
  return best;
}

template <typename Call>
void Finish(GatewayContext* ctx, const std::shared_ptr<http::Session>& session,
            const std::string& route, const grpc::Status& status, std::string body) {
  session->Post([ctx, session, route, status, body = std::move(body)]() mutable {
    SessionSink sink(session);
    if (!status.ok()) {
      HttpErrorKind kind = HttpForStatus(status.error_code());
      SendError(ctx, sink, route, kind.http_status, kind.type, status.error_message(), "",
                CodeLabel(status.error_code()));
      return;
    }
    ctx->metrics->Request(route, 200);
    sink.SendResponse(200, "application/json", std::move(body), {});
  });
}

}  // namespace

void HandleTokenize(GatewayContext* ctx, const std::shared_ptr<http::Session>& session,
                    http::Request&& request, bool detokenize) {
  const std::string route = detokenize ? "/detokenize" : "/tokenize";
  SessionSink sink(session);
  auto fail = [&](const absl::Status& s) {
    ctx->metrics->Rejected("bad_request");
    SendError(ctx, sink, route, 400, "invalid_request_error", std::string(s.message()), ParamOf(s));
  };
  boost::system::error_code ec;
  json::value root = json::parse(request.body(), ec);
  if (ec || !root.is_object()) return fail(Bad("", "the request body must be a JSON object"));
  const json::object& o = root.get_object();
  if (absl::Status s = CheckKeys(o, detokenize); !s.ok()) return fail(s);
  std::string model;
  if (const json::value* m = Get(o, "model")) {
    if (!m->is_string()) return fail(Bad("model", "'model' must be a string"));
    model = std::string(m->get_string());
    if (!FindModel(*ctx->pool, model)) {
      SendError(ctx, sink, route, 404, "invalid_request_error", ModelNotFoundMessage(model),
                "model", "model_not_found");
      return;
    }
  }
  std::shared_ptr<Worker> worker = PickWorker(*ctx->pool, model);
  if (!worker) {
    SendError(ctx, sink, route, 503, "server_error", "no healthy worker; retry later", "",
              "no_worker_available", {{"Retry-After", std::to_string(ctx->options.retry_after_s)}});
    return;
  }
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(kTokenizeTimeoutS * 1000));
  if (detokenize) {
    using Call = UnaryCall<r1serve::v1::DetokenizeRequest, r1serve::v1::DetokenizeResponse>;
    auto call = std::make_shared<Call>();
    if (absl::Status s = BuildDetokenize(o, &call->request); !s.ok()) return fail(s);
    call->worker = worker;
    call->context.set_deadline(deadline);
    worker->stub()->async()->Detokenize(
        &call->context, &call->request, &call->response,
        [ctx, session, route, call](grpc::Status status) {
          std::string body = "{\"prompt\":";
          AppendJsonString(&body, call->response.text());
          body.push_back('}');
          Finish<Call>(ctx, session, route, status, std::move(body));
        });
    return;
  }
  using Call = UnaryCall<r1serve::v1::TokenizeRequest, r1serve::v1::TokenizeResponse>;
  auto call = std::make_shared<Call>();
  bool token_strs = false;
  if (absl::Status s = BuildTokenize(o, &call->request, &token_strs); !s.ok()) return fail(s);
  call->worker = worker;
  call->context.set_deadline(deadline);
  worker->stub()->async()->Tokenize(
      &call->context, &call->request, &call->response,
      [ctx, session, route, call, token_strs](grpc::Status status) {
        const auto& r = call->response;
        std::string body = absl::StrCat("{\"count\":", r.token_ids_size(),
                                        ",\"max_model_len\":", r.max_model_len(), ",\"tokens\":[");
        for (int i = 0; i < r.token_ids_size(); ++i)
          absl::StrAppend(&body, i ? "," : "", r.token_ids(i));
        body.append("],\"token_strs\":");
        if (!token_strs) {
          body.append("null");
        } else {
          body.push_back('[');
          for (int i = 0; i < r.token_texts_size(); ++i) {
            if (i) body.push_back(',');
            AppendJsonString(&body, r.token_texts(i));
          }
          body.push_back(']');
        }
        body.push_back('}');
        Finish<Call>(ctx, session, route, status, std::move(body));
      });
}

}  // namespace r1::gw
