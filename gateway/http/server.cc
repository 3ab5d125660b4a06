#include "gateway/http/server.h"

#include "common/log.h"

namespace r1::gw::http {

absl::Status ParseHostPort(const std::string& s, std::string* host, int* port) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("expected HOST:PORT, got '" + s + "'");
  *host = s.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']')
    *host = host->substr(1, host->size() - 2);
  std::string p = s.substr(colon + 1);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(p) > 65535)
    return absl::InvalidArgumentError("bad port in '" + s + "'");
  *port = std::stoi(p);
  if (host->empty()) *host = "0.0.0.0";
  return absl::OkStatus();
}

Server::Server(ServerOptions options, Handler handler)
    : options_(options), handler_(std::move(handler)), ioc_(options.threads) {}

Server::~Server() { Stop(); }

absl::Status Server::Start(const std::string& host_port) {
  std::string host;
  int port;
  R1_RETURN_IF_ERROR(ParseHostPort(host_port, &host, &port));
  beast::error_code ec;
  auto addr = net::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) return absl::InvalidArgumentError("bad listen address '" + host + "': " + ec.message());
  net::ip::tcp::endpoint ep(addr, static_cast<unsigned short>(port));
  acceptor_.emplace(net::make_strand(ioc_));
  acceptor_->open(ep.protocol(), ec);
  if (!ec) acceptor_->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(ep, ec);
  if (!ec) acceptor_->listen(net::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError("cannot listen on " + host_port + ": " + ec.message());
  port_ = acceptor_->local_endpoint().port();
  Accept();
  for (int i = 0; i < std::max(1, options_.threads); ++i)
    threads_.emplace_back([this] { ioc_.run(); });
  return absl::OkStatus();
}

void Server::Accept() {
  acceptor_->async_accept(net::make_strand(ioc_), [this](beast::error_code ec,
                                                         net::ip::tcp::socket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted) return;
      R1_LOG(WARNING) << "accept: " << ec.message();
    } else if (connections_ >= options_.max_connections) {
      static const char kBusy[] =
          "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
          "Connection: close\r\nRetry-After: 1\r\nContent-Length: 109\r\n\r\n"
          "{\"error\":{\"message\":\"too many connections\",\"type\":\"server_error\","
          "\"param\":null,\"code\":\"too_many_connections\"}}";
      beast::error_code ignored;
      net::write(socket, net::buffer(kBusy, sizeof kBusy - 1), ignored);
      socket.close(ignored);
    } else {
      ++connections_;
      std::make_shared<Session>(std::move(socket), options_, handler_, &connections_)->Run();
    }
    Accept();
  });
}

void Server::StopAccepting() {
  if (!acceptor_) return;
  net::post(acceptor_->get_executor(), [this] {
    beast::error_code ignored;
    acceptor_->close(ignored);
  });
}

void Server::Stop() {
  if (stopped_) return;
  stopped_ = true;
  StopAccepting();
  ioc_.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace r1::gw::http
