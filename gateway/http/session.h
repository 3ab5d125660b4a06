// One HTTP/1.1 connection (Boost.Beast): reads requests with limits and timeouts, hands each
// to the handler, and writes the response: either whole, or as a chunked server-sent-event
// stream. One write is in flight at a time; what comes meanwhile is queued and coalesced.
// Output flow control: once the queue reaches max_buffered_output_bytes the flow handler is
// told to pause (the exchange stops reading its worker streams), and told to resume once the
// queue drains below half of that (Envoy's per-connection buffer limit and low watermark). A
// write that makes no progress (the socket takes no byte and the client acknowledges none)
// for write_timeout resets the connection and runs the cancel handler, so a client that
// stopped reading frees its slot and its worker sequences.
// While a response is being produced the session watches the socket, so that a client that
// goes away is noticed at once (the cancel handler runs).
//
// Every method must run on the session's strand: use Post() from other threads.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace r1::gw::http {

namespace beast = boost::beast;
namespace net = boost::asio;
using Request = beast::http::request<beast::http::string_body>;

struct ServerOptions {
  uint64_t max_body_bytes = 1 << 20;
  uint32_t max_header_bytes = 16 << 10;
  // A request's whole header: from accept on a new connection, from the request's first byte
  // on a kept-alive one (so a client cannot dribble a header for the whole idle timeout).
  std::chrono::seconds header_timeout{10};
  std::chrono::seconds idle_timeout{60};  // a kept-alive connection waiting for its next request
  std::chrono::seconds body_timeout{30};
  // After a response that closes the connection, what the client still sends is read and
  // dropped (so that the close does not reset the connection before the client read the
  // response), for at most this long: then the connection is closed, whatever the client does.
  std::chrono::milliseconds lingering_time{2000};
  // Output queued for the client (not yet taken by the socket) at which the producer is asked
  // to pause; it is asked to resume below half of it. Reads already in flight when it pauses
  // still land, so the queue can pass this by about one worker message per choice.
  uint64_t max_buffered_output_bytes = 64 << 10;
  // A write that takes no byte for this long (the client stopped reading) resets the
  // connection and cancels its request. Zero: no limit.
  std::chrono::milliseconds write_timeout{30000};
  int64_t max_connections = 10000;
  int threads = 2;
  // Told about requests refused by the HTTP layer itself (400, 408, 413, 431).
  std::function<void(unsigned status)> on_refused;
};

class Session;
using Handler = std::function<void(const std::shared_ptr<Session>&, Request&&)>;
using Headers = std::vector<std::pair<std::string, std::string>>;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(net::ip::tcp::socket&& socket, const ServerOptions& options, Handler handler,
          std::atomic<int64_t>* connections);
  ~Session();
  void Run();

  // Runs f on the session's strand.
  template <typename F>
  void Post(F&& f) {
    net::post(stream_.get_executor(), [self = shared_from_this(), f = std::forward<F>(f)]() mutable {
      (void)self;
      f();
    });
  }
  net::any_io_executor executor() { return stream_.get_executor(); }

  // A whole response. Ends the current exchange.
  void SendResponse(unsigned status, std::string_view content_type, std::string body,
                    const Headers& extra = {});
  // Starts a text/event-stream response (chunked).
  void StartStream();
  // One piece of the stream (usually "data: ...\n\n").
  void SendChunk(std::string_view data);
  // Ends the stream. Ends the current exchange.
  void EndStream();

  // Called once, on the strand, when the client goes away before the exchange ended (or
  // stopped reading for write_timeout).
  void SetCancelHandler(std::function<void()> handler) { cancel_ = std::move(handler); }
  // Output flow control for the current exchange: called with true when the queued output
  // reaches max_buffered_output_bytes, with false once it drained below half of it.
  void SetFlowHandler(std::function<void(bool pause)> handler) { flow_ = std::move(handler); }
  // Bytes queued for the client and not yet taken by the socket.
  size_t buffered() const { return pending_.size() + in_flight_.size() - written_; }
  bool closed() const { return closed_; }
  bool streaming() const { return streaming_; }

 private:
  void ReadHeader();
  void OnHeader(beast::error_code ec);
  void ReadBody();
  void OnBody(beast::error_code ec);
  void ReadHeaderWithin(std::chrono::seconds timeout);
  void Dispatch();
  void FailRead(beast::error_code ec, bool header_done);
  void Refuse(unsigned status, const char* what);
  void Watch();
  void Write(std::string_view data);
  void Flush();
  void OnWrite(beast::error_code ec, size_t n);
  void CheckFlow();
  std::chrono::steady_clock::duration WriteTick() const;
  int64_t UnackedBytes();  // the socket's bytes not yet acknowledged by the client; -1: unknown
  void ArmWriteTimer(std::chrono::steady_clock::duration after);
  void OnWriteTimer();
  void ExchangeDone();
  void Linger();
  void Close(bool reset = false);
  void CloseSocket();

  beast::tcp_stream stream_;
  net::steady_timer linger_timer_;  // bounds the lingering after Connection: close
  net::steady_timer write_timer_;   // checks that a pending write makes progress
  beast::flat_buffer buffer_;
  std::optional<beast::http::request_parser<beast::http::string_body>> parser_;
  const ServerOptions& options_;
  Handler handler_;
  std::atomic<int64_t>* connections_;
  std::function<void()> cancel_;
  std::function<void(bool)> flow_;
  bool first_request_ = true;
  bool in_exchange_ = false;   // a request was handed to the handler and is not answered yet
  bool response_done_ = false;  // the handler finished writing the current response
  bool keep_alive_ = true;
  bool watching_ = false;       // a watch read is pending
  bool next_request_buffered_ = false;  // the watch read got bytes of a pipelined request
  bool streaming_ = false;
  bool head_ = false;  // a HEAD request: responses carry their header only
  bool closed_ = false;
  bool writing_ = false;
  bool paused_producer_ = false;  // flow_ was told to pause and not yet to resume
  bool write_timer_armed_ = false;
  // The last write that took bytes, or the last check that saw the client acknowledge some.
  std::chrono::steady_clock::time_point last_progress_;
  int64_t unacked_ = -1;  // UnackedBytes() at last_progress_
  std::string pending_;    // queued bytes
  std::string in_flight_;  // bytes being written, of which written_ are taken
  size_t written_ = 0;
};

// Standard reason phrase for a status code.
const char* ReasonPhrase(unsigned status);

}  // namespace r1::gw::http
