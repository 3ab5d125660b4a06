// The engine in-process over the tiny model: a failing step ends only the requests in it with
// kError and the engine keeps serving; cancellation; preemption under a small cache gives the
// same greedy ids, with the prefix cache too (against an engine without it); a resumed stream
// continues exactly (greedy and sampled), and sampled streams do not depend on how their tokens
// are grouped into steps; deltas add up to the usage counts; penalties against
// a hand-run decode loop; the thinking budget's forced tokens and min_tokens through the
// samplers; KV-cache sizing (--kv-cache-memory 0, --kv-cache-fraction) and the load report on
// CPU.
#include "worker/engine/engine.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "tests/engine/collecting_sink.h"
#include "tests/model/fixtures.h"
#include "worker/engine/sampler.h"
#include "worker/model/qwen2.h"

namespace r1::engine {
namespace {

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

  std::unique_ptr<Engine> Make(int64_t kv_bytes, int max_running = 8,
                               ReasoningOptions reasoning = {}, bool prefix_caching = true,
                               int64_t prefill_chunk = 32) {
    EngineOptions o;
    o.reasoning = std::move(reasoning);
    o.enable_prefix_caching = prefix_caching;
    o.model_dir = *dir_;
    o.device = "cpu";
    o.dtype = "float32";
    o.kv_cache_memory = kv_bytes;
    o.block_size = 4;
    o.prefill_chunk = prefill_chunk;
    o.max_running = max_running;
    o.admit_headroom_tokens = 0;  // the preemption tests below are about preemption itself
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
  std::vector<EngineRequest> batch;  // in one submission: they meet however fast the engine runs
  for (const auto& p : prompts) {
    sinks.push_back(std::make_shared<CollectingSink>());
    batch.push_back(Req(p, 24, sinks.back()));
  }
  ASSERT_TRUE(tight->SubmitAll(std::move(batch)).ok());
  for (size_t i = 0; i < sinks.size(); ++i) {
    sinks[i]->Wait();
    EXPECT_EQ(sinks[i]->last.finish, FinishReason::kLength);
    EXPECT_EQ(sinks[i]->ids, want[i]) << "request " << i;
  }
  EXPECT_GT(tight->Load().preemptions, 0);
  EXPECT_EQ(IdleLoad(tight.get()).blocks_used, 0);
}

TEST_F(EngineTest, PrefixCacheUnderPreemptionAndCancellationKeepsGreedyIds) {
  // Eight prompts sharing a 24-token prefix (six blocks of 4), each with its own tail.
  std::vector<int32_t> shared;
  for (int j = 0; j < 24; ++j) shared.push_back(300 + 13 * j);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 8; ++i) {
    std::vector<int32_t> p = shared;
    for (int j = 0; j < 3 + i; ++j) p.push_back(5000 + 97 * i + 11 * j);
    prompts.push_back(p);
  }
  // The reference: each alone, no prefix cache, plenty of room.
  std::vector<std::vector<int32_t>> want;
  {
    auto plain = Make(1 << 22, 8, {}, /*prefix_caching=*/false);
    ASSERT_TRUE(plain);
    for (const auto& p : prompts) {
      auto s = std::make_shared<CollectingSink>();
      ASSERT_TRUE(plain->Submit(Req(p, 20, s)).ok());
      s->Wait();
      want.push_back(s->ids);
    }
    EXPECT_EQ(plain->Load().prefix_cache_queries, 0);
  }
  // 48 blocks: the first request caches the prefix; then all eight at once (up to 12 blocks
  // each) must take turns, preempted and recomputed from what is still cached; one is
  // cancelled half-way.
  auto tight = Make(48 * 1024);
  ASSERT_TRUE(tight);
  auto first = std::make_shared<CollectingSink>();
  ASSERT_TRUE(tight->Submit(Req(prompts[0], 20, first)).ok());
  first->Wait();
  EXPECT_EQ(first->ids, want[0]);
  // All eight in one submission, so they meet in the scheduler however fast the engine runs
  // (one at a time, a fast machine finished each before the next came: no preemption).
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  std::vector<EngineRequest> batch;
  for (const auto& p : prompts) {
    sinks.push_back(std::make_shared<CollectingSink>());
    batch.push_back(Req(p, 20, sinks.back()));
  }
  ASSERT_TRUE(tight->SubmitAll(std::move(batch)).ok());
  while (sinks[5]->Count() < 5 && !sinks[5]->done) std::this_thread::yield();
  sinks[5]->cancel = true;
  for (size_t i = 0; i < sinks.size(); ++i) {
    sinks[i]->Wait();
    if (i == 5) {
      EXPECT_EQ(sinks[i]->last.finish, FinishReason::kCancelled);
      EXPECT_EQ(sinks[i]->ids, std::vector<int32_t>(want[i].begin(), want[i].begin() + sinks[i]->ids.size()));
      continue;
    }
    EXPECT_EQ(sinks[i]->last.finish, FinishReason::kLength);
    EXPECT_EQ(sinks[i]->ids, want[i]) << "request " << i;
  }
  EngineLoad l = IdleLoad(tight.get());
  EXPECT_GT(l.preemptions, 0);
  EXPECT_TRUE(l.prefix_caching);
  // Every admission after the first found at least the shared prefix (24 tokens).
  EXPECT_GE(l.prefix_cache_hits, 8 * 24);
  EXPECT_GT(l.prefix_cache_queries, l.prefix_cache_hits);
  EXPECT_EQ(l.blocks_used, 0);  // cached blocks are free
}

TEST_F(EngineTest, AResumedStreamContinuesExactly) {
  auto engine = Make(1 << 22);
  ASSERT_TRUE(engine);
  const std::vector<int32_t> prompt = {11, 22, 33, 44, 55, 66, 77};
  for (bool sampled : {false, true}) {
    auto request = [&](std::shared_ptr<CollectingSink> sink) {
      EngineRequest r = Req(prompt, 30, std::move(sink));
      if (sampled) {
        r.sampling.temperature = 0.9f;
        r.sampling.top_p = 0.95f;
        r.sampling.presence_penalty = 0.5f;
        r.sampling.repetition_penalty = 1.2f;
        r.sampling.seed = 1234;
      }
      return r;
    };
    auto whole = std::make_shared<CollectingSink>();
    ASSERT_TRUE(engine->Submit(request(whole)).ok());
    whole->Wait();
    ASSERT_EQ(whole->ids.size(), 30u);
    // Another worker delivered the first 12: this one is asked for the other 18.
    auto rest = std::make_shared<CollectingSink>();
    EngineRequest r = request(rest);
    r.resume_output.assign(whole->ids.begin(), whole->ids.begin() + 12);
    r.max_tokens = 18;
    ASSERT_TRUE(engine->Submit(std::move(r)).ok());
    rest->Wait();
    EXPECT_EQ(rest->ids, std::vector<int32_t>(whole->ids.begin() + 12, whole->ids.end()))
        << (sampled ? "sampled" : "greedy");
    EXPECT_EQ(rest->last.finish, FinishReason::kLength);
    EXPECT_EQ(rest->last.prompt_tokens, 7);
    EXPECT_EQ(rest->last.completion_tokens, 30);
  }
}

// float32 on the CPU computes each token's row on its own (worker/model/cpu_f32.h), so sampled
// streams are the same however their tokens are grouped into steps: decoded beside other
// sequences or alone, prefilled in chunks of 5 or 32, or resumed at any point (the resume's
// prefill recomputes what was decoded token by token), with the prefix cache off or on. The
// chosen tokens' log-probabilities must be the same floats too: any last-bit change in a
// logit shows there, where a token flips only at a near-tie (the tiny model's random weights
// make its distribution nearly flat, so with at::linear and at::bmm 2 of 21 resumed streams
// of 160 tokens diverged, the other 19 agreed on their ids).
TEST_F(EngineTest, SampledStreamsDoNotDependOnHowTokensAreGroupedIntoSteps) {
  const std::vector<int32_t> prompt = {1011, 22222, 3333, 44444, 5555, 6666, 77777, 888, 9999, 12345, 23456, 34567};
  constexpr int kTokens = 48, kStreams = 3;
  auto request = [&](int k) {
    EngineRequest r = Req(prompt, kTokens, std::make_shared<CollectingSink>());
    r.sampling.temperature = 0.8f;
    r.sampling.top_p = 0.9f;
    r.sampling.seed = 70 + k;
    r.sampling.logprobs = true;
    r.prompt_logprobs = 0;
    return r;
  };
  struct Out {
    std::vector<int32_t> ids;      // a resumed stream's: the ids it was given, then its own
    std::vector<float> logprobs;   // the stream's own tokens'
    std::vector<float> prompt;     // the prompt's log-probabilities
  };
  // Runs the requests at once.
  auto run_together = [](Engine& engine, std::vector<EngineRequest> reqs) {
    std::vector<std::shared_ptr<CollectingSink>> sinks;
    std::vector<Out> out;
    for (EngineRequest& r : reqs) {
      sinks.push_back(std::static_pointer_cast<CollectingSink>(r.sink));
      out.push_back({r.resume_output, {}, {}});
      EXPECT_TRUE(engine.Submit(std::move(r)).ok());
    }
    for (size_t i = 0; i < sinks.size(); ++i) {
      sinks[i]->Wait();
      out[i].ids.insert(out[i].ids.end(), sinks[i]->ids.begin(), sinks[i]->ids.end());
      out[i].logprobs = sinks[i]->logprobs;
      for (const TokenInfo& t : sinks[i]->prompt_logprobs) out[i].prompt.push_back(t.logprob);
    }
    return out;
  };
  auto one = [&](Engine& engine, EngineRequest r) {
    std::vector<EngineRequest> v;
    v.push_back(std::move(r));
    return run_together(engine, std::move(v))[0];
  };

  auto engine = Make(1 << 24, 8, {}, /*prefix_caching=*/false);
  ASSERT_TRUE(engine);
  std::vector<Out> alone;
  for (int k = 0; k < kStreams; ++k) {
    alone.push_back(one(*engine, request(k)));
    ASSERT_EQ(alone.back().ids.size(), static_cast<size_t>(kTokens));
    ASSERT_EQ(alone.back().prompt.size(), prompt.size());
  }
  std::vector<EngineRequest> together;
  for (int k = 0; k < kStreams; ++k) together.push_back(request(k));
  const auto got = run_together(*engine, std::move(together));
  for (int k = 0; k < kStreams; ++k) {
    EXPECT_EQ(got[k].ids, alone[k].ids) << "stream " << k << " decoded beside the others";
    EXPECT_EQ(got[k].logprobs, alone[k].logprobs) << "stream " << k << " decoded beside the others";
    EXPECT_EQ(got[k].prompt, alone[k].prompt) << "stream " << k << " prefilled beside the others";
  }
  auto chunked = Make(1 << 24, 8, {}, /*prefix_caching=*/false, /*prefill_chunk=*/5);
  ASSERT_TRUE(chunked);
  const Out in_chunks = one(*chunked, request(1));
  EXPECT_EQ(in_chunks.ids, alone[1].ids) << "prompt prefilled in chunks of 5";
  EXPECT_EQ(in_chunks.logprobs, alone[1].logprobs) << "prompt prefilled in chunks of 5";
  EXPECT_EQ(in_chunks.prompt, alone[1].prompt) << "prompt prefilled in chunks of 5";

  for (bool caching : {false, true}) {
    auto resumer = Make(1 << 24, 8, {}, caching);
    ASSERT_TRUE(resumer);
    for (int cut : {1, 4, 9, 17, 30, 40}) {
      std::vector<EngineRequest> reqs;
      for (int k = 0; k < kStreams; ++k) {
        const int c = cut + 2 * k;  // the three are cut at different points, resumed together
        EngineRequest r = request(k);
        r.resume_output.assign(alone[k].ids.begin(), alone[k].ids.begin() + c);
        r.max_tokens = kTokens - c;
        r.prompt_logprobs = -1;
        reqs.push_back(std::move(r));
      }
      const auto resumed = run_together(*resumer, std::move(reqs));
      for (int k = 0; k < kStreams; ++k) {
        const int c = cut + 2 * k;
        EXPECT_EQ(resumed[k].ids, alone[k].ids) << "stream " << k << " resumed after " << c
                                                << " tokens, prefix caching " << caching;
        EXPECT_EQ(resumed[k].logprobs, std::vector<float>(alone[k].logprobs.begin() + c, alone[k].logprobs.end()))
            << "stream " << k << " resumed after " << c << " tokens, prefix caching " << caching;
      }
    }
  }
}

// Prompt log-probabilities (echo with logprobs) against transformers: entry p scores prompt
// token p by log_softmax of transformers' float32 logits after tokens 0..p-1
// (tests/fixtures/model, made by make_model_fixtures.py), with the top alternatives from the
// same row. Prefill in chunks of 8 tokens, the three prompts and a request without prompt
// log-probabilities in one engine at once: prompt rows and sampled rows share steps. The first
// prompt already sits in the prefix cache (a request ran it before): a request for prompt
// log-probabilities must not take those blocks, which have no logits to score.
TEST(EnginePromptLogprobs, MatchTransformersThroughChunkedMixedSteps) {
  EngineOptions o;
  o.model_dir = model::fixtures::Dir() + "/gqa_untied";
  o.device = "cpu";
  o.dtype = "float32";
  o.kv_cache_memory = 1 << 22;
  o.block_size = 4;
  o.prefill_chunk = 8;
  auto engine = Engine::Create(o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  constexpr int kTop = 3;
  const auto prompts = model::fixtures::Prompts("gqa_untied");
  ASSERT_GE(prompts.size(), 3u);
  auto warm = std::make_shared<CollectingSink>();
  EngineRequest wr;
  wr.prompt = prompts[0].prompt;
  wr.max_tokens = 1;
  wr.sink = warm;
  ASSERT_TRUE((*engine)->Submit(std::move(wr)).ok());
  warm->Wait();
  auto plain = std::make_shared<CollectingSink>();
  EngineRequest pr;
  pr.prompt = prompts[0].prompt;
  pr.max_tokens = 12;
  pr.ignore_eos = true;
  pr.sink = plain;
  ASSERT_TRUE((*engine)->Submit(std::move(pr)).ok());
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (const auto& p : prompts) {
    sinks.push_back(std::make_shared<CollectingSink>());
    EngineRequest r;
    r.prompt = p.prompt;
    r.max_tokens = 4;
    r.ignore_eos = true;
    r.prompt_logprobs = kTop;
    r.sink = sinks.back();
    ASSERT_TRUE((*engine)->Submit(std::move(r)).ok());
  }
  plain->Wait();
  EXPECT_TRUE(plain->prompt_logprobs.empty());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& p = prompts[i];
    sinks[i]->Wait();
    // transformers' greedy continuation: the generated tokens are unchanged by the scoring.
    EXPECT_EQ(sinks[i]->ids, std::vector<int32_t>(p.greedy_f32.begin(), p.greedy_f32.begin() + 4));
    const std::vector<TokenInfo>& got = sinks[i]->prompt_logprobs;
    EXPECT_EQ(sinks[i]->prompt_logprobs_delta, 0) << "with the first token";
    ASSERT_EQ(got.size(), p.prompt.size()) << p.name;
    EXPECT_EQ(got[0].id, p.prompt[0]);
    EXPECT_TRUE(got[0].top.empty());
    at::Tensor ref = at::log_softmax(model::fixtures::Reference("gqa_untied." + p.name + ".f32"), 1);
    double worst = 0;
    for (size_t pos = 1; pos < p.prompt.size(); ++pos) {
      at::Tensor row = ref[static_cast<int64_t>(pos) - 1];
      EXPECT_EQ(got[pos].id, p.prompt[pos]);
      worst = std::max(worst, std::abs(got[pos].logprob - row[p.prompt[pos]].item<double>()));
      auto [vals, ids] = row.topk(kTop);
      ASSERT_EQ(got[pos].top.size(), static_cast<size_t>(kTop));
      for (int k = 0; k < kTop; ++k) {
        EXPECT_EQ(got[pos].top[k].first, ids[k].item<int64_t>()) << p.name << " at " << pos;
        worst = std::max(worst, std::abs(got[pos].top[k].second - vals[k].item<double>()));
      }
    }
    EXPECT_LT(worst, 5e-4) << p.name;
    std::printf("prompt %s (%zu tokens): max |logprob - transformers'| %.3g\n", p.name.c_str(),
                p.prompt.size(), worst);
  }
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

// A sink that holds the engine thread in its first OnDelta until released: while it waits, the
// engine schedules nothing, so the admission queue fills deterministically.
class BlockingSink : public CollectingSink {
 public:
  void OnDelta(Delta d) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      entered_ = true;
      cv_.notify_all();
      cv_.wait(lock, [&] { return released_; });
    }
    CollectingSink::OnDelta(std::move(d));
  }
  void WaitEntered() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return entered_; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false, released_ = false;
};

