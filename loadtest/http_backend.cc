#include "loadtest/http_backend.h"

#include <mutex>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include "loadtest/sse.h"

namespace r1::loadtest {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace json = boost::json;
using asio::ip::tcp;

std::string BuildRequestBody(const Options& options, const RequestSpec& spec) {
  json::object body;
  body["model"] = options.model.empty() ? "default" : options.model;
  if (options.endpoint == "completions") {
    body["prompt"] = spec.prompt;
  } else {
    json::array messages;
    messages.push_back(json::object{{"role", "user"}, {"content", spec.prompt}});
    body["messages"] = std::move(messages);
  }
  body["max_tokens"] = spec.max_tokens;
  body["temperature"] = options.temperature;
  body["stream"] = true;
  body["stream_options"] = json::object{{"include_usage", true}};
  if (options.ignore_eos) body["ignore_eos"] = true;
  return json::serialize(body);
}

namespace {

const json::value* Find(const json::value& v, std::string_view key) {
  if (!v.is_object()) return nullptr;
  return v.as_object().if_contains(key);
}

std::string StringAt(const json::value* v) {
  if (v && v->is_string()) return std::string(v->as_string());
  return "";
}

}  // namespace

void ApplySseEvent(const std::string& data, SteadyClock::time_point now, RequestResult& r,
                   bool* done) {
  if (data == "[DONE]") {
    *done = true;
    return;
  }
  boost::system::error_code ec;
  json::value v = json::parse(data, ec);
  if (ec || !v.is_object()) {
    if (r.error_kind.empty()) r.Fail("bad_response", "SSE data is not JSON: " + data.substr(0, 80));
    return;
  }
  if (const json::value* err = Find(v, "error")) {
    std::string msg = StringAt(Find(*err, "message"));
    if (msg.empty()) msg = json::serialize(*err);
    if (r.error_kind.empty()) r.Fail("stream_error", msg);
    return;
  }
  size_t content_bytes = 0;
  if (const json::value* choices = Find(v, "choices"); choices && choices->is_array()) {
    for (const json::value& c : choices->as_array()) {
      content_bytes += StringAt(Find(c, "text")).size();
      if (const json::value* delta = Find(c, "delta")) {
        content_bytes += StringAt(Find(*delta, "content")).size();
        content_bytes += StringAt(Find(*delta, "reasoning_content")).size();
      }
    }
  }
  if (content_bytes > 0) r.OnTokens(now, 1);
  if (const json::value* usage = Find(v, "usage"); usage && usage->is_object()) {
    const json::value* ct = Find(*usage, "completion_tokens");
    const json::value* pt = Find(*usage, "prompt_tokens");
    if (ct && ct->is_int64()) r.output_tokens = ct->as_int64();
    if (ct && ct->is_uint64()) r.output_tokens = static_cast<int64_t>(ct->as_uint64());
    if (pt && pt->is_int64()) r.prompt_tokens = pt->as_int64();
    if (pt && pt->is_uint64()) r.prompt_tokens = static_cast<int64_t>(pt->as_uint64());
  }
}

namespace {

std::string ErrorMessageOf(const std::string& body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (!ec) {
    if (const json::value* err = Find(v, "error")) {
      std::string msg = StringAt(Find(*err, "message"));
      if (!msg.empty()) return msg;
    }
  }
  return body.substr(0, 200);
}

class HttpBackend final : public Backend {
 public:
  HttpBackend(asio::io_context& io, Target target, Options options,
              tcp::resolver::results_type endpoints)
      : io_(io), target_(std::move(target)), options_(std::move(options)),
        endpoints_(std::move(endpoints)) {
    path_ = target_.base_path +
            (options_.endpoint == "completions" ? "/v1/completions" : "/v1/chat/completions");
  }

  // Each request runs on its own strand: the I/O threads share one io_context, and a
  // beast::tcp_stream's timeout handler must not run beside the coroutine's next operation on
  // the same socket (with --threads > 1 it did, and a timed-out stream's socket was closed
  // under a starting read: SIGSEGV at 256 streams with --timeout).
  void Start(const RequestSpec& spec, DoneCallback done) override {
    asio::co_spawn(asio::make_strand(io_), Run(spec, std::move(done)), asio::detached);
  }

