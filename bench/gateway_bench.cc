// Gateway overhead benchmark: fake workers that stream as fast as they can, r1-gateway in
// front of them, and clients on loopback.
//  1. Latency: the same streamed request sent alternately straight to a worker over gRPC and
//     through the gateway over HTTP/SSE, one at a time; the added latency is the difference
//     of the percentiles, for 1-token requests (per request) and long ones (per chunk).
//  2. Throughput: many concurrent SSE streams through the gateway; chunks per second, and
//     chunks per second of gateway CPU time (utime + stime from /proc), i.e. per core.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/flags.h"
#include "r1serve/v1/inference.grpc.pb.h"

namespace {
using Clock = std::chrono::steady_clock;

struct Child {
  pid_t pid = -1;
  int port = 0;
};

// Starts a program and reads "<KEY> <port>" from its stdout.
Child Spawn(const std::vector<std::string>& argv, const std::string& key) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[256];
  Child c;
  c.pid = pid;
  while (true) {
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, n);
    size_t p = out.find(key + " ");
    if (p != std::string::npos && out.find('\n', p) != std::string::npos) {
      c.port = std::atoi(out.c_str() + p + key.size() + 1);
      break;
    }
  }
  close(fds[0]);
  return c;
}

double CpuSeconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), {});
  size_t p = s.rfind(')');
  if (p == std::string::npos) return 0;
  std::vector<std::string> fields;
  size_t i = p + 2;
  while (i < s.size()) {
    size_t j = s.find(' ', i);
    if (j == std::string::npos) j = s.size();
    fields.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  // fields[0] is the state (field 3); utime and stime are fields 14 and 15.
  return (std::stod(fields[11]) + std::stod(fields[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// One streamed chat request on a kept-alive connection; returns the number of data chunks
// (JSON events), or -1 on error. *first gets the arrival time of the first bytes.
int64_t HttpStream(int fd, const std::string& request, Clock::time_point* first) {
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) return -1;
  static const std::string kEnd = "data: [DONE]\n\n\r\n0\r\n\r\n";
  static const std::string kData = "data: {";
  std::string tail;
  int64_t chunks = 0;
  char buf[65536];
  bool got = false;
  while (true) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return -1;
    std::string data = tail + std::string(buf, n);
    if (!got) {
      *first = Clock::now();
      got = true;
      // Anything but a 200 ends the bench (an error body never has [DONE], and the kept-alive
      // connection would wait for it forever).
      if (data.compare(0, 12, "HTTP/1.1 200") != 0) {
        std::fprintf(stderr, "gateway_bench: the gateway answered: %.300s\n", data.c_str());
        return -1;
      }
    }
    for (size_t p = data.find(kData); p != std::string::npos; p = data.find(kData, p + 1))
      if (p + kData.size() > tail.size()) ++chunks;
    if (data.find(kEnd) != std::string::npos) return chunks;
    tail = data.substr(data.size() > 32 ? data.size() - 32 : 0);
  }
}

std::string ChatRequest(int64_t tokens) {
  std::string body =
      "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"@tokens=";
  body += std::to_string(tokens);
  body += "\"}]}";
  std::string out =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
      "Content-Length: ";
  out += std::to_string(body.size());
  out += "\r\n\r\n";
  out += body;
  return out;
}

double Pct(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return v[i];
}

struct Lat {
  std::vector<double> direct_e2e, gw_e2e, direct_first, gw_first;
};

Lat MeasureLatency(int gw_port, int worker_port, int64_t tokens, int n) {
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(worker_port),
                                     grpc::InsecureChannelCredentials());
  auto stub = r1serve::v1::Inference::NewStub(channel);
  int fd = Connect(gw_port);
  std::string req = ChatRequest(tokens);
  r1serve::v1::GenerateRequest g;
  g.mutable_chat()->add_messages()->set_content("@tokens=" + std::to_string(tokens));
  Lat lat;
  for (int i = 0; i < n + n / 10; ++i) {
    bool warm = i < n / 10;
    // Straight to the worker.
    auto t0 = Clock::now();
    grpc::ClientContext ctx;
    auto reader = stub->Generate(&ctx, g);
    r1serve::v1::GenerateResponse m;
    Clock::time_point first{};
    int64_t got = 0;
    while (reader->Read(&m)) {
      if (got++ == 0) first = Clock::now();
    }
    reader->Finish();
    auto t1 = Clock::now();
    // Through the gateway.
    Clock::time_point gfirst;
    auto t2 = Clock::now();
    int64_t chunks = HttpStream(fd, req, &gfirst);
    auto t3 = Clock::now();
    if (chunks < 0) {
      std::fprintf(stderr, "gateway_bench: HTTP request failed\n");
      std::exit(1);
    }
    if (warm) continue;
    auto us = [](auto a, auto b) { return std::chrono::duration<double, std::micro>(b - a).count(); };
    lat.direct_e2e.push_back(us(t0, t1));
    lat.direct_first.push_back(us(t0, first));
    lat.gw_e2e.push_back(us(t2, t3));
    lat.gw_first.push_back(us(t2, gfirst));
  }
  close(fd);
  return lat;
}

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("gateway_bench", "Measures the latency and CPU cost the gateway adds.");
  std::string* gateway = flags.String("gateway", "build/bin/r1-gateway", "r1-gateway binary");
  std::string* fake = flags.String("fake-worker", "build/tests/r1_fake_worker", "fake worker binary");
  int64_t* requests = flags.Int("requests", 2000, "latency samples per request size");
  int64_t* long_tokens = flags.Int("long-tokens", 64, "tokens of the long latency request");
  int64_t* streams = flags.Int("streams", 32, "concurrent streams in the throughput phase");
  int64_t* stream_tokens = flags.Int("stream-tokens", 2000, "tokens per throughput request");
  double* seconds = flags.Double("seconds", 5, "length of the throughput phase");
  int64_t* workers = flags.Int("workers", 2, "fake workers");
  int64_t* gw_threads = flags.Int("gateway-threads", 1, "r1-gateway --threads");
  flags.ParseOrExit(argc, argv);
  if (access(gateway->c_str(), X_OK) != 0 || access(fake->c_str(), X_OK) != 0)
    flags.Fail("cannot run " + *gateway + " or " + *fake + " (pass --gateway and --fake-worker)");
  signal(SIGPIPE, SIG_IGN);

  std::vector<Child> ws;
  std::string list;
  for (int i = 0; i < *workers; ++i) {
    ws.push_back(Spawn({*fake, "--listen", "127.0.0.1:0", "--name", std::string("w") + std::to_string(i),
                        "--model-id", "m"},
                       "PORT"));
    if (ws.back().port == 0) flags.Fail("fake worker did not start");
    if (i) list += ",";
    list += std::string("127.0.0.1:") + std::to_string(ws.back().port);
  }
  Child gw = Spawn({*gateway, "--listen", "127.0.0.1:0", "--workers", list, "--threads",
                    std::to_string(*gw_threads), "--health-interval-ms", "1000",
                    "--log-level", "warning"}, "LISTENING");
  if (gw.port == 0) flags.Fail("r1-gateway did not start");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  auto report = [](const char* what, const Lat& l) {
    // Two estimates of the added latency: the difference of the percentiles, and the
    // percentiles of the differences of each adjacent (direct, gateway) pair.
    std::vector<double> paired;
    for (size_t i = 0; i < l.gw_e2e.size(); ++i) paired.push_back(l.gw_e2e[i] - l.direct_e2e[i]);
    std::printf("%s: direct e2e p50 %.0f us p99 %.0f us | via gateway e2e p50 %.0f us p99 %.0f us | "
                "added p50 %.0f us p99 %.0f us | paired added p50 %.0f us p99 %.0f us | "
                "first chunk added p50 %.0f us p99 %.0f us\n",
                what, Pct(l.direct_e2e, .5), Pct(l.direct_e2e, .99), Pct(l.gw_e2e, .5),
                Pct(l.gw_e2e, .99), Pct(l.gw_e2e, .5) - Pct(l.direct_e2e, .5),
                Pct(l.gw_e2e, .99) - Pct(l.direct_e2e, .99), Pct(paired, .5), Pct(paired, .99),
                Pct(l.gw_first, .5) - Pct(l.direct_first, .5),
                Pct(l.gw_first, .99) - Pct(l.direct_first, .99));
  };
  // Latency: a gateway in front of the first worker only, so that both paths reach the same
  // worker.
  Child solo_gw = Spawn({*gateway, "--listen", "127.0.0.1:0", "--workers",
                         std::string("127.0.0.1:") + std::to_string(ws[0].port), "--threads", "1",
                         "--log-level", "warning"}, "LISTENING");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Lat short_lat = MeasureLatency(solo_gw.port, ws[0].port, 1, static_cast<int>(*requests));
  Lat long_lat = MeasureLatency(solo_gw.port, ws[0].port, *long_tokens, static_cast<int>(*requests) / 2);
  kill(solo_gw.pid, SIGTERM);
  waitpid(solo_gw.pid, nullptr, 0);
  report("1-token request", short_lat);
  report((std::to_string(*long_tokens) + "-token request").c_str(), long_lat);
  double per_chunk = ((Pct(long_lat.gw_e2e, .5) - Pct(long_lat.direct_e2e, .5)) -
                      (Pct(short_lat.gw_e2e, .5) - Pct(short_lat.direct_e2e, .5))) /
                     static_cast<double>(*long_tokens - 1);
  std::printf("added per streamed chunk (p50 slope): %.2f us\n", per_chunk);

  // Throughput.
  std::atomic<int64_t> chunks{0};
  std::atomic<bool> stop{false};
  std::atomic<int64_t> errors{0};
  std::vector<std::thread> clients;
  double cpu0 = CpuSeconds(gw.pid);
  auto t0 = Clock::now();
  for (int i = 0; i < *streams; ++i) {
    clients.emplace_back([&] {
      int fd = Connect(gw.port);
      std::string req = ChatRequest(*stream_tokens);
      Clock::time_point first;
      while (!stop) {
        int64_t c = HttpStream(fd, req, &first);
        if (c < 0) {
          ++errors;
          close(fd);
          fd = Connect(gw.port);
          continue;
        }
        chunks += c;
      }
      close(fd);
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(*seconds));
  int64_t n = chunks.load();
  double cpu1 = CpuSeconds(gw.pid);
  auto t1 = Clock::now();
  stop = true;
  for (auto& t : clients) t.join();
  double wall = std::chrono::duration<double>(t1 - t0).count();
  double cpu = cpu1 - cpu0;
  std::printf("throughput: %lld SSE chunks in %.2f s over %lld streams = %.0f chunks/s; gateway CPU %.2f s "
              "= %.0f chunks per gateway CPU-second (per core); %lld errors\n",
              static_cast<long long>(n), wall, static_cast<long long>(*streams), n / wall, cpu,
              cpu > 0 ? n / cpu : 0.0, static_cast<long long>(errors.load()));
  kill(gw.pid, SIGTERM);
  waitpid(gw.pid, nullptr, 0);
  for (auto& w : ws) {
    kill(w.pid, SIGTERM);
    waitpid(w.pid, nullptr, 0);
  }
  return 0;
}