TEST_F(EngineTest, BoundedQueueAndDraining) {
  EngineOptions o;
  o.model_dir = *dir_;
  o.dtype = "float32";
  o.device = "cpu";
  o.kv_cache_memory = 1 << 20;
  o.max_waiting = 0;
  auto bad = Engine::Create(o);
  ASSERT_FALSE(bad.ok());  // one check for the flag and the engine (ValidateEngineOptions)
  EXPECT_NE(bad.status().message().find("--max-waiting"), std::string::npos) << bad.status();
  o.max_waiting = 2;
  auto e = Engine::Create(o);
  ASSERT_TRUE(e.ok()) << e.status();
  auto blocker = std::make_shared<BlockingSink>();
  ASSERT_TRUE((*e)->Submit(Req({1}, 3, blocker)).ok());
  blocker->WaitEntered();  // the engine thread now waits in OnDelta
  auto s = std::make_shared<CollectingSink>();
  EXPECT_TRUE((*e)->Submit(Req({1}, 1, s)).ok());
  EXPECT_TRUE((*e)->Submit(Req({2}, 1, std::make_shared<CollectingSink>())).ok());
  EXPECT_EQ((*e)->Submit(Req({3}, 1, std::make_shared<CollectingSink>())).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ((*e)->Load().waiting, 2);
  blocker->Release();
  s->Wait();
  EXPECT_EQ(s->last.finish, FinishReason::kLength);
  (*e)->StopAccepting();
  EXPECT_EQ((*e)->Submit(Req({1}, 1, s)).code(), absl::StatusCode::kUnavailable);
}

// Greedy decoding by hand, one token per step, sampled by SampleBatch with `so`'s penalties
// (which count each output token once).
std::vector<int32_t> HandDecode(model::Qwen2Model& m, const std::vector<int32_t>& prompt,
                                const SamplingOptions& so, size_t n) {
  model::KvCache cache(m.config(), 16, 4, m.dtype(), m.device());
  model::SequenceStep step;
  for (int b = 0; b < 16; ++b) step.block_table.push_back(b);
  SamplerState st(0);
  st.prompt = prompt;
  std::vector<int32_t> feed = prompt, out;
  while (out.size() < n) {
    model::StepBatch batch;
    batch.tokens = feed;
    step.num_new = static_cast<int64_t>(feed.size());
    batch.seqs = {step};
    auto logits = m.Forward(batch, cache);
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) break;
    step.num_cached += step.num_new;
    out.push_back(SampleBatch(*logits, {&so}, {&st})[0].token);
    feed = {out.back()};
  }
  return out;
}

