#include "worker/service/stream_message.h"

#include <gtest/gtest.h>

namespace r1::service {
namespace {

class FakeCodec : public engine::TextCodec {
 public:
  std::unique_ptr<engine::TextStream> NewStream() override { return nullptr; }
  std::string TokenText(int32_t id) override { return "<" + std::to_string(id) + ">"; }
};

engine::Delta Tokens(std::vector<int32_t> ids, std::string text) {
  engine::Delta d;
  for (int32_t id : ids) {
    engine::TokenInfo t;
    t.id = id;
    t.logprob = -0.5f * id;
    t.top = {{id, t.logprob}, {id + 1, -9.f}};
    d.tokens.push_back(t);
  }
  d.text = std::move(text);
  return d;
}

TEST(StreamMessage, MergesQueuedDeltasInOrderAndKeepsTheFinalFields) {
  FakeCodec codec;
  r1serve::v1::GenerateResponse msg;
  AppendDelta(Tokens({1}, "a"), &codec, /*logprobs=*/true, &msg);
  AppendDelta(Tokens({2, 3}, "bc"), &codec, true, &msg);
  engine::Delta last = Tokens({4}, "");
  last.finish = engine::FinishReason::kStop;
  last.matched_stop = "</s>";
  last.prompt_tokens = 7;
  last.completion_tokens = 4;
  last.reasoning_tokens = 3;
  last.queued_ms = 1;
  last.ttft_ms = 2;
  last.total_ms = 3;
  AppendDelta(std::move(last), &codec, true, &msg);

  EXPECT_EQ(std::vector<int32_t>(msg.token_ids().begin(), msg.token_ids().end()),
            (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(msg.text(), "abc");
  ASSERT_EQ(msg.logprobs_size(), 4);
  EXPECT_EQ(msg.logprobs(2).token_id(), 3);
  EXPECT_EQ(msg.logprobs(2).token(), "<3>");
  EXPECT_FLOAT_EQ(msg.logprobs(2).logprob(), -1.5f);
  ASSERT_EQ(msg.logprobs(2).top_logprobs_size(), 2);
  EXPECT_EQ(msg.logprobs(2).top_logprobs(1).token_id(), 4);
  EXPECT_EQ(msg.finish_reason(), r1serve::v1::FINISH_REASON_STOP);
  EXPECT_EQ(msg.matched_stop(), "</s>");
  EXPECT_EQ(msg.usage().prompt_tokens(), 7u);
  EXPECT_EQ(msg.usage().completion_tokens(), 4u);
  EXPECT_EQ(msg.usage().reasoning_tokens(), 3u);
  EXPECT_DOUBLE_EQ(msg.timings().total_ms(), 3);
}

TEST(StreamMessage, NoLogprobsUnlessAsked) {
  r1serve::v1::GenerateResponse msg;
  AppendDelta(Tokens({5}, "x"), nullptr, /*logprobs=*/false, &msg);
  EXPECT_EQ(msg.token_ids_size(), 1);
  EXPECT_EQ(msg.logprobs_size(), 0);
  EXPECT_EQ(msg.finish_reason(), r1serve::v1::FINISH_REASON_UNSPECIFIED);
  EXPECT_FALSE(msg.has_usage());
}

}  // namespace
}  // namespace r1::service
