#include "worker/service/server_credentials.h"

#include "common/api_keys.h"
#include "common/pem_file.h"
#include "worker/service/token_guard.h"

namespace r1::service {

absl::StatusOr<WorkerSecurity> WorkerSecurity::Load(const WorkerSecurityFlags& f) {
  WorkerSecurity s;
  if (f.tls_cert.empty() != f.tls_key.empty())
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  if (!f.tls_client_ca.empty() && f.tls_cert.empty())
    return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
  if (!f.tls_cert.empty()) {
    R1_ASSIGN_OR_RETURN(s.cert_, ReadPemFile(f.tls_cert, "--tls-cert"));
    R1_ASSIGN_OR_RETURN(s.key_, ReadPemFile(f.tls_key, "--tls-key"));
  }
  if (!f.tls_client_ca.empty()) {
    R1_ASSIGN_OR_RETURN(s.client_ca_, ReadPemFile(f.tls_client_ca, "--tls-client-ca"));
  }
  if (!f.token_file.empty()) {
    auto tokens = LoadKeyFile(f.token_file, "--auth-token-file");
    if (!tokens.ok()) return tokens.status();
    s.tokens_ = std::move(*tokens);
  }
  return s;
}

std::shared_ptr<grpc::ServerCredentials> WorkerSecurity::credentials() const {
  if (cert_.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions o(
      client_ca_.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                         : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  o.pem_root_certs = client_ca_;
  o.pem_key_cert_pairs.push_back({key_, cert_});
  return grpc::SslServerCredentials(o);
}

grpc::Service* WorkerSecurity::Guard(r1serve::v1::Inference::CallbackService* service) {
  if (tokens_.empty()) return service;
  guard_ = std::make_unique<TokenGuard>(service, tokens_);
  return guard_.get();
}

std::string WorkerSecurity::Describe() const {
  std::string s = cert_.empty() ? "plaintext" : client_ca_.empty() ? "TLS" : "mTLS";
  if (!tokens_.empty()) s += " + token";
  return s;
}

}  // namespace r1::service
