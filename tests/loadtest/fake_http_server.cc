#include "tests/loadtest/fake_http_server.h"

#include <chrono>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

namespace r1::loadtest::testing {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using asio::ip::tcp;

FakeHttpServer::FakeHttpServer(std::function<FakeBehaviour(int k)> behave)
    : behave_(std::move(behave)), acceptor_(io_) {
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  acceptor_.open(ep.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen();
  port_ = acceptor_.local_endpoint().port();
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

FakeHttpServer::~FakeHttpServer() {
  stop_ = true;
  // Wake the blocking accept with a connection of our own.
  try {
    asio::io_context io;
    tcp::socket s(io);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port_)));
  } catch (...) {
  }
  accept_thread_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    threads.swap(conn_threads_);
  }
  for (std::thread& t : threads) t.join();
}

std::vector<std::string> FakeHttpServer::bodies() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bodies_;
}
std::vector<std::string> FakeHttpServer::paths() const {
  std::lock_guard<std::mutex> lock(mu_);
  return paths_;
}
std::vector<std::string> FakeHttpServer::auth_headers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return auth_;
}

void FakeHttpServer::AcceptLoop() {
  while (!stop_) {
    boost::system::error_code ec;
    tcp::socket socket(io_);
    acceptor_.accept(socket, ec);
    if (ec || stop_) break;
    std::lock_guard<std::mutex> lock(mu_);
    conn_threads_.emplace_back([this, s = std::move(socket)]() mutable { Serve(std::move(s)); });
  }
}

namespace {

void Sleep(int ms) {
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

// Writes one piece of the body, framed as a chunk when chunked.
bool Send(tcp::socket& s, const std::string& data, bool chunked) {
  std::string out = data;
  if (chunked) {
    char head[32];
    snprintf(head, sizeof(head), "%zx\r\n", data.size());
    out = head + data + "\r\n";
  }
  boost::system::error_code ec;
  asio::write(s, asio::buffer(out), ec);
  return !ec;
}

std::string Chunk(bool chat, const std::string& text) {
  if (chat) {
    return "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":"
           "{\"content\":\"" + text + "\"},\"finish_reason\":null}]}\n\n";
  }
  return "data: {\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"" + text +
         "\",\"finish_reason\":null}]}\n\n";
}

}  // namespace

void FakeHttpServer::Serve(tcp::socket socket) {
  ++connections_;
  socket.set_option(tcp::no_delay(true));
  beast::flat_buffer buffer;
  while (!stop_) {
    http::request<http::string_body> req;
    boost::system::error_code ec;
    http::read(socket, buffer, req, ec);
    if (ec || stop_) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      bodies_.push_back(req.body());
      paths_.push_back(std::string(req.target()));
      auth_.push_back(std::string(req[http::field::authorization]));
    }
    if (!Answer(socket, std::string(req.target()), req.body(), req.keep_alive())) return;
  }
}

bool FakeHttpServer::Answer(tcp::socket& socket, const std::string& target,
                            const std::string& request_body, bool keep_alive) {
  int k = next_k_++;
  boost::system::error_code ec;
  FakeBehaviour b = behave_(k);
  boost::json::value body = boost::json::parse(request_body, ec);
  int64_t max_tokens = 16;
  bool usage = false;
  if (!ec && body.is_object()) {
    if (auto* m = body.as_object().if_contains("max_tokens")) max_tokens = m->to_number<int64_t>();
    if (auto* so = body.as_object().if_contains("stream_options")) {
      if (auto* iu = so->as_object().if_contains("include_usage")) usage = iu->as_bool();
    }
  }
  bool chat = target == "/v1/chat/completions";

  if (b.kind == FakeBehaviour::kHang) {
    // In small steps, so that the destructor need not wait the whole hang out.
    for (int waited = 0; waited < b.hang_ms && !stop_; waited += 20) Sleep(20);
    if (stop_) return false;
  }
  if (b.kind == FakeBehaviour::kHttpError) {
    std::string err = "{\"error\":{\"message\":\"fake failure " + std::to_string(b.http_status) +
                      "\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
    std::string resp = "HTTP/1.1 " + std::to_string(b.http_status) +
                       " Fake\r\nContent-Type: application/json\r\nContent-Length: " +
                       std::to_string(err.size()) + "\r\nConnection: close\r\n\r\n" + err;
    asio::write(socket, asio::buffer(resp), ec);
    socket.shutdown(tcp::socket::shutdown_both, ec);
    return false;
  }
  std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n";
  head += b.chunked ? "Transfer-Encoding: chunked\r\n\r\n" : "Connection: close\r\n\r\n";
  asio::write(socket, asio::buffer(head), ec);
  if (ec) return false;
  Sleep(b.first_token_ms);
  int64_t n = b.kind == FakeBehaviour::kOk || b.kind == FakeBehaviour::kHang ? max_tokens : 1;
  for (int64_t i = 0; i < n; ++i) {
    if (i > 0) Sleep(b.token_gap_ms);
    if (!Send(socket, Chunk(chat, " tok" + std::to_string(i)), b.chunked)) return false;
  }
  switch (b.kind) {
    case FakeBehaviour::kErrorEvent:
      Send(socket, "data: {\"error\":{\"message\":\"worker failed mid-stream\",\"type\":"
                   "\"server_error\"}}\n\n", b.chunked);
      break;
    case FakeBehaviour::kCloseEarly:
      socket.shutdown(tcp::socket::shutdown_both, ec);
      return false;
    case FakeBehaviour::kBadJson:
      Send(socket, "data: {not json\n\n", b.chunked);
      break;
    default:
      if (usage) {
        Send(socket, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":" +
                         std::to_string(n) + ",\"total_tokens\":" + std::to_string(n + 7) +
                         "}}\n\n", b.chunked);
      }
  }
  Send(socket, "data: [DONE]\n\n", b.chunked);
  if (b.chunked) Send(socket, "", true);  // the last chunk
  if (b.chunked && keep_alive && !b.close_anyway) return true;
  socket.shutdown(tcp::socket::shutdown_both, ec);
  return false;
}

}  // namespace r1::loadtest::testing
