#include "common/port_check.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace r1 {

absl::Status CheckListenAddress(const std::string& host, int port) {
  if (port == 0) return absl::OkStatus();
  const std::string where = host + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  std::string h = host;
  if (h.size() > 1 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(h.empty() || h == "*" ? nullptr : h.c_str(), service.c_str(), &hints,
                           &res);
      rc != 0)
    return absl::InvalidArgumentError(where + ": " + gai_strerror(rc));
  absl::Status status = absl::OkStatus();
  for (addrinfo* a = res; a && status.ok(); a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0) {
      status = errno == EADDRINUSE
                   ? absl::FailedPreconditionError(where + ": address in use")
                   : absl::UnavailableError(where + ": cannot bind: " + std::strerror(errno));
    }
    close(fd);
  }
  freeaddrinfo(res);
  return status;
}

}  // namespace r1
