#include "gateway/http/session.h"

#include <algorithm>
#include <cstdio>

#ifdef __linux__
#include <linux/sockios.h>
#include <sys/ioctl.h>
#endif

#include "common/log.h"
#include "gateway/http/framing.h"

namespace r1::gw::http {

namespace bhttp = beast::http;

const char* ReasonPhrase(unsigned status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

Session::Session(net::ip::tcp::socket&& socket, const ServerOptions& options, Handler handler,
                 std::atomic<int64_t>* connections)
    : stream_(std::move(socket)), linger_timer_(stream_.get_executor()),
      write_timer_(stream_.get_executor()), options_(options),
      handler_(std::move(handler)), connections_(connections) {
  beast::error_code ec;
  stream_.socket().set_option(net::ip::tcp::no_delay(true), ec);
}

Session::~Session() { --*connections_; }

void Session::Run() {
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadHeader(); });
}

void Session::ReadHeader() {
  next_request_buffered_ = false;
  response_done_ = false;
  streaming_ = false;
  parser_.emplace();
  parser_->header_limit(options_.max_header_bytes);
  parser_->body_limit(options_.max_body_bytes);
  if (first_request_ || buffer_.size() > 0) return ReadHeaderWithin(options_.header_timeout);
  // A kept-alive connection waits up to the idle timeout for the next request; once its first
  // byte is in, the header timeout applies as it does to a new connection's first request.
  stream_.expires_after(options_.idle_timeout);
  stream_.async_read_some(buffer_.prepare(4096),
                          [self = shared_from_this()](beast::error_code ec, size_t n) {
                            if (ec) return self->FailRead(ec, false);
                            self->buffer_.commit(n);
                            self->ReadHeaderWithin(self->options_.header_timeout);
                          });
}

void Session::ReadHeaderWithin(std::chrono::seconds timeout) {
  stream_.expires_after(timeout);
  bhttp::async_read_header(stream_, buffer_, *parser_,
                           [self = shared_from_this()](beast::error_code ec, size_t) {
                             self->OnHeader(ec);
                           });
}

void Session::OnHeader(beast::error_code ec) {
  if (ec) return FailRead(ec, false);
  first_request_ = false;
  std::string bad = FramingError(parser_->get(), parser_->get().version());
  if (!bad.empty()) {
    R1_LOG(DEBUG) << "http framing: " << bad;
    return Refuse(400, bad.c_str());
  }
  if (parser_->is_done()) return Dispatch();
  stream_.expires_after(options_.body_timeout);
  auto expect = parser_->get()[bhttp::field::expect];
  if (beast::iequals(expect, "100-continue")) {
    // curl sends this for bodies over 1 KiB and would otherwise wait a second.
    static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    net::async_write(stream_, net::buffer(kContinue, sizeof kContinue - 1),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->Close();
                       self->ReadBody();
                     });
    return;
  }
  ReadBody();
}

