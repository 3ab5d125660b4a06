// Test helpers: an r1-worker child process on loopback, and a checkpoint made by r1-mkmodel.
#pragma once

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "r1serve/v1/inference.grpc.pb.h"

namespace r1::testing {

struct Paths {
  std::string worker, mkmodel, source_dir;
};
Paths& TestPaths();

// Runs a command; true when it exits 0.
bool RunCommand(const std::vector<std::string>& argv);

// DIR/model in a new temp dir DIR: a tiny float32 checkpoint (with tokenizer files when
// `tokenizer`); "" when r1-mkmodel fails.
std::string MakeTinyModel(bool tokenizer);
// Removes the temp dir MakeTinyModel made for `model`.
void RemoveTinyModel(const std::string& model);

class WorkerProcess {
 public:
  // Starts r1-worker --model MODEL --listen 127.0.0.1:0 --dtype float32 --threads 1 (64 MiB of KV cache)
  // EXTRA... and waits for
  // its "serving ... on HOST:PORT" line.
  WorkerProcess(const std::string& model, std::vector<std::string> extra = {});
  ~WorkerProcess();

  bool ok() const { return port_ > 0; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }
  r1serve::v1::Inference::Stub* stub() { return stub_.get(); }
  grpc::health::v1::Health::Stub* health() { return health_.get(); }

  void Signal(int sig) { kill(pid_, sig); }
  // Waits up to timeout_s for the process to exit; returns its exit status or -1.
  int Wait(double timeout_s);
  r1serve::v1::LoadReport Load();

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  bool exited_ = false;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<r1serve::v1::Inference::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

// The whole stream of one Generate call.
struct StreamResult {
  grpc::Status status;
  std::vector<int32_t> ids;
  std::string text;
  int messages = 0;
  r1serve::v1::GenerateResponse last;
};
StreamResult Generate(r1serve::v1::Inference::Stub* stub, const r1serve::v1::GenerateRequest& req,
                      double deadline_s = 120);

r1serve::v1::GenerateRequest IdsRequest(const std::vector<int32_t>& prompt, uint32_t max_tokens);
std::vector<int32_t> SomeIds(int n, int seed);

// GET path from 127.0.0.1:port; the response head and body ("" on failure).
std::string HttpGet(int port, const std::string& path);

}  // namespace r1::testing
