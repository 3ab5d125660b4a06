// libFuzzer target: the gateway's HTTP/1.1 layer (gateway/http: listener, session, framing,
// router) as a client sees it. Each input is sent over a real loopback connection to one
// in-process Server, the client half-closes, and reads until the server closes. Checked:
//  - nothing that breaks the framing rules reaches the handler: no absolute-form target, one
//    Host (HTTP/1.1), Transfer-Encoding only as one "chunked" and never with Content-Length,
//    a body within the limit;
//  - what comes back is a sequence of well-formed responses, one per handled request in
//    order (HEAD ones without a body), then at most one refusal (400, 408, 413 or 431) with
//    Connection: close; every 405 carries Allow (and "100 Continue" may come before a body);
//  - the server closes and frees the connection promptly after the client's end (no hang),
//    and ASan/UBSan see no fault.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gateway/http/router.h"
#include "gateway/http/server.h"

namespace {

namespace bhttp = boost::beast::http;
using r1::gw::http::Request;
using r1::gw::http::Session;

constexpr uint64_t kMaxBody = 4096;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "http_session_fuzz: %s\n", what);
  std::abort();
}

// The methods of the requests the handler answered, in order. One connection is open at a
// time (each input waits until its session is freed), so they are all the current one's.
std::mutex g_mu;
std::vector<bhttp::verb> g_handled;

void CheckRequest(const Request& r) {
  std::string_view t(r.target().data(), r.target().size());
  if (t.size() >= 7 && boost::beast::iequals(t.substr(0, 7), "http://")) Fail("absolute-form target reached the handler");
  if (t.size() >= 8 && boost::beast::iequals(t.substr(0, 8), "https://")) Fail("absolute-form target reached the handler");
  const size_t hosts = r.count(bhttp::field::host);
  if (hosts > 1 || (r.version() >= 11 && hosts != 1)) Fail("Host rule broken");
  const size_t te = r.count(bhttp::field::transfer_encoding);
  if (te > 1) Fail("two Transfer-Encoding fields");
  if (te == 1) {
    auto v = r[bhttp::field::transfer_encoding];
    std::string_view s(v.data(), v.size());
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    if (!boost::beast::iequals(s, "chunked")) Fail("Transfer-Encoding other than chunked");
    if (r.count(bhttp::field::content_length)) Fail("Transfer-Encoding with Content-Length");
    if (r.version() < 11) Fail("Transfer-Encoding in HTTP/1.0");
  }
  if (r.body().size() > kMaxBody) Fail("body over the limit");
}

struct Harness {
  r1::gw::http::Router router;
  std::unique_ptr<r1::gw::http::Server> server;

  Harness() {
    using S = std::shared_ptr<Session>;
    router.Add(bhttp::verb::get, "/a", [](const S& s, Request&&) { s->SendResponse(200, "text/plain", "a\n"); });
    router.Add(bhttp::verb::post, "/b", [](const S& s, Request&& r) {
      s->SendResponse(200, "text/plain", std::to_string(r.body().size()));
    });
    router.Add(bhttp::verb::get, "/stream", [](const S& s, Request&&) {
      s->StartStream();
      s->SendChunk("data: 1\n\n");
      s->SendChunk("data: [DONE]\n\n");
      s->EndStream();
    });
    r1::gw::http::ServerOptions o;
    o.max_body_bytes = kMaxBody;
    o.max_header_bytes = 2048;
    o.header_timeout = o.idle_timeout = o.body_timeout = std::chrono::seconds(1);
    o.lingering_time = std::chrono::milliseconds(200);
    o.max_connections = 64;
    o.threads = 2;
    server = std::make_unique<r1::gw::http::Server>(o, [this](const S& s, Request&& r) {
      CheckRequest(r);
      {
        std::lock_guard<std::mutex> lock(g_mu);
        g_handled.push_back(r.method());
      }
      std::string_view path = r1::gw::http::PathOf(std::string_view(r.target().data(), r.target().size()));
      unsigned status = 0;
      const auto* route = router.Find(r.method(), path, &status);
      if (route) return (*route)(s, std::move(r));
      r1::gw::http::Headers extra;
      if (status == 405) extra.emplace_back("Allow", router.Allow(path));
      s->SendResponse(status, "text/plain", "no\n", extra);
    });
    if (!server->Start("127.0.0.1:0").ok()) Fail("cannot listen");
  }
};

