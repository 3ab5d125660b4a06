#include "common/metrics_server.h"

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <mutex>

#include "common/log.h"

namespace r1 {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

absl::Status SplitHostPort(const std::string& host_port, const std::string& what,
                           std::string* host, int* port) {
  size_t colon = host_port.rfind(':');
  if (colon == std::string::npos || colon + 1 == host_port.size()) {
    return absl::InvalidArgumentError(what + ": want HOST:PORT, got '" + host_port + "'");
  }
  *host = host_port.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  if (host->empty()) *host = "0.0.0.0";
  std::string p = host_port.substr(colon + 1);
  if (p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) {
    return absl::InvalidArgumentError(what + ": bad port in '" + host_port + "'");
  }
  *port = std::stoi(p);
  if (*port > 65535) return absl::InvalidArgumentError(what + ": port out of range: " + p);
  return absl::OkStatus();
}

struct MetricsServer::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
};

namespace {

// One connection: read requests, answer each, until the peer closes.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, MetricsServer* server)
      : stream_(std::move(socket)), server_(server) {}
  void Run() { Read(); }

 private:
  void Read() {
    req_ = {};
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, req_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (!ec) self->Answer();
                     });
  }
  void Answer() {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(req_.version());
    res->keep_alive(req_.keep_alive());
    std::string target(req_.target());
    std::string path = target.substr(0, target.find('?'));
    if (path != "/metrics") {
      res->result(http::status::not_found);
      res->set(http::field::content_type, "text/plain");
      res->body() = "not found\n";
    } else if (req_.method() != http::verb::get && req_.method() != http::verb::head) {
      res->result(http::status::method_not_allowed);
      res->set(http::field::allow, "GET");
      res->body() = "method not allowed\n";
    } else {
      res->result(http::status::ok);
      res->set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      if (req_.method() == http::verb::get) res->body() = server_->Render();
    }
    res->prepare_payload();
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec || !res->keep_alive()) {
                          beast::error_code ignored;
                          self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
                          return;
                        }
                        self->Read();
                      });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  MetricsServer* server_;
};

void Accept(tcp::acceptor* acceptor, MetricsServer* server) {
  acceptor->async_accept([acceptor, server](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor->is_open()) return;
    if (!ec) std::make_shared<Session>(std::move(socket), server)->Run();
    Accept(acceptor, server);
  });
}

}  // namespace

MetricsServer::MetricsServer(std::shared_ptr<prometheus::Registry> registry,
                             std::function<void()> before_scrape)
    : registry_(std::move(registry)), before_scrape_(std::move(before_scrape)),
      impl_(std::make_unique<Impl>()) {}

MetricsServer::~MetricsServer() { Stop(); }

std::string MetricsServer::Render() {
  if (before_scrape_) before_scrape_();
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

absl::StatusOr<int> MetricsServer::Start(const std::string& host_port) {
  std::string host;
  int port = 0;
  R1_RETURN_IF_ERROR(SplitHostPort(host_port, "--metrics-listen", &host, &port));
  beast::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return absl::InvalidArgumentError("--metrics-listen: bad address '" + host + "'");
  tcp::endpoint ep(addr, static_cast<unsigned short>(port));
  tcp::acceptor& acc = impl_->acceptor;
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError("--metrics-listen " + host_port + ": " + ec.message());
  }
  int bound = acc.local_endpoint().port();
  Accept(&acc, this);
  thread_ = std::thread([this] { impl_->io.run(); });
  return bound;
}

void MetricsServer::Stop() {
  if (!thread_.joinable()) return;
  asio::post(impl_->io, [this] {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
    impl_->io.stop();
  });
  thread_.join();
}

}  // namespace r1
