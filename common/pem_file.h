// Reads a PEM file (certificate, key or CA bundle) named by a flag, so that a wrong path or a
// file of the wrong kind is a start-up error naming the flag, not a failed TLS handshake later.
#pragma once

#include <string>

#include "common/status.h"

namespace r1 {

// The whole file; NotFound when unreadable, InvalidArgument when it holds no PEM block.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& flag);

}  // namespace r1
