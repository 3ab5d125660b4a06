// The listener: accepts connections on a few io threads and runs a Session for each.
// Connections over the cap are answered 503 and closed.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "gateway/http/session.h"

namespace r1::gw::http {

class Server {
 public:
  Server(ServerOptions options, Handler handler);
  ~Server();
  // Binds HOST:PORT (port 0 picks a free one) and starts the io threads.
  absl::Status Start(const std::string& host_port);
  // The bound port.
  int port() const { return port_; }
  void Stop();
  // Closes the listening socket; open connections go on.
  void StopAccepting();
  net::io_context& io() { return ioc_; }
  int64_t connections() const { return connections_; }

 private:
  void Accept();

  ServerOptions options_;
  Handler handler_;
  net::io_context ioc_;
  std::optional<net::ip::tcp::acceptor> acceptor_;
  std::vector<std::thread> threads_;
  std::atomic<int64_t> connections_{0};
  int port_ = 0;
  bool stopped_ = false;
};

// Splits "HOST:PORT" ("[::1]:80" for IPv6).
absl::Status ParseHostPort(const std::string& s, std::string* host, int* port);

}  // namespace r1::gw::http
