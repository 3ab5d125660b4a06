// GET /metrics over HTTP/1.1 (Boost.Beast) from a prometheus-cpp registry, in Prometheus text
// format. One small server thread; any other path is 404.
//
//   MetricsServer server(registry, [&] { UpdateGauges(); });
//   R1_ASSIGN_OR_RETURN(int port, server.Start("127.0.0.1:9090"));
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"

namespace prometheus {
class Registry;
}

namespace r1 {

class MetricsServer {
 public:
  // before_scrape (may be empty) runs before each scrape, on the server thread.
  MetricsServer(std::shared_ptr<prometheus::Registry> registry,
                std::function<void()> before_scrape = {});
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds HOST:PORT (port 0: any free port) and starts serving; returns the bound port.
  absl::StatusOr<int> Start(const std::string& host_port);
  void Stop();

  // The exposition text, as GET /metrics returns it.
  std::string Render();

 private:
  struct Impl;
  std::shared_ptr<prometheus::Registry> registry_;
  std::function<void()> before_scrape_;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

// Splits "HOST:PORT" (also "[v6]:PORT"); InvalidArgument naming `what` when malformed.
absl::Status SplitHostPort(const std::string& host_port, const std::string& what,
                           std::string* host, int* port);

}  // namespace r1