TEST_F(EngineTest, PenaltiesCountEachOutputTokenOnce) {
  std::vector<int32_t> prompt = {11, 200, 3001, 45, 45, 17};
  const size_t n = 24;
  model::LoadOptions lo;
  lo.dtype = "float32";
  auto m = model::Qwen2Model::Load(*dir_, lo);
  ASSERT_TRUE(m.ok()) << m.status();
  // The smallest frequency penalty whose output differs from twice that penalty's, so that
  // counting a token twice would show.
  SamplingOptions so;
  std::vector<int32_t> want;
  for (float f = 1.f / 4096; f < 100 && want.empty(); f *= 2) {
    so.frequency_penalty = f;
    std::vector<int32_t> once = HandDecode(**m, prompt, so, n);
    so.frequency_penalty = 2 * f;
    if (HandDecode(**m, prompt, so, n) != once) want = once;
    so.frequency_penalty = f;
  }
  ASSERT_FALSE(want.empty()) << "no penalty changes this model's output";
  auto engine = Make(1 << 20);
  ASSERT_TRUE(engine);
  auto sink = std::make_shared<CollectingSink>();
  EngineRequest r = Req(prompt, static_cast<int>(n), sink);
  r.sampling.frequency_penalty = so.frequency_penalty;
  ASSERT_TRUE(engine->Submit(std::move(r)).ok());
  sink->Wait();
  EXPECT_EQ(sink->ids, want) << "frequency penalty " << so.frequency_penalty;
}

