// The gateway's side of the worker credentials (worker/service/server_credentials.h): the
// channel to each worker uses TLS when a CA is given (--worker-tls-ca), presents a client
// certificate for mTLS (--worker-tls-cert, --worker-tls-key), and sends a token on every call
// (--worker-token-file) as "authorization: Bearer TOKEN".
#pragma once

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "common/status.h"

namespace r1::gw {

struct WorkerChannelFlags {
  std::string tls_ca;       // PEM CA bundle that worker certificates must chain to
  std::string tls_cert;     // PEM client certificate (mTLS)
  std::string tls_key;      // its private key
  std::string server_name;  // name to check the worker certificate against (default: the host)
  std::string token_file;   // the first token in it is sent
};

struct ChannelSecurity {
  std::string ca, cert, key, server_name, token;  // PEM contents and the token itself
  bool tls() const { return !ca.empty(); }
};

// Reads the files; an error names the flag and file at fault.
absl::StatusOr<ChannelSecurity> LoadChannelSecurity(const WorkerChannelFlags& flags);

// A channel to a worker at HOST:PORT with `args` and the security settings.
std::shared_ptr<grpc::Channel> MakeWorkerChannel(const std::string& address,
                                                 const ChannelSecurity& security,
                                                 grpc::ChannelArguments args);

}  // namespace r1::gw
