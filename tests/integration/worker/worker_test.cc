// r1-worker as a real process on loopback with the tiny model: streaming, batching, n choices
// on one call, cancellation, admission, validation, health, metrics and draining.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <thread>

#include "tests/integration/worker/worker_process.h"
#include "worker/tokenizer/tokenizer.h"

namespace r1::testing {
namespace {

using r1serve::v1::FINISH_REASON_LENGTH;
using r1serve::v1::FINISH_REASON_STOP;
using r1serve::v1::GenerateRequest;

class WorkerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // With tokenizer files when this build can write them (model_ is empty otherwise).
    model_ = new std::string(MakeTinyModel(/*tokenizer=*/true));
    bare_model_ = new std::string(MakeTinyModel(/*tokenizer=*/false));
  }
  static void TearDownTestSuite() {
    RemoveTinyModel(*model_);
    RemoveTinyModel(*bare_model_);
  }
  static bool HasTokenizerModel() { return !model_->empty(); }
  static std::string* model_;
  static std::string* bare_model_;
};
std::string* WorkerTest::model_ = nullptr;
std::string* WorkerTest::bare_model_ = nullptr;

std::vector<int32_t> Greedy(WorkerProcess& w, const std::vector<int32_t>& prompt, int n) {
  StreamResult r = Generate(w.stub(), IdsRequest(prompt, n));
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  return r.ids;
}

