// Who may call the worker. Anyone who reaches a worker's port bypasses the gateway's API keys,
// limits and validation, so the port can require:
//  - TLS (--tls-cert, --tls-key), and with --tls-client-ca a client certificate signed by that
//    CA (mTLS: only holders of such a certificate, i.e. the gateways, get a connection);
//  - a shared token (--auth-token-file): every Inference call must carry
//    "authorization: Bearer TOKEN" metadata, for deployments that terminate TLS elsewhere.
// grpc.health.v1 stays open to any client that gets a connection: probes need no secret, and
// it tells nothing but SERVING or NOT_SERVING.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/status.h"
#include "r1serve/v1/inference.grpc.pb.h"

namespace r1::service {

struct WorkerSecurityFlags {
  std::string tls_cert;        // PEM certificate chain of the worker
  std::string tls_key;         // PEM private key
  std::string tls_client_ca;   // PEM CA bundle that client certificates must chain to
  std::string token_file;      // one accepted token per line ('#' comments)
};

class WorkerSecurity {
 public:
  // Reads the files; an error names the flag and file at fault.
  static absl::StatusOr<WorkerSecurity> Load(const WorkerSecurityFlags& flags);

  // The listening port's credentials: TLS (requiring and verifying a client certificate when
  // a client CA was given) or plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials() const;
  // The service to register: `service` itself, or a wrapper that checks the token first.
  grpc::Service* Guard(r1serve::v1::Inference::CallbackService* service);
  // One line for the start-up log: "mTLS + token", "TLS", "plaintext", ...
  std::string Describe() const;

 private:
  std::string cert_, key_, client_ca_;
  std::vector<std::string> tokens_;
  std::unique_ptr<r1serve::v1::Inference::CallbackService> guard_;
};

}  // namespace r1::service
