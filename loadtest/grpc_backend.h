// Drives a worker directly over gRPC: r1serve.v1.Inference/Generate, server streaming, with
// the callback API (no thread per request). Requests are spread over a few channels, each
// its own HTTP/2 connection.
#pragma once

#include <memory>

#include "loadtest/backend.h"
#include "loadtest/options.h"

namespace r1::loadtest {

std::unique_ptr<Backend> MakeGrpcBackend(const Target& target, const Options& options);

// "grpc_unavailable", "grpc_resource_exhausted", ... for a gRPC status code number.
std::string GrpcErrorKind(int code);

}  // namespace r1::loadtest