// The load report once no sequence runs and no KV block is used (or after 10 s).
r1serve::v1::LoadReport LoadOnceIdle(WorkerProcess& w) {
  r1serve::v1::LoadReport load;
  for (int i = 0; i < 500; ++i) {
    load = w.Load();
    if (load.kv_blocks_used() == 0 && load.running() == 0 && load.waiting() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return load;
}

// The worker's /metrics once it holds `line` (the engine counts a cancelled request when it
// drops it, which may come just after the load report shows it gone), or after 10 s.
std::string MetricsWith(WorkerProcess& w, const std::string& line) {
  std::string m;
  for (int i = 0; i < 500; ++i) {
    m = HttpGet(w.metrics_port(), "/metrics");
    if (m.find(line) != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return m;
}

TEST_F(WorkerTest, HealthLoadAndMetrics) {
  ASSERT_FALSE(bare_model_->empty());
  WorkerProcess w(*bare_model_, {"--max-running", "7", "--max-waiting", "9", "--max-model-len",
                            "1000", "--memory-limit", "123456789"});
  ASSERT_TRUE(w.ok());
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest hreq;
  grpc::health::v1::HealthCheckResponse hres;
  ASSERT_TRUE(w.health()->Check(&ctx, hreq, &hres).ok());
  EXPECT_EQ(hres.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  r1serve::v1::LoadReport load = w.Load();
  EXPECT_EQ(load.max_running(), 7u);
  EXPECT_EQ(load.max_waiting(), 9u);
  EXPECT_EQ(load.max_model_len(), 1000u);
  EXPECT_EQ(load.device_memory_total_bytes(), 123456789u);
  EXPECT_GT(load.device_memory_used_bytes(), 1000000u);
  EXPECT_GT(load.kv_blocks_total(), 0u);
  EXPECT_EQ(load.kv_blocks_used(), 0u);
  EXPECT_EQ(load.device(), "cpu");
  EXPECT_EQ(load.model_id(), "model");
  EXPECT_FALSE(load.draining());

  StreamResult r = Generate(w.stub(), IdsRequest(SomeIds(5, 1), 6));
  ASSERT_TRUE(r.status.ok());
  std::string m = HttpGet(w.metrics_port(), "/metrics");
  EXPECT_NE(m.find("200 OK"), std::string::npos);
  for (const char* name :
       {"r1_worker_time_to_first_token_seconds_bucket", "r1_worker_inter_token_latency_seconds",
        "r1_worker_e2e_latency_seconds", "r1_worker_queue_time_seconds",
        "r1_worker_running_sequences", "r1_worker_waiting_sequences",
        "r1_worker_kv_cache_usage_ratio", "r1_worker_device_memory_used_bytes",
        "r1_worker_device_memory_total_bytes 123456789",
        // CPU: no CUDA allocator; 64 MiB of KV cache: 16,384 blocks of 16 x 256 bytes.
        "r1_worker_device_memory_allocated_bytes 0", "r1_worker_device_memory_reserved_bytes 0",
        "r1_worker_kv_cache_bytes 67108864", "r1_worker_prompt_tokens_total 5",
        "r1_worker_generation_tokens_total 6", "r1_worker_preemptions_total",
        "r1_worker_requests_total{finish_reason=\"length\"} 1",
        "r1_worker_rejected_requests_total{reason=\"queue_full\"} 0"}) {
    EXPECT_NE(m.find(name), std::string::npos) << name << "\n" << m;
  }
  EXPECT_NE(HttpGet(w.metrics_port(), "/nope").find("404"), std::string::npos);
}

TEST_F(WorkerTest, BadKvCacheFlagsGiveOneLineAndExitTwo) {
  ASSERT_FALSE(bare_model_->empty());
  for (const char* bad : {"--kv-cache-fraction 0", "--kv-cache-fraction 1.5",
                          "--kv-cache-fraction nan", "--kv-cache-memory -1"}) {
    std::string cmd = TestPaths().worker + " --model " + *bare_model_ + " " + bad + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof buf, p)) out += buf;
    int status = pclose(p);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << bad << ": " << status;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << bad << ": " << out;
    std::string flag = std::string(bad).substr(0, std::string(bad).find(' '));
    EXPECT_EQ(out.rfind("r1-worker: ", 0), 0u) << out;
    EXPECT_NE(out.find(flag), std::string::npos) << out;
  }
}

TEST_F(WorkerTest, ThirtyTwoConcurrentStreamsUnderCachePressure) {
  // 24 blocks of 16 tokens: the 32 streams cannot all fit, so the engine queues and preempts.
  // Every stream must still finish with its full output, identical to running it alone.
  // (No admission headroom: the test is about preemption itself.)
  WorkerProcess w(*bare_model_, {"--max-running", "12", "--block-size", "16", "--admit-headroom-tokens", "0",
                                 "--kv-cache-memory", std::to_string(24 * 4096),
                                 "--prefill-chunk", "64"});
  ASSERT_TRUE(w.ok());
  struct Case {
    std::vector<int32_t> prompt;
    int max_tokens;
    StreamResult result;
  };
  std::vector<Case> cases(32);
  for (int i = 0; i < 32; ++i) {
    cases[i].prompt = SomeIds(1 + (i * 37) % 150, i);
    cases[i].max_tokens = 1 + (i * 13) % 60;
  }
  std::vector<std::thread> threads;
  for (auto& c : cases) {
    threads.emplace_back([&] { c.result = Generate(w.stub(), IdsRequest(c.prompt, c.max_tokens)); });
  }
  for (auto& t : threads) t.join();
  for (auto& c : cases) {
    const StreamResult& r = c.result;
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.last.finish_reason(), FINISH_REASON_LENGTH);
    EXPECT_EQ(static_cast<int>(r.ids.size()), c.max_tokens);
    EXPECT_EQ(r.last.usage().completion_tokens(), static_cast<uint32_t>(c.max_tokens));
    EXPECT_EQ(r.last.usage().prompt_tokens(), c.prompt.size());
    EXPECT_GE(r.last.timings().total_ms(), r.last.timings().time_to_first_token_ms());
  }
  std::string m = HttpGet(w.metrics_port(), "/metrics");
  EXPECT_EQ(m.find("r1_worker_preemptions_total 0\n"), std::string::npos) << "no preemption";
  r1serve::v1::LoadReport load;
  for (int i = 0; i < 500; ++i) {  // the report is refreshed after each step
    load = w.Load();
    if (load.kv_blocks_used() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(load.kv_blocks_used(), 0u);
  // Same ids as alone on an unconstrained worker.
  WorkerProcess solo(*bare_model_);
  ASSERT_TRUE(solo.ok());
  for (auto& c : cases) EXPECT_EQ(Greedy(solo, c.prompt, c.max_tokens), c.result.ids);
}

TEST_F(WorkerTest, GreedyIsBatchInvariant) {
  WorkerProcess w(*bare_model_);
  ASSERT_TRUE(w.ok());
  std::vector<int32_t> prompt = SomeIds(23, 99);
  std::vector<int32_t> alone = Greedy(w, prompt, 40);
  ASSERT_EQ(alone.size(), 40u);
  std::vector<std::thread> others;
  std::atomic<bool> go{false};
  for (int i = 0; i < 6; ++i) {
    others.emplace_back([&, i] {
      while (!go) std::this_thread::yield();
      Generate(w.stub(), IdsRequest(SomeIds(3 + 50 * i, i), 20 + 10 * i));
    });
  }
  go = true;
  std::vector<int32_t> batched = Greedy(w, prompt, 40);
  for (auto& t : others) t.join();
  EXPECT_EQ(alone, batched);
}

// GenerateRequest.n: one call, n sequences. Choice k of a seeded request samples what a
// request of its own with seed + k does (what the gateway sent before calls carried n); every
// choice ends with its own last message; the prompt's log-probabilities come once, on the
// call's first message, which is choice 0's.
TEST_F(WorkerTest, NChoicesOnOneCallSampleAsSeparateRequestsWithSeedPlusK) {
  WorkerProcess w(*bare_model_, {"--max-waiting", "4"});
  ASSERT_TRUE(w.ok());
  GenerateRequest req = IdsRequest(SomeIds(12, 5), 16);
  req.mutable_sampling()->set_temperature(0.9f);
  req.mutable_sampling()->set_top_p(0.95f);
  req.mutable_sampling()->set_seed(100);
  req.set_logprobs(true);
  req.set_prompt_logprobs(2);
  req.set_n(3);
  grpc::ClientContext ctx;
  auto reader = w.stub()->Generate(&ctx, req);
  r1serve::v1::GenerateResponse msg;
  std::vector<std::vector<int32_t>> ids(3);
  std::vector<int> finals(3), logprobs(3);
  int messages = 0, with_prompt_logprobs = 0;
  while (reader->Read(&msg)) {
    const uint32_t k = msg.choice_index();
    ASSERT_LT(k, 3u);
    EXPECT_EQ(finals[k], 0) << "a message of choice " << k << " after its last";
    if (messages++ == 0) {
      EXPECT_EQ(k, 0u) << "the first message is choice 0's";
      EXPECT_EQ(msg.prompt_logprobs_size(), 12);
    }
    if (msg.prompt_logprobs_size() > 0) ++with_prompt_logprobs;
    ids[k].insert(ids[k].end(), msg.token_ids().begin(), msg.token_ids().end());
    logprobs[k] += msg.logprobs_size();
    if (msg.finish_reason() != r1serve::v1::FINISH_REASON_UNSPECIFIED) {
      ++finals[k];
      EXPECT_EQ(msg.finish_reason(), FINISH_REASON_LENGTH);
      EXPECT_EQ(msg.usage().completion_tokens(), 16u);
      EXPECT_EQ(msg.usage().prompt_tokens(), 12u);
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(with_prompt_logprobs, 1);
  EXPECT_EQ(finals, (std::vector<int>{1, 1, 1}));
  EXPECT_EQ(logprobs, (std::vector<int>{16, 16, 16}));
  for (uint32_t k = 0; k < 3; ++k) {
    GenerateRequest one = req;
    one.clear_n();
    one.clear_prompt_logprobs();
    one.mutable_sampling()->set_seed(100 + k);
    StreamResult alone = Generate(w.stub(), one);
    ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();
    EXPECT_EQ(ids[k], alone.ids) << "choice " << k;
  }
  EXPECT_NE(ids[0], ids[1]);

  // Cancelling the call ends every choice and frees their blocks.
  GenerateRequest endless = IdsRequest(SomeIds(30, 6), 0);
  endless.set_n(3);
  grpc::ClientContext cancel_ctx;
  auto r = w.stub()->Generate(&cancel_ctx, endless);
  ASSERT_TRUE(r->Read(&msg));
  cancel_ctx.TryCancel();
  while (r->Read(&msg)) {
  }
  EXPECT_EQ(r->Finish().error_code(), grpc::StatusCode::CANCELLED);
  const r1serve::v1::LoadReport load = LoadOnceIdle(w);
  EXPECT_EQ(load.kv_blocks_used(), 0u);
  EXPECT_EQ(load.running(), 0u);
  const std::string cancelled3 = "r1_worker_requests_total{finish_reason=\"cancelled\"} 3";
  EXPECT_NE(MetricsWith(w, cancelled3).find(cancelled3), std::string::npos);

  // Bad n: INVALID_ARGUMENT naming it.
  auto bad = [&](GenerateRequest b, const std::string& why) {
    StreamResult res = Generate(w.stub(), b);
    EXPECT_EQ(res.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << why;
    EXPECT_EQ(res.status.error_message().rfind("n: ", 0), 0u) << res.status.error_message();
    EXPECT_NE(res.status.error_message().find(why), std::string::npos) << res.status.error_message();
  };
  GenerateRequest many = IdsRequest({1, 2, 3}, 2);
  many.set_n(65);
  bad(many, "at most 64");
  GenerateRequest over_queue = IdsRequest({1, 2, 3}, 2);
  over_queue.set_n(5);
  bad(over_queue, "--max-waiting 4");
  GenerateRequest resumed = IdsRequest({1, 2, 3}, 2);
  resumed.set_n(2);
  resumed.mutable_resume()->add_output_token_ids(7);
  bad(resumed, "a resumed stream is one choice");
}

TEST_F(WorkerTest, CancelAndDeadlineFreeBlocks) {
  WorkerProcess w(*bare_model_, {"--max-model-len", "20000"});
  ASSERT_TRUE(w.ok());
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::unique_ptr<grpc::ClientReader<r1serve::v1::GenerateResponse>>> readers;
  for (int i = 0; i < 4; ++i) {
    ctxs.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(w.stub()->Generate(ctxs.back().get(), IdsRequest(SomeIds(40, i), 0)));
    r1serve::v1::GenerateResponse msg;
    ASSERT_TRUE(readers.back()->Read(&msg));
  }
  EXPECT_GT(w.Load().kv_blocks_used(), 0u);
  for (auto& c : ctxs) c->TryCancel();
  for (auto& r : readers) {
    r1serve::v1::GenerateResponse msg;
    while (r->Read(&msg)) {
    }
    EXPECT_EQ(r->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // A deadline ends a stream the same way.
  StreamResult late = Generate(w.stub(), IdsRequest(SomeIds(40, 7), 0), /*deadline_s=*/0.3);
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  const r1serve::v1::LoadReport load = LoadOnceIdle(w);
  EXPECT_EQ(load.kv_blocks_used(), 0u);
  EXPECT_EQ(load.running(), 0u);
  const std::string cancelled5 = "r1_worker_requests_total{finish_reason=\"cancelled\"} 5";
  EXPECT_NE(MetricsWith(w, cancelled5).find(cancelled5), std::string::npos);
}

TEST_F(WorkerTest, QueueFullIsResourceExhausted) {
  WorkerProcess w(*bare_model_, {"--max-running", "1", "--max-waiting", "1",
                                 "--max-model-len", "30000"});
  ASSERT_TRUE(w.ok());
  grpc::ClientContext c1, c2;
  // The queue counts requests not yet scheduled: start the second once the first runs.
  auto r1 = w.stub()->Generate(&c1, IdsRequest(SomeIds(10, 1), 0));
  r1serve::v1::GenerateResponse msg;
  ASSERT_TRUE(r1->Read(&msg));
  auto r2 = w.stub()->Generate(&c2, IdsRequest(SomeIds(10, 2), 0));
  r1serve::v1::LoadReport load;
  for (int i = 0; i < 500; ++i) {
    load = w.Load();
    if (load.running() == 1 && load.waiting() == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(load.waiting(), 1u) << load.ShortDebugString();
  StreamResult third = Generate(w.stub(), IdsRequest(SomeIds(10, 3), 5));
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(third.status.error_message().find("queue"), std::string::npos);
  EXPECT_EQ(third.messages, 0);
  c1.TryCancel();
  c2.TryCancel();
  while (r1->Read(&msg)) {
  }
  while (r2->Read(&msg)) {
  }
  r1->Finish();
  r2->Finish();
  EXPECT_NE(HttpGet(w.metrics_port(), "/metrics")
                .find("r1_worker_rejected_requests_total{reason=\"queue_full\"} 1"),
            std::string::npos);
}

TEST_F(WorkerTest, BadParametersAreInvalidArgumentNamingTheField) {
  const bool tok = HasTokenizerModel();
  WorkerProcess w(tok ? *model_ : *bare_model_, {"--max-model-len", "64"});
  ASSERT_TRUE(w.ok());
  WorkerProcess bare(*bare_model_, {"--max-model-len", "64"});
  ASSERT_TRUE(bare.ok());
  auto ok = [] { return IdsRequest({1, 2, 3}, 4); };
  struct Case {
    std::string field;
    GenerateRequest req;
    bool bare = false;
  };
  std::vector<Case> cases;
  // Cases on `w` that need a tokenizer are left out when the build has none.
  auto add = [&](std::string field, auto edit, bool on_bare = false, bool needs_tok = false) {
    if (needs_tok && !tok) return;
    GenerateRequest r = ok();
    edit(r);
    cases.push_back({std::move(field), std::move(r), on_bare});
  };
  add("prompt", [](GenerateRequest& r) { r.clear_prompt(); });
  add("prompt.token_ids", [](GenerateRequest& r) { r.mutable_token_ids()->clear_ids(); });
  add("prompt.token_ids[1]", [](GenerateRequest& r) { r.mutable_token_ids()->set_ids(1, -1); });
  add("prompt.token_ids[2]",
      [](GenerateRequest& r) { r.mutable_token_ids()->set_ids(2, 151936); });
  add("prompt", [](GenerateRequest& r) {
    for (int i = 0; i < 61; ++i) r.mutable_token_ids()->add_ids(5);
  });
  add("prompt.text", [](GenerateRequest& r) { r.set_text(""); }, false, true);
  add("prompt.text", [](GenerateRequest& r) { r.set_text("hello"); }, /*on_bare=*/true);
  add("prompt.chat", [](GenerateRequest& r) {
    auto* m = r.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content("hi");
  }, /*on_bare=*/true);
  add("prompt.chat.messages", [](GenerateRequest& r) { r.mutable_chat(); }, false, true);
  add("prompt.chat.messages[0].role", [](GenerateRequest& r) {
    auto* m = r.mutable_chat()->add_messages();
    m->set_role("wizard");
  }, false, true);
  add("sampling.temperature", [](GenerateRequest& r) { r.mutable_sampling()->set_temperature(-1); });
  add("sampling.temperature", [](GenerateRequest& r) { r.mutable_sampling()->set_temperature(101); });
  add("sampling.temperature",
      [](GenerateRequest& r) { r.mutable_sampling()->set_temperature(std::nanf("")); });
  add("sampling.top_p", [](GenerateRequest& r) { r.mutable_sampling()->set_top_p(1.5); });
  add("sampling.top_p", [](GenerateRequest& r) { r.mutable_sampling()->set_top_p(-0.1); });
  add("sampling.top_k", [](GenerateRequest& r) { r.mutable_sampling()->set_top_k(-1); });
  add("sampling.min_p", [](GenerateRequest& r) { r.mutable_sampling()->set_min_p(2); });
  add("sampling.repetition_penalty",
      [](GenerateRequest& r) { r.mutable_sampling()->set_repetition_penalty(-1); });
  add("sampling.repetition_penalty",
      [](GenerateRequest& r) { r.mutable_sampling()->set_repetition_penalty(1000); });
  add("sampling.presence_penalty",
      [](GenerateRequest& r) { r.mutable_sampling()->set_presence_penalty(2.5); });
  add("sampling.frequency_penalty",
      [](GenerateRequest& r) { r.mutable_sampling()->set_frequency_penalty(-3); });
  add("max_tokens", [](GenerateRequest& r) { r.set_max_tokens(65); });
  add("stop", [](GenerateRequest& r) {
    for (int i = 0; i < 17; ++i) r.add_stop("x");
  });
  add("stop[1]", [](GenerateRequest& r) {
    r.add_stop("a");
    r.add_stop("");
  }, false, true);
  add("stop[0]", [](GenerateRequest& r) { r.add_stop(std::string(257, 'a')); }, false, true);
  add("stop", [](GenerateRequest& r) { r.add_stop("a"); }, /*on_bare=*/true);
  add("stop_token_ids[0]", [](GenerateRequest& r) { r.add_stop_token_ids(-5); });
  add("top_logprobs", [](GenerateRequest& r) { r.set_top_logprobs(21); });
  add("request_id", [](GenerateRequest& r) { r.set_request_id(std::string(300, 'r')); });

  for (const Case& c : cases) {
    StreamResult r = Generate(c.bare ? bare.stub() : w.stub(), c.req);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.field << ": " << c.req.ShortDebugString();
    EXPECT_EQ(r.status.error_message().rfind(c.field + ":", 0), 0u)
        << "want field " << c.field << ", got: " << r.status.error_message();
    EXPECT_EQ(r.messages, 0);
  }
  // The edges are accepted.
  GenerateRequest edge = IdsRequest(SomeIds(63, 3), 0);  // one token of room
  edge.mutable_sampling()->set_temperature(100);
  edge.mutable_sampling()->set_top_p(1);
  edge.mutable_sampling()->set_min_p(1);
  edge.mutable_sampling()->set_presence_penalty(-2);
  edge.mutable_sampling()->set_frequency_penalty(2);
  edge.set_top_logprobs(20);
  StreamResult r = Generate(w.stub(), edge);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.ids.size(), 1u);
  EXPECT_EQ(r.last.finish_reason(), FINISH_REASON_LENGTH);
  ASSERT_EQ(r.last.logprobs_size(), 1);
  EXPECT_EQ(r.last.logprobs(0).top_logprobs_size(), 20);
}

TEST_F(WorkerTest, TextPromptsStopStringsAndStopTokens) {
  if (!HasTokenizerModel()) GTEST_SKIP() << "r1-mkmodel cannot write tokenizer files in this build";
  WorkerProcess w(*model_);
  ASSERT_TRUE(w.ok());
  GenerateRequest req;
  req.set_text("The quick brown fox");
  req.set_max_tokens(40);
  req.set_ignore_eos(true);
  req.mutable_sampling()->set_temperature(0.f);  // greedy: the checkpoint's default samples
  StreamResult full = Generate(w.stub(), req);
  ASSERT_TRUE(full.status.ok()) << full.status.error_message();
  ASSERT_EQ(full.ids.size(), 40u);
  EXPECT_GT(full.last.usage().prompt_tokens(), 0u);
  ASSERT_GE(full.text.size(), 8u);
  // The streamed text pieces add up to the tokenizer's decoding of the streamed ids.
  auto tok = tokenizer::Tokenizer::FromDir(*model_);
  ASSERT_TRUE(tok.ok());
  // (The random model also makes ids past the tokenizer's vocabulary: they have no text.)
  std::vector<int32_t> known;
  for (int32_t id : full.ids) {
    if ((*tok)->IsKnown(id)) known.push_back(id);
  }
  auto decoded = (*tok)->Decode(known, /*skip_special_tokens=*/true);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(full.text, *decoded);
  EXPECT_EQ(full.last.usage().prompt_tokens(), (*tok)->Encode("The quick brown fox")->size());

  // A stop string taken from the middle of that text: the output ends right before it.
  // Two whole UTF-8 characters from the middle of the text.
  auto is_cont = [&](size_t i) { return (static_cast<unsigned char>(full.text[i]) & 0xC0) == 0x80; };
  size_t begin = full.text.size() / 2, end = begin;
  while (begin > 0 && is_cont(begin)) --begin;
  for (int chars = 0; chars < 2 && end < full.text.size(); ++chars) {
    ++end;
    while (end < full.text.size() && is_cont(end)) ++end;
  }
  std::string stop = full.text.substr(begin, end - begin);
  size_t at = full.text.find(stop);
  GenerateRequest with_stop = req;
  with_stop.add_stop(stop);
  StreamResult cut = Generate(w.stub(), with_stop);
  ASSERT_TRUE(cut.status.ok());
  EXPECT_EQ(cut.text, full.text.substr(0, at));
  EXPECT_EQ(cut.last.finish_reason(), FINISH_REASON_STOP);
  EXPECT_EQ(cut.last.matched_stop(), stop);
  EXPECT_LT(cut.ids.size(), full.ids.size());
  EXPECT_EQ(cut.ids, std::vector<int32_t>(full.ids.begin(), full.ids.begin() + cut.ids.size()));

  // A stop token id: generation ends on it, with it counted but not shown as text.
  GenerateRequest with_id = req;
  with_id.add_stop_token_ids(full.ids[5]);
  StreamResult by_id = Generate(w.stub(), with_id);
  ASSERT_TRUE(by_id.status.ok());
  EXPECT_EQ(by_id.last.finish_reason(), FINISH_REASON_STOP);
  size_t first = std::find(full.ids.begin(), full.ids.end(), full.ids[5]) - full.ids.begin();
  EXPECT_EQ(by_id.ids.size(), first + 1);
  EXPECT_EQ(by_id.last.usage().completion_tokens(), first + 1);

  // include_stop_str_in_output: the same ends, with the stop string or the stop token's
  // text kept at the end of the text (vLLM's flag).
  with_stop.set_include_stop_str_in_output(true);
  StreamResult kept = Generate(w.stub(), with_stop);
  ASSERT_TRUE(kept.status.ok());
  EXPECT_EQ(kept.text, full.text.substr(0, at) + stop);
  EXPECT_EQ(kept.ids, cut.ids);
  with_id.set_include_stop_str_in_output(true);
  StreamResult kept_id = Generate(w.stub(), with_id);
  ASSERT_TRUE(kept_id.status.ok());
  EXPECT_EQ(kept_id.ids, by_id.ids);
  EXPECT_EQ(kept_id.text, by_id.text + by_id.last.matched_stop());

  // A chat prompt renders the template and streams text.
  GenerateRequest chat;
  auto* m = chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("Hello");
  chat.set_max_tokens(5);
  chat.set_ignore_eos(true);
  StreamResult c = Generate(w.stub(), chat);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  EXPECT_GT(c.last.usage().prompt_tokens(), 3u);
}

TEST_F(WorkerTest, SigtermDrainsInFlightStreams) {
  WorkerProcess w(*bare_model_, {"--drain-timeout", "60"});
  ASSERT_TRUE(w.ok());
  std::vector<StreamResult> results(3);
  std::vector<std::thread> threads;
  std::atomic<int> started{0};
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      grpc::ClientContext ctx;
      auto reader = w.stub()->Generate(&ctx, IdsRequest(SomeIds(20, i), 2000));
      r1serve::v1::GenerateResponse msg;
      bool first = true;
      while (reader->Read(&msg)) {
        if (first) started++;
        first = false;
        results[i].ids.insert(results[i].ids.end(), msg.token_ids().begin(),
                              msg.token_ids().end());
        results[i].last = msg;
      }
      results[i].status = reader->Finish();
    });
  }
  while (started < 3) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  w.Signal(SIGTERM);
  // Not serving, and new work is refused, while the streams finish.
  bool saw_not_serving = false, saw_unavailable = false;
  for (int i = 0; i < 200 && !(saw_not_serving && saw_unavailable); ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc::health::v1::HealthCheckResponse hres;
    if (w.health()->Check(&ctx, {}, &hres).ok() &&
        hres.status() == grpc::health::v1::HealthCheckResponse::NOT_SERVING) {
      saw_not_serving = true;
    }
    StreamResult r = Generate(w.stub(), IdsRequest({1, 2}, 2), 2);
    if (r.status.error_code() == grpc::StatusCode::UNAVAILABLE) saw_unavailable = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(saw_not_serving);
  EXPECT_TRUE(saw_unavailable);
  for (const StreamResult& r : results) {
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids.size(), 2000u);
    EXPECT_EQ(r.last.finish_reason(), FINISH_REASON_LENGTH);
  }
  EXPECT_EQ(w.Wait(30), 0);
}

TEST_F(WorkerTest, DrainTimeoutEndsLongStreamsAndExitsZero) {
  WorkerProcess w(*bare_model_, {"--drain-timeout", "0.5", "--max-model-len", "30000"});
  ASSERT_TRUE(w.ok());
  grpc::ClientContext ctx;
  auto reader = w.stub()->Generate(&ctx, IdsRequest(SomeIds(8, 1), 0));
  r1serve::v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  auto start = std::chrono::steady_clock::now();
  w.Signal(SIGTERM);
  uint32_t tokens = msg.token_ids_size();
  while (reader->Read(&msg)) tokens += msg.token_ids_size();
  grpc::Status status = reader->Finish();
  // Either the call was cancelled, or its last message says so.
  EXPECT_TRUE(!status.ok() || msg.finish_reason() == r1serve::v1::FINISH_REASON_CANCELLED)
      << status.error_message();
  EXPECT_LT(tokens, 29990u);
  EXPECT_EQ(w.Wait(30), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST_F(WorkerTest, LaggingReaderLosesNoToken) {
  // The client stops reading while the worker makes 400 tokens of about 500 bytes each (top
  // logprobs), more than HTTP/2's flow-control window. Whether writes back up far enough for
  // the worker to merge queued tokens into one message depends on gRPC's buffering, so the
  // test asserts only that every token and logprob arrives, in at most one message each.
  WorkerProcess w(*bare_model_);
  ASSERT_TRUE(w.ok());
  grpc::ClientContext ctx;
  GenerateRequest req = IdsRequest(SomeIds(8, 1), 400);
  req.set_top_logprobs(20);
  auto reader = w.stub()->Generate(&ctx, req);
  r1serve::v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  for (int i = 0; i < 6000; ++i) {
    if (HttpGet(w.metrics_port(), "/metrics").find("r1_worker_generation_tokens_total 400") !=
        std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  int messages = 1;
  uint32_t tokens = msg.token_ids_size(), logprobs = msg.logprobs_size();
  while (reader->Read(&msg)) {
    messages++;
    tokens += msg.token_ids_size();
    logprobs += msg.logprobs_size();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(tokens, 400u);
  EXPECT_EQ(logprobs, 400u);
  EXPECT_EQ(msg.usage().completion_tokens(), 400u);
  EXPECT_LE(messages, 400);
}

TEST_F(WorkerTest, ManyStreamsCancelledAtRandomPoints) {
  // Cancels racing with writes, deadlines, finished streams: the worker keeps serving and every
  // block comes back.
  WorkerProcess w(*bare_model_, {"--max-running", "16"});
  ASSERT_TRUE(w.ok());
  std::vector<std::thread> threads;
  std::atomic<int> completed{0};
  for (int i = 0; i < 48; ++i) {
    threads.emplace_back([&, i] {
      grpc::ClientContext ctx;
      if (i % 4 == 3) {
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(5 * i));
      }
      auto reader = w.stub()->Generate(&ctx, IdsRequest(SomeIds(1 + i * 3, i), 10 + i));
      r1serve::v1::GenerateResponse msg;
      int reads = 0;
      while (reader->Read(&msg)) {
        if (i % 4 == 1 && ++reads == i % 7) ctx.TryCancel();
      }
      if (reader->Finish().ok()) completed++;
      if (i % 4 == 2) ctx.TryCancel();  // after the end: a no-op
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GE(completed.load(), 24);  // the untouched half at least
  r1serve::v1::LoadReport load;
  for (int i = 0; i < 500; ++i) {
    load = w.Load();
    if (load.kv_blocks_used() == 0 && load.running() == 0 && load.waiting() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(load.kv_blocks_used(), 0u);
  EXPECT_EQ(load.running(), 0u);
  EXPECT_EQ(load.waiting(), 0u);
  StreamResult after = Generate(w.stub(), IdsRequest({1, 2, 3}, 4));
  ASSERT_TRUE(after.status.ok());
  EXPECT_EQ(after.ids.size(), 4u);
}

}  // namespace
}  // namespace r1::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc < 4) {
    fprintf(stderr, "usage: worker_integration_test R1_WORKER R1_MKMODEL SOURCE_DIR\n");
    return 2;
  }
  r1::testing::TestPaths() = {argv[1], argv[2], argv[3]};
  return RUN_ALL_TESTS();
}