// The tiny model has the real vocabulary: <think> 151648, </think> 151649, EOS 151643.
constexpr int32_t kThink = 151648, kThinkEnd = 151649, kTinyEos = 151643;

// The tiny model's thought markers, and a budget message of two tokens.
ReasoningOptions Thinking() {
  ReasoningOptions reasoning;
  reasoning.think_start_id = kThink;
  reasoning.think_end_id = kThinkEnd;
  reasoning.budget_message = {100, 200};
  return reasoning;
}

TEST_F(EngineTest, AThinkingBudgetForcesItsMessageAndThinkEndThroughTheSampler) {
  auto engine = Make(1 << 20, 8, Thinking());
  ASSERT_TRUE(engine);
  auto free_sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Req({5, 6, kThink}, 10, free_sink)).ok());
  free_sink->Wait();
  EXPECT_EQ(free_sink->last.reasoning_tokens, 10);  // no budget: the whole output is thought
  for (float temperature : {0.f, 1.f}) {
    auto sink = std::make_shared<CollectingSink>();
    EngineRequest r = Req({5, 6, kThink}, 10, sink);
    r.thinking_token_budget = 3;
    r.sampling.temperature = temperature;
    r.sampling.seed = 7;
    ASSERT_TRUE(engine->Submit(std::move(r)).ok());
    sink->Wait();
    ASSERT_EQ(sink->ids.size(), 10u);
    // Three free tokens (greedy: the same as without a budget), then the forced ones.
    if (temperature == 0.f) {
      EXPECT_EQ(std::vector<int32_t>(sink->ids.begin(), sink->ids.begin() + 3),
                std::vector<int32_t>(free_sink->ids.begin(), free_sink->ids.begin() + 3));
    }
    EXPECT_EQ(std::vector<int32_t>(sink->ids.begin() + 3, sink->ids.begin() + 6),
              (std::vector<int32_t>{100, 200, kThinkEnd}))
        << "temperature " << temperature;
    EXPECT_EQ(sink->last.reasoning_tokens, 5);
  }
}

