// Worker batching benchmark against a running r1-worker (gRPC):
//   1. aggregate decode tokens/s with 1, 4 and 16 concurrent greedy streams;
//   2. time to first token of a short prompt sent while a long prompt is being prefilled;
//   3. the prefix cache: time to first token of a long prompt sent cold, then again (warm),
//      for a few different prompts, with the medians.
//
//   r1-worker --model DIR --listen 127.0.0.1:50051 &
//   worker_bench --target 127.0.0.1:50051 --streams 1,4,16 --decode-tokens 32
//   worker_bench --target 127.0.0.1:50051 --streams "" --long-prompt 0 --repeat-prompt 2000
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include "common/flags.h"
#include "r1serve/v1/inference.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
using r1serve::v1::GenerateRequest;
using r1serve::v1::GenerateResponse;

double Secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

GenerateRequest Request(int prompt_len, int max_tokens, int seed) {
  GenerateRequest req;
  uint32_t x = 2654435761u * (seed + 1);
  for (int i = 0; i < prompt_len; ++i) {
    x = x * 1664525u + 1013904223u;
    req.mutable_token_ids()->add_ids(static_cast<int32_t>(1000 + x % 100000));
  }
  req.set_max_tokens(max_tokens);
  req.set_ignore_eos(true);
  return req;
}

struct Trace {
  Clock::time_point sent;
  std::vector<Clock::time_point> token_times;  // one per token received
  grpc::Status status;
};