 private:
  asio::awaitable<void> Run(RequestSpec spec, DoneCallback done) {
    RequestResult r;
    r.start = SteadyClock::now();
    // A kept-alive connection the server has closed meanwhile fails before any response
    // byte: that attempt is repeated once on a new connection.
    bool stale = false;
    co_await Exchange(spec, r, /*may_reuse=*/true, &stale);
    if (stale) {
      r = RequestResult();
      r.start = SteadyClock::now();
      co_await Exchange(spec, r, /*may_reuse=*/false, &stale);
    }
    r.end = SteadyClock::now();
    if (r.error_kind.empty()) r.ok = true;
    if (r.output_tokens == 0) r.output_tokens = r.counted_tokens;
    done(std::move(r));
  }

  static std::string KindOf(const boost::system::error_code& ec, const char* otherwise) {
    // Only the stream's own timer cancels an operation here, and an operation it cancels
    // may end with either code.
    if (ec == beast::error::timeout || ec == asio::error::operation_aborted) return "timeout";
    return otherwise;
  }

  std::unique_ptr<beast::tcp_stream> TakeIdle() {
    std::lock_guard<std::mutex> lock(idle_mu_);
    if (idle_.empty()) return nullptr;
    auto s = std::move(idle_.back());
    idle_.pop_back();
    return s;
  }

  // A kept-alive connection taken up by another request: its socket moves to that request's
  // strand, so that its timer and its reads share one executor again. Null when it fails.
  static std::unique_ptr<beast::tcp_stream> Rehome(std::unique_ptr<beast::tcp_stream> old,
                                                   const asio::any_io_executor& executor) {
    if (!old) return nullptr;
    tcp::socket sock = old->release_socket();
    boost::system::error_code ec;
    const tcp::endpoint local = sock.local_endpoint(ec);
    if (ec) return nullptr;
    const auto fd = sock.release(ec);
    if (ec) return nullptr;
    return std::make_unique<beast::tcp_stream>(tcp::socket(executor, local.protocol(), fd));
  }

  void PutIdle(std::unique_ptr<beast::tcp_stream> s) {
    s->expires_never();
    std::lock_guard<std::mutex> lock(idle_mu_);
    idle_.push_back(std::move(s));
  }

  asio::awaitable<void> Exchange(const RequestSpec& spec, RequestResult& r, bool may_reuse,
                                 bool* stale) {
    constexpr auto tuple = asio::as_tuple(asio::use_awaitable);
    *stale = false;
    auto timeout = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(options_.timeout_s));
    std::unique_ptr<beast::tcp_stream> stream;
    if (options_.keep_alive && may_reuse) stream = Rehome(TakeIdle(), co_await asio::this_coro::executor);
    bool reused = stream != nullptr;
    if (!stream) {
      stream = std::make_unique<beast::tcp_stream>(co_await asio::this_coro::executor);
      stream->expires_after(timeout);
      auto [cec, ep] = co_await stream->async_connect(endpoints_, tuple);
      if (cec) {
        r.Fail(KindOf(cec, "connect"), cec.message());
        co_return;
      }
      stream->socket().set_option(tcp::no_delay(true));
    }
    stream->expires_after(timeout);

