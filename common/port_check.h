// Is a TCP address free to listen on? gRPC servers bind with SO_REUSEPORT by default, so a
// second worker on a taken port would start and share it; the worker turns that off and asks
// here first (before loading a model for minutes) so that a taken port is one clear error.
#pragma once

#include <string>

#include "common/status.h"

namespace r1 {

// Binds HOST:PORT once (SO_REUSEADDR, as servers do, so a port in TIME_WAIT counts as free)
// and lets it go. FailedPrecondition "HOST:PORT: address in use" when another socket holds
// it; other bind errors as Unavailable with their reason. Port 0 is always free.
absl::Status CheckListenAddress(const std::string& host, int port);

}  // namespace r1