void Session::ReadBody() {
  bhttp::async_read(stream_, buffer_, *parser_,
                    [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
}

void Session::OnBody(beast::error_code ec) {
  if (ec) return FailRead(ec, true);
  Dispatch();
}

void Session::FailRead(beast::error_code ec, bool header_done) {
  R1_LOG(DEBUG) << "http read: " << ec.message();
  if (ec == bhttp::error::end_of_stream || ec == net::error::eof ||
      ec == beast::error::timeout || ec == net::error::connection_reset ||
      ec == net::error::operation_aborted) {
    if (ec == beast::error::timeout && header_done) return Refuse(408, "request body timed out");
    return Close();
  }
  if (ec == bhttp::error::body_limit) return Refuse(413, "request body too large");
  if (ec == bhttp::error::header_limit) return Refuse(431, "request header too large");
  Refuse(400, "malformed HTTP request");
}

// Answers a request the HTTP layer cannot accept and closes the connection: what follows on
// it cannot be trusted to start a request. `what` holds no character JSON must escape.
void Session::Refuse(unsigned status, const char* what) {
  keep_alive_ = false;
  in_exchange_ = true;
  head_ = false;
  std::string body = std::string("{\"error\":{\"message\":\"") + what +
                     "\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}";
  if (options_.on_refused) options_.on_refused(status);
  SendResponse(status, "application/json", std::move(body));
}

void Session::Dispatch() {
  Request req = parser_->release();
  keep_alive_ = req.keep_alive();
  head_ = req.method() == bhttp::verb::head;
  std::string_view target(req.target().data(), req.target().size());
  if (std::string origin = OriginForm(target); origin != target) req.target(origin);
  in_exchange_ = true;
  response_done_ = false;
  streaming_ = false;
  cancel_ = nullptr;
  flow_ = nullptr;
  paused_producer_ = false;
  stream_.expires_never();
  Watch();
  handler_(shared_from_this(), std::move(req));
}

// Reads while a response is produced: an error means the client went away; bytes are the
// start of a pipelined request, kept in the buffer for the next read.
void Session::Watch() {
  if (buffer_.size() > 0) next_request_buffered_ = true;
  if (watching_ || next_request_buffered_ || closed_) return;
  watching_ = true;
  auto space = buffer_.prepare(4096);
  stream_.socket().async_read_some(
      space, [self = shared_from_this()](beast::error_code ec, size_t n) {
        self->watching_ = false;
        if (self->closed_) {  // closed, or lingering after Connection: close
          if (ec) return self->CloseSocket();
          return self->Linger();
        }
        if (ec == net::error::operation_aborted && !self->in_exchange_) {
          self->ReadHeader();
          return;
        }
        if (ec) {
          self->Close();
          return;
        }
        self->buffer_.commit(n);
        self->next_request_buffered_ = true;
        if (!self->in_exchange_ && !self->closed_) self->ReadHeader();
      });
}

void Session::SendResponse(unsigned status, std::string_view content_type, std::string body,
                           const Headers& extra) {
  if (closed_ || !in_exchange_ || response_done_) return;
  char head[256];
  int n = std::snprintf(head, sizeof head,
                        "HTTP/1.1 %u %s\r\nContent-Type: %.*s\r\nContent-Length: %zu\r\n", status,
                        ReasonPhrase(status), static_cast<int>(content_type.size()),
                        content_type.data(), body.size());
  std::string out(head, n);
  for (auto& [k, v] : extra) out += k + ": " + v + "\r\n";
  if (!keep_alive_) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head_) out += body;  // HEAD: the same header, Content-Length included, and no body
  response_done_ = true;
  Write(out);
}

void Session::StartStream() {
  if (closed_ || !in_exchange_ || response_done_) return;
  streaming_ = true;
  std::string head =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
      "Transfer-Encoding: chunked\r\n";
  if (!keep_alive_) head += "Connection: close\r\n";
  head += "\r\n";
  Write(head);
}

void Session::SendChunk(std::string_view data) {
  if (closed_ || !streaming_ || response_done_ || data.empty() || head_) return;
  char size[20];
  int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  pending_.append(size, n);
  pending_.append(data);
  pending_.append("\r\n");
  if (!writing_) Flush();
  CheckFlow();
}

void Session::EndStream() {
  if (closed_ || !streaming_ || response_done_) return;
  response_done_ = true;
  Write(head_ ? "" : "0\r\n\r\n");
}

void Session::Write(std::string_view data) {
  pending_.append(data);
  if (!writing_) Flush();
  CheckFlow();
}

// Writes what is queued, a piece at a time (async_write_some), so that the write timer sees
// every byte the socket takes.
void Session::Flush() {
  if (closed_) return;
  if (written_ == in_flight_.size()) {
    written_ = 0;
    in_flight_.clear();
    // A burst's buffer is not kept for the rest of the connection's life.
    if (in_flight_.capacity() > (64u << 10)) std::string().swap(in_flight_);
    in_flight_.swap(pending_);
  }
  if (in_flight_.empty()) {
    if (response_done_ && in_exchange_) ExchangeDone();
    return;
  }
  writing_ = true;
  last_progress_ = std::chrono::steady_clock::now();
  unacked_ = UnackedBytes();
  if (options_.write_timeout.count() > 0 && !write_timer_armed_) ArmWriteTimer(WriteTick());
  stream_.socket().async_write_some(
      net::buffer(in_flight_.data() + written_, in_flight_.size() - written_),
      [self = shared_from_this()](beast::error_code ec, size_t n) { self->OnWrite(ec, n); });
}

void Session::OnWrite(beast::error_code ec, size_t n) {
  writing_ = false;
  if (ec) return Close();
  written_ += n;
  Flush();
  CheckFlow();
}

// Tells the exchange to pause at the cap and to resume below half of it.
void Session::CheckFlow() {
  if (!flow_ || closed_) return;
  const size_t queued = buffered();
  const bool pause = !paused_producer_ && queued >= options_.max_buffered_output_bytes;
  const bool resume = paused_producer_ && queued < options_.max_buffered_output_bytes / 2;
  if (!pause && !resume) return;
  paused_producer_ = pause;
  auto flow = flow_;  // the handler may clear flow_
  flow(pause);
}

// One timer per connection, not one per write. A write completes only once the kernel has
// room for more, and a client that reads through a small window frees that room slowly: a
// megabyte of socket buffer can take seconds to drain while the client reads all along. So
// progress is also the kernel's count of bytes the client has not acknowledged going down
// (SIOCOUTQ), checked every quarter of write_timeout while a write waits: a client that reads
// is never cut, one that stops is cut between write_timeout and 1.25 x write_timeout after
// its last acknowledged byte.
std::chrono::steady_clock::duration Session::WriteTick() const {
  return std::max<std::chrono::steady_clock::duration>(options_.write_timeout / 4,
                                                         std::chrono::milliseconds(1));
}

int64_t Session::UnackedBytes() {
#ifdef __linux__
  int n = 0;
  if (::ioctl(stream_.socket().native_handle(), SIOCOUTQ, &n) == 0) return n;
#endif
  return -1;
}

void Session::ArmWriteTimer(std::chrono::steady_clock::duration after) {
  write_timer_armed_ = true;
  write_timer_.expires_after(after);
  write_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    self->write_timer_armed_ = false;
    if (!ec) self->OnWriteTimer();
  });
}

