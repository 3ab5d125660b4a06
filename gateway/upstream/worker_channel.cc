#include "gateway/upstream/worker_channel.h"

#include <grpcpp/support/client_interceptor.h>

#include "common/api_keys.h"
#include "common/pem_file.h"

namespace r1::gw {
namespace {

// Adds the token to every call's initial metadata. An interceptor rather than call
// credentials: gRPC sends call credentials over TLS only, and the token is also meant for
// plaintext channels whose TLS is terminated elsewhere (a mesh sidecar).
class TokenInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(const std::string* value) : value_(value) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA))
      m->GetSendInitialMetadata()->insert({"authorization", *value_});
    m->Proceed();
  }

 private:
  const std::string* value_;
};

class TokenInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(std::string token) : value_("Bearer " + std::move(token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new TokenInterceptor(&value_);
  }

 private:
  const std::string value_;  // outlives the channel's calls: the channel owns the factory
};

}  // namespace

absl::StatusOr<ChannelSecurity> LoadChannelSecurity(const WorkerChannelFlags& f) {
  ChannelSecurity s;
  if (f.tls_cert.empty() != f.tls_key.empty())
    return absl::InvalidArgumentError("--worker-tls-cert and --worker-tls-key go together");
  if (f.tls_ca.empty() && (!f.tls_cert.empty() || !f.server_name.empty()))
    return absl::InvalidArgumentError(
        "--worker-tls-cert, --worker-tls-key and --worker-tls-server-name need --worker-tls-ca");
  if (!f.tls_ca.empty()) {
    R1_ASSIGN_OR_RETURN(s.ca, ReadPemFile(f.tls_ca, "--worker-tls-ca"));
  }
  if (!f.tls_cert.empty()) {
    R1_ASSIGN_OR_RETURN(s.cert, ReadPemFile(f.tls_cert, "--worker-tls-cert"));
    R1_ASSIGN_OR_RETURN(s.key, ReadPemFile(f.tls_key, "--worker-tls-key"));
  }
  s.server_name = f.server_name;
  if (!f.token_file.empty()) {
    auto tokens = LoadKeyFile(f.token_file, "--worker-token-file");
    if (!tokens.ok()) return tokens.status();
    s.token = tokens->front();
  }
  return s;
}

std::shared_ptr<grpc::Channel> MakeWorkerChannel(const std::string& address,
                                                 const ChannelSecurity& security,
                                                 grpc::ChannelArguments args) {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (security.tls()) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = security.ca;
    o.pem_private_key = security.key;
    o.pem_cert_chain = security.cert;
    creds = grpc::SslCredentials(o);
    // Workers found through DNS are dialled by IP: their certificate names a service name.
    if (!security.server_name.empty())
      args.SetSslTargetNameOverride(security.server_name);
  }
  if (security.token.empty()) return grpc::CreateCustomChannel(address, creds, args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<TokenInterceptorFactory>(security.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(address, creds, args,
                                                                 std::move(factories));
}

}  // namespace r1::gw