Harness& H() {
  static Harness* h = new Harness();  // lives for the whole run
  return *h;
}

// Waits until `end` for `events` on fd. libFuzzer's SIGALRM (its -timeout watchdog) interrupts
// system calls now and then: EINTR is retried, in poll() and in the calls below.
bool Wait(int fd, short events, std::chrono::steady_clock::time_point end) {
  for (;;) {
    pollfd p{fd, events, 0};
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    end - std::chrono::steady_clock::now()).count());
    if (left <= 0) return false;
    int r = poll(&p, 1, left);
    if (r > 0) return true;
    if (r == 0 || errno != EINTR) return false;
  }
}

// Reads until the peer closes; a hang (5 s) is a failure.
std::string ReadAll(int fd) {
  std::string out;
  char buf[8192];
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    if (!Wait(fd, POLLIN, end)) {
      std::fprintf(stderr, "after %zu bytes: %s\n", out.size(), out.substr(0, 300).c_str());
      Fail("the server did not close the connection");
    }
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// connect(), finished by waiting when a signal interrupted it.
bool Connect(int fd, const sockaddr_in& addr) {
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return true;
  if (errno != EINTR && errno != EINPROGRESS) return false;
  if (!Wait(fd, POLLOUT, std::chrono::steady_clock::now() + std::chrono::seconds(5))) return false;
  int err = 0;
  socklen_t len = sizeof err;
  return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
}

// Checks the responses against the requests the handler answered.
void CheckResponses(const std::string& bytes, const std::vector<bhttp::verb>& handled) {
  size_t off = 0, i = 0;
  while (off < bytes.size()) {
    bhttp::response_parser<bhttp::string_body> p;
    p.eager(true);
    p.body_limit(1 << 20);
    const bool answered = i < handled.size();
    if (answered && handled[i] == bhttp::verb::head) p.skip(true);
    boost::beast::error_code ec;
    size_t used = 0;
    while (!p.is_done()) {
      size_t n = p.put(boost::asio::buffer(bytes.data() + off + used, bytes.size() - off - used), ec);
      used += n;
      if (ec == bhttp::error::need_more || (!ec && n == 0)) return;  // the last one, cut by the close
      if (ec) Fail("malformed response");
    }
    off += used;
    const unsigned status = p.get().result_int();
    if (status == 100) continue;  // "100 Continue" before a body: an interim response
    if (!answered) {
      if (status != 400 && status != 408 && status != 413 && status != 431) Fail("unexpected refusal status");
      if (p.get().keep_alive()) Fail("a refusal without Connection: close");
      if (off != bytes.size()) Fail("bytes after a refusal");
    } else {
      if (status != 200 && status != 404 && status != 405) Fail("unexpected status");
      if (status == 405 && p.get().count(bhttp::field::allow) != 1) Fail("405 without Allow");
    }
    ++i;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Harness& h = H();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(h.server->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || !Connect(fd, addr)) {
    std::fprintf(stderr, "connect: %s (open connections %lld)\n", std::strerror(errno),
                 static_cast<long long>(h.server->connections()));
    Fail("connect");
  }
  for (size_t sent = 0; sent < size;) {
    ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server closed early (a refusal): what it sent is still read
    sent += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  std::string out = ReadAll(fd);
  close(fd);
  // The session is freed before the next input (and LeakSanitizer sees no live one).
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (h.server->connections() > 0) {
    if (std::chrono::steady_clock::now() > end) Fail("a connection was never freed");
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  std::vector<bhttp::verb> handled;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    handled.swap(g_handled);
  }
  CheckResponses(out, handled);
  return 0;
}
