#include "loadtest/grpc_backend.h"

#include <atomic>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/ascii.h"
#include "r1serve/v1/inference.grpc.pb.h"

namespace r1::loadtest {
namespace pb = r1serve::v1;

std::string GrpcErrorKind(int code) {
  static const char* const kNames[] = {
      "ok",        "cancelled",          "unknown",           "invalid_argument",
      "deadline_exceeded", "not_found",  "already_exists",    "permission_denied",
      "resource_exhausted", "failed_precondition", "aborted", "out_of_range",
      "unimplemented", "internal",       "unavailable",       "data_loss",
      "unauthenticated"};
  if (code >= 0 && code < static_cast<int>(std::size(kNames))) {
    return std::string("grpc_") + kNames[code];
  }
  return "grpc_code_" + std::to_string(code);
}

namespace {

class GenerateCall final : public grpc::ClientReadReactor<pb::GenerateResponse> {
 public:
  GenerateCall(pb::Inference::Stub* stub, const Options& options, const RequestSpec& spec,
               DoneCallback done)
      : done_(std::move(done)) {
    request_.set_request_id("loadtest-" + std::to_string(spec.index));
    request_.set_text(spec.prompt);
    request_.set_max_tokens(static_cast<uint32_t>(spec.max_tokens));
    request_.set_ignore_eos(options.ignore_eos);
    request_.mutable_sampling()->set_temperature(static_cast<float>(options.temperature));
    if (!options.api_key.empty()) {
      context_.AddMetadata("authorization", "Bearer " + options.api_key);
    }
    context_.set_deadline(std::chrono::system_clock::now() +
                          std::chrono::duration_cast<std::chrono::system_clock::duration>(
                              std::chrono::duration<double>(options.timeout_s)));
    result_.start = SteadyClock::now();
    stub->async()->Generate(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream is over; OnDone follows
    auto now = SteadyClock::now();
    result_.OnTokens(now, response_.token_ids_size());
    if (response_.finish_reason() != pb::FINISH_REASON_UNSPECIFIED) {
      finished_ = true;
      result_.output_tokens = response_.usage().completion_tokens();
      result_.prompt_tokens = response_.usage().prompt_tokens();
      if (response_.finish_reason() == pb::FINISH_REASON_ERROR) {
        result_.Fail("stream_error", response_.error_message());
      } else if (response_.finish_reason() == pb::FINISH_REASON_CANCELLED) {
        result_.Fail("cancelled", "the worker cancelled the request");
      }
    }
    response_.Clear();
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    result_.end = SteadyClock::now();
    if (!status.ok()) {
      if (result_.error_kind.empty()) {
        result_.Fail(GrpcErrorKind(status.error_code()), status.error_message());
      }
    } else if (result_.error_kind.empty() && !finished_) {
      result_.Fail("disconnected", "the stream ended without a finish_reason");
    }
    if (result_.error_kind.empty()) result_.ok = true;
    if (result_.output_tokens == 0) result_.output_tokens = result_.counted_tokens;
    DoneCallback done = std::move(done_);
    RequestResult result = std::move(result_);
    delete this;
    done(std::move(result));
  }

 private:
  DoneCallback done_;
  grpc::ClientContext context_;
  pb::GenerateRequest request_;
  pb::GenerateResponse response_;
  RequestResult result_;
  bool finished_ = false;
};

class GrpcBackend final : public Backend {
 public:
  GrpcBackend(const Target& target, Options options) : options_(std::move(options)) {
    std::string address = target.host.find(':') != std::string::npos
                              ? "[" + target.host + "]:" + target.port
                              : target.host + ":" + target.port;
    int64_t n = std::max<int64_t>(1, options_.grpc_channels);
    for (int64_t i = 0; i < n; ++i) {
      grpc::ChannelArguments args;
      // A channel of its own (its own TCP connection), not one shared subchannel.
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetInt("r1.loadtest.channel", static_cast<int>(i));
      auto channel =
          grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
      stubs_.push_back(pb::Inference::NewStub(channel));
    }
  }

  void Start(const RequestSpec& spec, DoneCallback done) override {
    size_t i = next_.fetch_add(1) % stubs_.size();
    new GenerateCall(stubs_[i].get(), options_, spec, std::move(done));
  }

 private:
  Options options_;
  std::vector<std::unique_ptr<pb::Inference::Stub>> stubs_;
  std::atomic<size_t> next_{0};
};

}  // namespace

std::unique_ptr<Backend> MakeGrpcBackend(const Target& target, const Options& options) {
  return std::make_unique<GrpcBackend>(target, options);
}

}  // namespace r1::loadtest
