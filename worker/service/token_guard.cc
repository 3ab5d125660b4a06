#include "worker/service/token_guard.h"

#include "common/api_keys.h"

namespace r1::service {
namespace {

const grpc::Status& Refusal() {
  static const grpc::Status s(grpc::StatusCode::UNAUTHENTICATED,
                              "missing or wrong token: send 'authorization: Bearer TOKEN'");
  return s;
}

// A Generate stream that ends at once with UNAUTHENTICATED. Finish may be called before the
// reactor is returned: gRPC holds it until the reactor is bound to the call.
class RefusedStream : public grpc::ServerWriteReactor<r1serve::v1::GenerateResponse> {
 public:
  RefusedStream() { Finish(Refusal()); }
  void OnDone() override { delete this; }
};

}  // namespace

TokenGuard::TokenGuard(r1serve::v1::Inference::CallbackService* inner,
                       std::vector<std::string> tokens)
    : inner_(inner), tokens_(std::move(tokens)) {}

bool TokenGuard::Allowed(const grpc::CallbackServerContext* context) const {
  const auto& md = context->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return false;
  return Authorized(std::string_view(it->second.data(), it->second.size()), tokens_);
}

grpc::ServerWriteReactor<r1serve::v1::GenerateResponse>* TokenGuard::Generate(
    grpc::CallbackServerContext* context, const r1serve::v1::GenerateRequest* request) {
  if (!Allowed(context)) return new RefusedStream();
  return inner_->Generate(context, request);
}

grpc::ServerUnaryReactor* TokenGuard::RefuseUnary(grpc::CallbackServerContext* context) const {
  if (Allowed(context)) return nullptr;
  grpc::ServerUnaryReactor* r = context->DefaultReactor();
  r->Finish(Refusal());
  return r;
}

grpc::ServerUnaryReactor* TokenGuard::GetLoad(grpc::CallbackServerContext* context,
                                              const r1serve::v1::LoadRequest* request,
                                              r1serve::v1::LoadReport* report) {
  if (auto* r = RefuseUnary(context)) return r;
  return inner_->GetLoad(context, request, report);
}

grpc::ServerUnaryReactor* TokenGuard::Tokenize(grpc::CallbackServerContext* context,
                                               const r1serve::v1::TokenizeRequest* request,
                                               r1serve::v1::TokenizeResponse* response) {
  if (auto* r = RefuseUnary(context)) return r;
  return inner_->Tokenize(context, request, response);
}

grpc::ServerUnaryReactor* TokenGuard::Detokenize(grpc::CallbackServerContext* context,
                                                 const r1serve::v1::DetokenizeRequest* request,
                                                 r1serve::v1::DetokenizeResponse* response) {
  if (auto* r = RefuseUnary(context)) return r;
  return inner_->Detokenize(context, request, response);
}

}  // namespace r1::service
