// An OpenAI-style streaming server on loopback for r1-loadtest's tests. Each request gets the
// next arrival number k (0, 1, 2, ...); a test's `behave(k)` says what to do with it.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace r1::loadtest::testing {

struct FakeBehaviour {
  enum Kind {
    kOk,            // streams max_tokens content chunks, a usage chunk, then [DONE]
    kHttpError,     // status `http_status` with an OpenAI error body
    kErrorEvent,    // one token, then data: {"error": ...}, then [DONE]
    kCloseEarly,    // one token, then closes the connection without [DONE]
    kBadJson,       // one token, then data: not-json
    kHang,          // sleeps `hang_ms` before answering at all
  };
  Kind kind = kOk;
  int http_status = 200;
  int first_token_ms = 0;  // before the first chunk
  int token_gap_ms = 0;    // between chunks
  int hang_ms = 0;
  bool chunked = true;     // Transfer-Encoding: chunked, else Connection: close framing
  // With chunked framing and a keep-alive request, the connection stays open for the next
  // request, unless close_anyway: then it is closed without saying so (a stale keep-alive).
  bool close_anyway = false;
};

class FakeHttpServer {
 public:
  explicit FakeHttpServer(std::function<FakeBehaviour(int k)> behave);
  ~FakeHttpServer();
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return next_k_.load(); }
  int connections() const { return connections_.load(); }
  // The request bodies and paths seen, in arrival order.
  std::vector<std::string> bodies() const;
  std::vector<std::string> paths() const;
  std::vector<std::string> auth_headers() const;

 private:
  void AcceptLoop();
  void Serve(boost::asio::ip::tcp::socket socket);
  // Answers one request; true when the connection may carry another.
  bool Answer(boost::asio::ip::tcp::socket& socket, const std::string& target,
              const std::string& body, bool keep_alive);

  std::function<FakeBehaviour(int)> behave_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  int port_ = 0;
  std::atomic<int> next_k_{0};
  std::atomic<int> connections_{0};
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  mutable std::mutex mu_;
  std::vector<std::thread> conn_threads_;
  std::vector<std::string> bodies_, paths_, auth_;
};

}  // namespace r1::loadtest::testing