TEST_F(EngineTest, AResumedStreamKeepsItsThinkingBudgetState) {
  auto engine = Make(1 << 20, 8, Thinking());
  ASSERT_TRUE(engine);
  auto request = [&](int32_t max_tokens, std::shared_ptr<CollectingSink> sink) {
    EngineRequest r = Req({5, 6, kThink}, max_tokens, std::move(sink));
    r.thinking_token_budget = 3;
    return r;
  };
  auto whole = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(request(10, whole)).ok());
  whole->Wait();
  ASSERT_EQ(whole->ids.size(), 10u);
  // Cut before the budget ends, at its end, inside the forced message, and after "</think>".
  for (int cut : {2, 3, 4, 5, 7}) {
    auto rest = std::make_shared<CollectingSink>();
    EngineRequest r = request(10 - cut, rest);
    r.resume_output.assign(whole->ids.begin(), whole->ids.begin() + cut);
    ASSERT_TRUE(engine->Submit(std::move(r)).ok());
    rest->Wait();
    EXPECT_EQ(rest->ids, std::vector<int32_t>(whole->ids.begin() + cut, whole->ids.end())) << "cut " << cut;
    EXPECT_EQ(rest->last.reasoning_tokens, whole->last.reasoning_tokens) << "cut " << cut;
    EXPECT_EQ(rest->last.completion_tokens, 10);
  }
}

