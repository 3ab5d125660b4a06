// r1-loadtest against a fake r1serve.v1.Inference server on loopback: token counting with
// multi-token messages, latency against injected delays, gRPC error classification.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "loadtest/report.h"
#include "loadtest/runner.h"
#include "r1serve/v1/inference.grpc.pb.h"

namespace r1::loadtest {
namespace {
namespace pb = r1serve::v1;

// Request k (in arrival order): k % 10 == 1 -> RESOURCE_EXHAUSTED, 2 -> UNAVAILABLE,
// 3 -> one token then FINISH_REASON_ERROR; the rest stream max_tokens tokens, two per
// message, after `first_ms`, `gap_ms` apart. Every fifth request's first token waits 250 ms.
class FakeInference final : public pb::Inference::Service {
 public:
  grpc::Status Generate(grpc::ServerContext*, const pb::GenerateRequest* req,
                        grpc::ServerWriter<pb::GenerateResponse>* writer) override {
    int k = next_k_++;
    if (req->text().empty() || !req->ignore_eos()) ++malformed_;
    if (with_errors_ && k % 10 == 1) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full");
    }
    if (with_errors_ && k % 10 == 2) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "draining");
    std::this_thread::sleep_for(std::chrono::milliseconds(k % 5 == 0 ? 250 : 30));
    if (with_errors_ && k % 10 == 3) {
      pb::GenerateResponse one;
      one.add_token_ids(1);
      writer->Write(one);
      pb::GenerateResponse last;
      last.set_finish_reason(pb::FINISH_REASON_ERROR);
      last.set_error_message("device lost");
      writer->Write(last);
      return grpc::Status::OK;
    }
    uint32_t n = req->max_tokens();
    for (uint32_t i = 0; i < n; i += 2) {
      if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      pb::GenerateResponse msg;
      msg.add_token_ids(static_cast<int32_t>(i));
      if (i + 1 < n) msg.add_token_ids(static_cast<int32_t>(i + 1));
      msg.set_text(" x");
      if (i + 2 >= n) {
        msg.set_finish_reason(pb::FINISH_REASON_LENGTH);
        msg.mutable_usage()->set_prompt_tokens(11);
        msg.mutable_usage()->set_completion_tokens(n);
      }
      writer->Write(msg);
    }
    return grpc::Status::OK;
  }

  std::atomic<int> next_k_{0};
  std::atomic<int> malformed_{0};
  bool with_errors_ = false;
};

class GrpcLoad : public ::testing::Test {
 protected:
  void Start(bool with_errors) {
    service_.with_errors_ = with_errors;
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&service_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }
  Options Opts() {
    Options o;
    o.target = "grpc://127.0.0.1:" + std::to_string(port_);
    o.prompt_len = LengthDist::Fixed(4);
    o.output_len = LengthDist::Fixed(6);
    o.timeout_s = 30;
    o.grpc_channels = 2;
    return o;
  }
  FakeInference service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(GrpcLoad, CountsTokensAndFollowsDelays) {
  Start(false);
  Options o = Opts();
  o.requests = 40;
  auto results = RunLoadTest(o, {Level{8, 0}});
  ASSERT_TRUE(results.ok()) << results.status();
  LevelReport r = MakeReport((*results)[0]);
  EXPECT_EQ(r.sent, 40);
  EXPECT_EQ(r.succeeded, 40);
  EXPECT_EQ(service_.malformed_.load(), 0);
  EXPECT_EQ(r.output_tokens, 40 * 6);
  EXPECT_EQ(r.prompt_tokens, 40 * 11);
  EXPECT_GE(r.ttft_ms.p50, 30);
  EXPECT_GE(r.ttft_ms.p90, 250);
  EXPECT_LT(r.ttft_ms.p50, r.ttft_ms.p90 - 120);  // the median is in the fast group
  // Three messages of two tokens, 20 ms apart: gaps of 10 ms per token, four per stream.
  EXPECT_EQ(r.itl_ms.count, 40u * 4);
  EXPECT_GE(r.itl_ms.p50, 9);
  EXPECT_LT(r.itl_ms.p50, 250);
  EXPECT_EQ(r.tpot_ms.count, 40u);  // (last - first message) / 5: about 8 ms
  EXPECT_GE(r.tpot_ms.p50, 5);
  EXPECT_LT(r.tpot_ms.p50, 250);
  EXPECT_GE(r.e2e_ms.p50, 30 + 2 * 20);
}

TEST_F(GrpcLoad, ClassifiesGrpcErrors) {
  Start(true);
  Options o = Opts();
  o.requests = 30;
  auto results = RunLoadTest(o, {Level{4, 0}});
  ASSERT_TRUE(results.ok()) << results.status();
  LevelReport r = MakeReport((*results)[0]);
  EXPECT_EQ(r.sent, 30);
  EXPECT_EQ(r.succeeded, 21);
  std::map<std::string, int64_t> want = {
      {"grpc_resource_exhausted", 3}, {"grpc_unavailable", 3}, {"stream_error", 3}};
  EXPECT_EQ(r.errors, want);
  EXPECT_EQ(r.error_samples["stream_error"], "device lost");
  EXPECT_EQ(r.error_samples["grpc_resource_exhausted"], "queue full");
}

TEST_F(GrpcLoad, DeadlineIsATimeout) {
  Start(false);
  Options o = Opts();
  o.requests = 4;
  o.timeout_s = 0.01;  // shorter than the fake's first-token delay
  auto results = RunLoadTest(o, {Level{2, 0}});
  ASSERT_TRUE(results.ok());
  LevelReport r = MakeReport((*results)[0]);
  EXPECT_EQ(r.errors, (std::map<std::string, int64_t>{{"grpc_deadline_exceeded", 4}}));
}

}  // namespace
}  // namespace r1::loadtest
