// The Inference service behind a shared-token check: each call must carry
// "authorization: Bearer TOKEN" metadata with one of the accepted tokens (compared in constant
// time), else it ends with UNAUTHENTICATED before the wrapped service sees it. A method that
// is added to Inference and not forwarded here answers UNIMPLEMENTED: it fails closed.
#pragma once

#include <string>
#include <vector>

#include "r1serve/v1/inference.grpc.pb.h"

namespace r1::service {

class TokenGuard final : public r1serve::v1::Inference::CallbackService {
 public:
  TokenGuard(r1serve::v1::Inference::CallbackService* inner, std::vector<std::string> tokens);

  grpc::ServerWriteReactor<r1serve::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const r1serve::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* GetLoad(grpc::CallbackServerContext* context,
                                    const r1serve::v1::LoadRequest* request,
                                    r1serve::v1::LoadReport* report) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const r1serve::v1::TokenizeRequest* request,
                                     r1serve::v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const r1serve::v1::DetokenizeRequest* request,
                                       r1serve::v1::DetokenizeResponse* response) override;

 private:
  // Finishes a refused unary call; null when the call may go on.
  grpc::ServerUnaryReactor* RefuseUnary(grpc::CallbackServerContext* context) const;
  bool Allowed(const grpc::CallbackServerContext* context) const;

  r1serve::v1::Inference::CallbackService* inner_;
  std::vector<std::string> tokens_;
};

}  // namespace r1::service