TEST_F(EngineTest, MinTokensHoldsBackAnEndOfSequenceThatLogitBiasMakesCertain) {
  auto engine = Make(1 << 20);
  ASSERT_TRUE(engine);
  for (int32_t min_tokens : {0, 6}) {
    auto sink = std::make_shared<CollectingSink>();
    EngineRequest r = Req({11, 12, 13}, 20, sink);
    r.ignore_eos = false;
    r.logit_bias = {{kTinyEos, 100.f}};
    r.min_tokens = min_tokens;
    ASSERT_TRUE(engine->Submit(std::move(r)).ok());
    sink->Wait();
    EXPECT_EQ(sink->last.finish, FinishReason::kStop);
    ASSERT_EQ(sink->ids.size(), static_cast<size_t>(min_tokens + 1));
    EXPECT_EQ(sink->ids.back(), kTinyEos);
  }
}

TEST_F(EngineTest, KvCacheSizeFromFlagsAndLoadOnCpu) {
  EngineOptions o;
  o.model_dir = *dir_;
  o.dtype = "float32";
  o.device = "cpu";
  for (double bad : {0.0, -0.5, 1.01, std::nan("")}) {
    o.kv_cache_fraction = bad;
    auto e = Engine::Create(o);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(e.status().message().find("--kv-cache-fraction must be in (0, 1]"),
              std::string::npos)
        << e.status();
  }
  o.kv_cache_fraction = 0.5;  // no effect on CPU
  o.kv_cache_memory = -1;
  EXPECT_EQ(Engine::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.kv_cache_memory = 1000;  // less than one block
  auto tiny = Engine::Create(o);
  ASSERT_FALSE(tiny.ok());
  EXPECT_NE(tiny.status().message().find("holds no KV block"), std::string::npos);

  o.kv_cache_memory = 0;  // CPU: the default size
  auto e = Engine::Create(o);
  ASSERT_TRUE(e.ok()) << e.status();
  EngineLoad l = (*e)->Load();
  ASSERT_GT(l.blocks_total, 0);
  const int64_t per_block = l.kv_cache_bytes / l.blocks_total;
  EXPECT_EQ(l.kv_cache_bytes, per_block * l.blocks_total);
  EXPECT_LE(l.kv_cache_bytes, kDefaultCpuKvCacheMemory);
  EXPECT_GT(l.kv_cache_bytes, kDefaultCpuKvCacheMemory - per_block);
  // The default holds kDefaultCpuKvCacheTokens of any model: 1 GiB, or those tokens when
  // they take more (the float32 1.5B: 57,344 bytes a token).
  EXPECT_EQ(DefaultCpuKvCacheBytes(per_block / o.block_size), kDefaultCpuKvCacheMemory);
  EXPECT_EQ(DefaultCpuKvCacheBytes(57344), int64_t{32768} * 57344);
  EXPECT_EQ(DefaultCpuKvCacheBytes(kDefaultCpuKvCacheMemory / kDefaultCpuKvCacheTokens), kDefaultCpuKvCacheMemory);
  EXPECT_EQ(DefaultCpuKvCacheBytes(0), kDefaultCpuKvCacheMemory);
  // Off CUDA there are no device figures (the service reports process memory instead).
  EXPECT_FALSE(l.device_memory_available);
  EXPECT_EQ(l.device_memory_used + l.device_memory_total + l.allocator_allocated +
                l.allocator_reserved,
            0);
}

}  // namespace
}  // namespace r1::engine