    http::request<http::string_body> req{http::verb::post, path_, 11};
    req.set(http::field::host, target_.host + ":" + target_.port);
    req.set(http::field::user_agent, "r1-loadtest");
    req.set(http::field::content_type, "application/json");
    req.set(http::field::accept, "text/event-stream");
    if (!options_.api_key.empty()) req.set(http::field::authorization, "Bearer " + options_.api_key);
    req.keep_alive(options_.keep_alive);
    req.body() = BuildRequestBody(options_, spec);
    req.prepare_payload();
    auto [wec, wn] = co_await http::async_write(*stream, req, tuple);
    if (wec) {
      if (reused && wec != beast::error::timeout) {
        *stale = true;
        co_return;
      }
      r.Fail(KindOf(wec, "disconnected"), wec.message());
      co_return;
    }

    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    auto [hec, hn] = co_await http::async_read_header(*stream, buffer, parser, tuple);
    if (hec) {
      if (reused && hn == 0 && hec != beast::error::timeout && hec != asio::error::operation_aborted) {
        *stale = true;
        co_return;
      }
      r.Fail(KindOf(hec, "disconnected"), hec.message());
      co_return;
    }
    unsigned status = parser.get().result_int();
    bool ok_status = status == 200;
    std::string error_body;
    bool done = false;
    SseParser sse([&](const std::string& data) {
      if (!done) ApplySseEvent(data, SteadyClock::now(), r, &done);
    });
    char chunk[8192];
    while (!parser.is_done()) {
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof(chunk);
      auto [rec, rn] = co_await http::async_read_some(*stream, buffer, parser, tuple);
      size_t got = sizeof(chunk) - parser.get().body().size;
      if (ok_status) {
        sse.Feed(std::string_view(chunk, got));
      } else if (error_body.size() < 65536) {
        error_body.append(chunk, got);
      }
      if (rec == http::error::need_buffer) continue;
      if (rec == http::error::end_of_stream) break;
      if (rec) {
        if (r.error_kind.empty()) r.Fail(KindOf(rec, "disconnected"), rec.message());
        co_return;
      }
    }
    if (!ok_status) {
      r.Fail("http_" + std::to_string(status), ErrorMessageOf(error_body));
    } else {
      if (!done) sse.Finish();
      if (r.error_kind.empty() && !done) {
        r.Fail("disconnected", "the stream ended without data: [DONE]");
      }
    }
    if (options_.keep_alive && parser.is_done() && parser.get().keep_alive() && buffer.size() == 0) {
      PutIdle(std::move(stream));
      co_return;
    }
    beast::error_code ignored;
    stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
  }

  asio::io_context& io_;
  Target target_;
  Options options_;
  tcp::resolver::results_type endpoints_;
  std::string path_;
  std::mutex idle_mu_;
  std::vector<std::unique_ptr<beast::tcp_stream>> idle_;  // --keep-alive connections
};

}  // namespace

absl::StatusOr<std::string> FirstModelId(const Target& target, const std::string& api_key) {
  const std::string url = target.base_path + "/v1/models";
  auto fail = [&](const std::string& why) {
    return absl::NotFoundError("GET " + url + " gave no model id (" + why + ")");
  };
  asio::io_context io;
  boost::system::error_code ec;
  auto endpoints = tcp::resolver(io).resolve(target.host, target.port, ec);
  if (ec) return fail(ec.message());
  beast::tcp_stream stream(io);
  stream.expires_after(std::chrono::seconds(5));
  stream.connect(endpoints, ec);
  if (ec) return fail(ec.message());
  http::request<http::empty_body> req(http::verb::get, url, 11);
  req.set(http::field::host, target.host);
  if (!api_key.empty()) req.set(http::field::authorization, "Bearer " + api_key);
  http::write(stream, req, ec);
  if (ec) return fail(ec.message());
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(stream, buf, res, ec);
  if (ec) return fail(ec.message());
  if (res.result_int() != 200) return fail("HTTP " + std::to_string(res.result_int()));
  json::value v = json::parse(res.body(), ec);
  const json::value* data = ec ? nullptr : Find(v, "data");
  if (!data || !data->is_array() || data->as_array().empty()) return fail("no models listed");
  std::string id = StringAt(Find(data->as_array()[0], "id"));
  if (id.empty()) return fail("the first model has no id");
  return id;
}

absl::StatusOr<std::unique_ptr<Backend>> MakeHttpBackend(asio::io_context& io,
                                                         const Target& target,
                                                         const Options& options) {
  tcp::resolver resolver(io);
  boost::system::error_code ec;
  auto endpoints = resolver.resolve(target.host, target.port, ec);
  if (ec) {
    return absl::InvalidArgumentError("cannot resolve '" + target.host + "': " + ec.message());
  }
  return std::unique_ptr<Backend>(new HttpBackend(io, target, options, std::move(endpoints)));
}

}  // namespace r1::loadtest
