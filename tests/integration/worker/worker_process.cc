#include "tests/integration/worker/worker_process.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <regex>
#include <thread>

namespace r1::testing {

Paths& TestPaths() {
  static Paths p;
  return p;
}

bool RunCommand(const std::vector<std::string>& argv) {
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string MakeTinyModel(bool tokenizer) {
  char tmpl[] = "/tmp/r1-worker-test-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string out = dir + "/model";
  std::vector<std::string> cmd = {TestPaths().mkmodel, "--preset", "tiny", "--out", out,
                                  "--dtype", "float32"};
  if (tokenizer) {
    cmd.push_back("--tokenizer");
    cmd.push_back(TestPaths().source_dir + "/.cache/tokenizer/tokenizer.json");
  }
  if (!RunCommand(cmd)) {
    std::filesystem::remove_all(dir);
    return "";
  }
  return out;
}

void RemoveTinyModel(const std::string& model) {
  if (model.empty()) return;
  std::filesystem::remove_all(std::filesystem::path(model).parent_path());
}

WorkerProcess::WorkerProcess(const std::string& model, std::vector<std::string> extra) {
  int fds[2];
  if (pipe(fds) != 0) return;
  pid_ = fork();
  if (pid_ == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    std::vector<std::string> argv = {TestPaths().worker, "--model", model, "--listen",
                                     "127.0.0.1:0", "--dtype", "float32", "--log-level",
                                     "warning", "--metrics-listen", "127.0.0.1:0",
                                     "--kv-cache-memory", "67108864", "--threads", "1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::regex serving("serving .* on 127\\.0\\.0\\.1:([0-9]+)");
  std::regex metrics("metrics on 127\\.0\\.0\\.1:([0-9]+)");
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    char buf[512];
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, n);
    std::smatch m;
    if (std::regex_search(out, m, metrics)) metrics_port_ = std::stoi(m[1]);
    if (std::regex_search(out, m, serving)) {
      port_ = std::stoi(m[1]);
      break;
    }
  }
  // Keep draining stdout so the worker never blocks on a full pipe.
  int fd = fds[0];
  std::thread([fd] {
    char buf[512];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
  }).detach();
  if (port_ > 0) {
    channel_ = grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
    stub_ = r1serve::v1::Inference::NewStub(channel_);
    health_ = grpc::health::v1::Health::NewStub(channel_);
  }
}

int WorkerProcess::Wait(double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

WorkerProcess::~WorkerProcess() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

r1serve::v1::LoadReport WorkerProcess::Load() {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  r1serve::v1::LoadReport report;
  stub_->GetLoad(&ctx, r1serve::v1::LoadRequest(), &report);
  return report;
}

StreamResult Generate(r1serve::v1::Inference::Stub* stub, const r1serve::v1::GenerateRequest& req,
                      double deadline_s) {
  StreamResult r;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(deadline_s * 1000)));
  auto reader = stub->Generate(&ctx, req);
  r1serve::v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    r.messages++;
    r.ids.insert(r.ids.end(), msg.token_ids().begin(), msg.token_ids().end());
    r.text += msg.text();
    r.last = msg;
  }
  r.status = reader->Finish();
  return r;
}

r1serve::v1::GenerateRequest IdsRequest(const std::vector<int32_t>& prompt, uint32_t max_tokens) {
  r1serve::v1::GenerateRequest req;
  for (int32_t id : prompt) req.mutable_token_ids()->add_ids(id);
  req.set_max_tokens(max_tokens);
  req.set_ignore_eos(true);
  // Greedy, said explicitly: left unset, the checkpoint's generation_config.json applies.
  req.mutable_sampling()->set_temperature(0.f);
  return req;
}

std::vector<int32_t> SomeIds(int n, int seed) {
  std::vector<int32_t> ids;
  uint32_t x = 2654435761u * (seed + 1);
  for (int i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    ids.push_back(static_cast<int32_t>(x % 150000));
  }
  return ids;
}

std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "";
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  if (write(fd, req.data(), req.size()) < 0) {
    close(fd);
    return "";
  }
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, n);
  close(fd);
  size_t body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(0, body) + "\n\n" + out.substr(body + 4);
}

}  // namespace r1::testing