void Session::OnWriteTimer() {
  if (closed_ || !writing_) return;
  const auto now = std::chrono::steady_clock::now();
  const int64_t unacked = UnackedBytes();
  if (unacked >= 0 && unacked != unacked_) {  // only acknowledgements change it mid-write
    unacked_ = unacked;
    last_progress_ = now;
  }
  const auto stalled = now - last_progress_;
  if (stalled < options_.write_timeout)
    return ArmWriteTimer(std::min(options_.write_timeout - stalled, WriteTick()));
  beast::error_code ec;
  const auto peer = stream_.socket().remote_endpoint(ec);
  R1_LOG(INFO) << "client " << (ec ? std::string("?") : peer.address().to_string() + ":" + std::to_string(peer.port()))
               << " took no byte for "
               << std::chrono::duration<double>(options_.write_timeout).count()
               << " s (--write-timeout) with " << buffered()
               << " bytes queued: connection reset"
               << (in_exchange_ && cancel_ ? ", its request cancelled on the workers" : "");
  Close(/*reset=*/true);
}

void Session::ExchangeDone() {
  in_exchange_ = false;
  cancel_ = nullptr;
  flow_ = nullptr;
  paused_producer_ = false;
  if (!keep_alive_) {
    beast::error_code ignored;
    stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
    closed_ = true;
    // Read and drop what the client still sends (an over-large body, say), so that closing
    // does not reset the connection before the client read our response; but for no longer
    // than lingering_time: a client that never closes must not hold its connection slot.
    stream_.expires_never();
    linger_timer_.expires_after(options_.lingering_time);
    linger_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->CloseSocket();
    });
    if (!watching_) Linger();  // else the watch read's completion goes on lingering
    return;
  }
  // A pending watch read is cancelled; its completion reads the next request, under the
  // idle timeout.
  if (watching_) {
    beast::error_code ignored;
    stream_.socket().cancel(ignored);
    return;
  }
  ReadHeader();
}

void Session::Linger() {
  buffer_.clear();
  stream_.socket().async_read_some(buffer_.prepare(16384),
                                   [self = shared_from_this()](beast::error_code ec, size_t) {
                                     if (ec) return self->CloseSocket();
                                     self->Linger();
                                   });
}

// Ends a lingering connection: the pending read completes, the timer lets go of the session,
// and the session (and its connection slot) is freed.
void Session::CloseSocket() {
  linger_timer_.cancel();
  write_timer_.cancel();
  beast::error_code ignored;
  stream_.socket().close(ignored);
}

// With `reset`, the connection is reset (SO_LINGER 0): what the client did not read is
// dropped at once instead of being kept in the kernel for a client that reads nothing.
void Session::Close(bool reset) {
  if (closed_) return;
  closed_ = true;
  linger_timer_.cancel();
  write_timer_.cancel();
  flow_ = nullptr;
  beast::error_code ignored;
  if (reset) {
    stream_.socket().set_option(net::socket_base::linger(true, 0), ignored);
  } else {
    stream_.socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
  }
  stream_.socket().close(ignored);
  if (in_exchange_ && cancel_) {
    auto cancel = std::move(cancel_);
    cancel_ = nullptr;
    cancel();
  }
}

}  // namespace r1::gw::http