Trace Run(r1serve::v1::Inference::Stub* stub, const GenerateRequest& req) {
  Trace t;
  grpc::ClientContext ctx;
  t.sent = Clock::now();
  auto reader = stub->Generate(&ctx, req);
  GenerateResponse msg;
  while (reader->Read(&msg)) {
    Clock::time_point now = Clock::now();
    for (int i = 0; i < msg.token_ids_size(); ++i) t.token_times.push_back(now);
  }
  t.status = reader->Finish();
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("worker_bench", "Decode throughput and TTFT under prefill for an r1-worker.");
  std::string* target = flags.String("target", "127.0.0.1:50051", "worker HOST:PORT");
  std::string* streams = flags.String("streams", "1,4,16", "concurrency levels to measure");
  int64_t* decode_tokens = flags.Int("decode-tokens", 32, "tokens each stream generates");
  int64_t* prompt_len = flags.Int("prompt-len", 16, "prompt tokens of the decode streams");
  int64_t* long_prompt = flags.Int("long-prompt", 4000, "tokens of the long prompt (0: skip)");
  int64_t* short_prompt = flags.Int("short-prompt", 16, "tokens of the short prompt");
  int64_t* chunk = flags.Int("prefill-chunk", 512, "the worker's --prefill-chunk, for the report");
  int64_t* repeat_prompt = flags.Int("repeat-prompt", 0, "tokens of a prompt sent cold and then again, timing the prefix cache (0: skip)");
  int64_t* repeat_pairs = flags.Int("repeat-pairs", 3, "different prompts for --repeat-prompt (the medians are over them)");
  flags.ParseOrExit(argc, argv);

  auto channel = grpc::CreateChannel(*target, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::cerr << "worker_bench: cannot connect to " << *target << std::endl;
    return 1;
  }
  auto stub = r1serve::v1::Inference::NewStub(channel);

  // Warm-up.
  Trace warm = Run(stub.get(), Request(static_cast<int>(*prompt_len), 2, 999));
  if (!warm.status.ok()) {
    std::cerr << "worker_bench: " << warm.status.error_message() << std::endl;
    return 1;
  }

  double single = 0;
  for (const std::string& s : r1::SplitCommaList(*streams)) {
    int n = std::stoi(s);
    std::vector<Trace> traces(n);
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&, i] {
        traces[i] = Run(stub.get(), Request(static_cast<int>(*prompt_len),
                                            static_cast<int>(*decode_tokens), i));
      });
    }
    for (auto& t : threads) t.join();
    // Decode window: from when every stream has its first token until the first one ends.
    Clock::time_point t0 = Clock::time_point::min(), t1 = Clock::time_point::max();
    for (const Trace& t : traces) {
      if (!t.status.ok() || t.token_times.size() < 2) {
        std::cerr << "worker_bench: stream failed: " << t.status.error_message() << std::endl;
        return 1;
      }
      t0 = std::max(t0, t.token_times.front());
      t1 = std::min(t1, t.token_times.back());
    }
    size_t count = 0;
    for (const Trace& t : traces) {
      for (auto tp : t.token_times) count += (tp > t0 && tp <= t1) ? 1 : 0;
    }
    double secs = Secs(t0, t1);
    double rate = secs > 0 ? count / secs : 0;
    if (n == 1) single = rate;
    std::printf("decode  streams=%-3d tokens_in_window=%-5zu window_s=%.2f  aggregate=%.2f tok/s",
                n, count, secs, rate);
    if (n > 1 && single > 0) std::printf("  (%.2fx single stream)", rate / single);
    std::printf("\n");
    std::fflush(stdout);
  }

  if (*long_prompt > 0) {
    Trace long_trace, short_trace;
    std::thread long_thread(
        [&] { long_trace = Run(stub.get(), Request(static_cast<int>(*long_prompt), 1, 7)); });
    // Send the short prompt once the long one is being prefilled.
    for (int i = 0; i < 500; ++i) {
      grpc::ClientContext ctx;
      r1serve::v1::LoadReport load;
      if (stub->GetLoad(&ctx, {}, &load).ok() && load.running() > 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    short_trace = Run(stub.get(), Request(static_cast<int>(*short_prompt), 1, 8));
    long_thread.join();
    if (!long_trace.status.ok() || !short_trace.status.ok() || long_trace.token_times.empty() ||
        short_trace.token_times.empty()) {
      std::cerr << "worker_bench: prefill run failed" << std::endl;
      return 1;
    }
    double long_ttft = Secs(long_trace.sent, long_trace.token_times.front());
    double short_ttft = Secs(short_trace.sent, short_trace.token_times.front());
    int chunks = static_cast<int>((*long_prompt + *chunk - 1) / *chunk);
    double per_chunk = long_ttft / chunks;
    std::printf("prefill long_prompt=%lld tokens: ttft=%.2f s (%d chunks of %lld, %.2f s each)\n",
                static_cast<long long>(*long_prompt), long_ttft, chunks,
                static_cast<long long>(*chunk), per_chunk);
    std::printf("prefill short_prompt=%lld tokens sent during it: ttft=%.2f s = %.2f chunk times\n",
                static_cast<long long>(*short_prompt), short_ttft, short_ttft / per_chunk);
  }

  if (*repeat_prompt > 0) {
    std::vector<double> cold, warm;
    for (int k = 0; k < *repeat_pairs; ++k) {
      // A prompt of its own per pair (seeded apart from the others), so the cold run is cold.
      const GenerateRequest req = Request(static_cast<int>(*repeat_prompt), 1, 100 + k);
      Trace a = Run(stub.get(), req);
      Trace b = Run(stub.get(), req);
      if (!a.status.ok() || !b.status.ok() || a.token_times.empty() || b.token_times.empty()) {
        std::cerr << "worker_bench: prefix-cache run failed: " << a.status.error_message()
                  << b.status.error_message() << std::endl;
        return 1;
      }
      cold.push_back(Secs(a.sent, a.token_times.front()));
      warm.push_back(Secs(b.sent, b.token_times.front()));
      std::printf("prefix-cache prompt=%lld tokens, prompt %d: cold ttft=%.3f s, again ttft=%.3f s (%.1fx)\n",
                  static_cast<long long>(*repeat_prompt), k + 1, cold.back(), warm.back(),
                  cold.back() / warm.back());
      std::fflush(stdout);
    }
    std::printf("prefix-cache median over %zu prompts: cold ttft=%.3f s, again ttft=%.3f s, %.1fx sooner\n",
                cold.size(), Median(cold), Median(warm), Median(cold) / Median(warm));
  }
  return 0;
}
