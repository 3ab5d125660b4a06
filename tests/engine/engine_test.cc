// The engine in-process over the tiny model: a failing step ends only the requests in it with
// kError and the engine keeps serving; cancellation; preemption under a small cache gives the
// same greedy ids; deltas add up to the usage counts.
#include "worker/engine/engine.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

namespace r1::engine {
namespace {

class CollectingSink : public RequestSink {
 public:
  void OnDelta(Delta d) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const TokenInfo& t : d.tokens) ids.push_back(t.id);
    deltas++;
    if (d.finish != FinishReason::kNone) {
      last = d;
      done = true;
      cv_.notify_all();
    }
  }
  bool Cancelled() const override { return cancel.load(); }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done; });
  }
  int Count() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(ids.size());
  }

  std::atomic<bool> cancel{false};
  std::vector<int32_t> ids;
  int deltas = 0;
  Delta last;
  bool done = false;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
};

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::filesystem::temp_directory_path() /
                           ("r1-engine-test-" + std::to_string(getpid())));
    std::filesystem::remove_all(*dir_);
    const char* bin = std::getenv("R1_BIN_DIR");
    ASSERT_NE(bin, nullptr);
    std::string cmd = std::string(bin) + "/r1-mkmodel --preset tiny --dtype float32 --out " +
                      *dir_ + " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(*dir_); }

  std::unique_ptr<Engine> Make(int64_t kv_bytes, int max_running = 8) {
    EngineOptions o;
    o.model_dir = *dir_;
    o.device = "cpu";
    o.dtype = "float32";
    o.kv_cache_memory = kv_bytes;
    o.block_size = 4;
    o.prefill_chunk = 32;
    o.max_running = max_running;
    o.clock = &clock_;
    auto e = Engine::Create(o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }

  static EngineRequest Req(std::vector<int32_t> prompt, int max_tokens,
                           std::shared_ptr<CollectingSink> sink) {
    EngineRequest r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    r.sink = std::move(sink);
    return r;
  }

  // Load() is published after each step, a moment after the last delta: poll for it.
  static EngineLoad IdleLoad(Engine* e) {
    EngineLoad l = e->Load();
    for (int i = 0; i < 2000 && (l.blocks_used != 0 || l.running != 0); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      l = e->Load();
    }
    return l;
  }

  static std::string* dir_;
  FakeClock clock_;
};
std::string* EngineTest::dir_ = nullptr;

TEST_F(EngineTest, AFailingStepEndsItsRequestsWithErrorAndTheEngineGoesOn) {
  auto engine = Make(1 << 20);
  ASSERT_TRUE(engine);
  auto bad = std::make_shared<CollectingSink>();
  // An id past the embedding table makes the model step fail.
  ASSERT_TRUE(engine->Submit(Req({1, engine->vocab_size() + 1000}, 4, bad)).ok());
  bad->Wait();
  EXPECT_EQ(bad->last.finish, FinishReason::kError);
  EXPECT_FALSE(bad->last.error.empty());
  EXPECT_TRUE(bad->ids.empty());

  auto good = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Req({1, 2, 3}, 5, good)).ok());
  good->Wait();
  EXPECT_EQ(good->last.finish, FinishReason::kLength);
  EXPECT_EQ(good->ids.size(), 5u);
  EXPECT_EQ(good->last.completion_tokens, 5);
  EXPECT_EQ(good->last.prompt_tokens, 3);
  EXPECT_EQ(IdleLoad(engine.get()).blocks_used, 0);
}

TEST_F(EngineTest, CancelledRequestLeavesAndFreesItsBlocks) {
  auto engine = Make(1 << 20);
  ASSERT_TRUE(engine);
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Req({5, 6, 7}, 0, sink)).ok());
  while (sink->Count() < 3) std::this_thread::yield();
  EXPECT_GT(engine->Load().blocks_used, 0);
  sink->cancel = true;
  sink->Wait();
  EXPECT_EQ(sink->last.finish, FinishReason::kCancelled);
  EXPECT_EQ(sink->last.completion_tokens, static_cast<int32_t>(sink->ids.size()));
  EngineLoad idle = IdleLoad(engine.get());
  EXPECT_EQ(idle.blocks_used, 0);
  EXPECT_EQ(idle.running, 0);
}

TEST_F(EngineTest, PreemptionByRecomputeKeepsGreedyIds) {
  // Reference: each request alone with plenty of cache.
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 6; ++i) {
    std::vector<int32_t> p;
    for (int j = 0; j < 5 + 7 * i; ++j) p.push_back(100 + 31 * i + 17 * j);
    prompts.push_back(p);
  }
  std::vector<std::vector<int32_t>> want;
  {
    auto roomy = Make(1 << 22);
    ASSERT_TRUE(roomy);
    for (const auto& p : prompts) {
      auto s = std::make_shared<CollectingSink>();
      ASSERT_TRUE(roomy->Submit(Req(p, 24, s)).ok());
      s->Wait();
      want.push_back(s->ids);
    }
  }
  // 40 blocks of 4 tokens (the tiny model keeps 256 bytes of K/V per token): 6 sequences of
  // up to 64 tokens (16 blocks) each must take turns.
  auto tight = Make(40 * 1024);
  ASSERT_TRUE(tight);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (const auto& p : prompts) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(tight->Submit(Req(p, 24, sinks.back())).ok());
  }
  for (size_t i = 0; i < sinks.size(); ++i) {
    sinks[i]->Wait();
    EXPECT_EQ(sinks[i]->last.finish, FinishReason::kLength);
    EXPECT_EQ(sinks[i]->ids, want[i]) << "request " << i;
  }
  EXPECT_GT(tight->Load().preemptions, 0);
  EXPECT_EQ(IdleLoad(tight.get()).blocks_used, 0);
}

TEST_F(EngineTest, TimingsComeFromTheInjectedClock) {
  auto engine = Make(1 << 20);
  ASSERT_TRUE(engine);
  auto sink = std::make_shared<CollectingSink>();
  EngineRequest r = Req({1, 2}, 2, sink);
  r.arrival = clock_.Now();
  clock_.Advance(std::chrono::milliseconds(250));  // as if it waited 250 ms in the queue
  ASSERT_TRUE(engine->Submit(std::move(r)).ok());
  sink->Wait();
  EXPECT_GE(sink->last.queued_ms, 250.0);
  EXPECT_GE(sink->last.ttft_ms, sink->last.queued_ms);
  EXPECT_GE(sink->last.total_ms, sink->last.ttft_ms);
}

TEST_F(EngineTest, BoundedQueueAndDraining) {
  EngineOptions o;
  o.model_dir = *dir_;
  o.dtype = "float32";
  o.device = "cpu";
  o.kv_cache_memory = 1 << 20;
  o.max_waiting = 0;
  auto e = Engine::Create(o);
  ASSERT_TRUE(e.ok());
  auto s = std::make_shared<CollectingSink>();
  EXPECT_EQ((*e)->Submit(Req({1}, 1, s)).code(), absl::StatusCode::kResourceExhausted);
  (*e)->StopAccepting();
  EXPECT_EQ((*e)->Submit(Req({1}, 1, s)).code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace r1::engine
