// LoadPromptCodec over r1_tokenizer: tokenizer.json, the chat template, and the incremental
// detokenizer the engine uses.
#include <sys/stat.h>

#include "worker/service/prompt_codec.h"
#include "worker/tokenizer/chat_template.h"
#include "worker/tokenizer/detokenizer.h"
#include "worker/tokenizer/tokenizer.h"

namespace r1::service {
namespace {

class DetokStream final : public engine::TextStream {
 public:
  DetokStream(const tokenizer::Tokenizer& tok, bool skip_special) : detok_(tok, skip_special) {}
  std::string Add(int32_t id) override { return detok_.Add(id); }
  std::string Finish() override { return detok_.Finish(); }

 private:
  tokenizer::IncrementalDetokenizer detok_;
};

class Codec final : public PromptCodec, public engine::TextCodec,
                    public std::enable_shared_from_this<Codec> {
 public:
  Codec(std::unique_ptr<tokenizer::Tokenizer> tok, absl::StatusOr<tokenizer::ChatTemplate> tmpl)
      : tok_(std::move(tok)), template_(std::move(tmpl)) {}

  absl::StatusOr<std::vector<int32_t>> EncodeText(const std::string& text) override {
    return tok_->Encode(text);
  }
  absl::StatusOr<std::vector<int32_t>> EncodeChat(const std::vector<ChatTurn>& chat,
                                                  const std::string& tools_json) override {
    if (!template_.ok()) return template_.status();
    std::vector<tokenizer::ChatMessage> msgs;
    for (const ChatTurn& t : chat) {
      tokenizer::ChatMessage m{t.role, t.content};
      m.has_content = t.has_content;
      for (const ChatToolCall& c : t.tool_calls) m.tool_calls.push_back({"function", c.name, c.arguments});
      msgs.push_back(std::move(m));
    }
    R1_ASSIGN_OR_RETURN(std::string text, tokenizer::RenderChat(*template_, msgs, true, tools_json));
    return tok_->Encode(text);
  }
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) override {
    return tok_->Decode(ids);
  }
  std::shared_ptr<engine::TextCodec> text_codec() override { return shared_from_this(); }
  std::string chat_template_name() const override {
    return template_.ok() ? tokenizer::ChatTemplateName(*template_) : "";
  }
  bool supports_tools() const override {
    return template_.ok() && tokenizer::SupportsTools(*template_);
  }
  const tokenizer::Tokenizer* tokenizer() const override { return tok_.get(); }

  std::unique_ptr<engine::TextStream> NewStream() override { return NewStreamWith(true); }
  std::unique_ptr<engine::TextStream> NewStreamWith(bool skip_special_tokens) override {
    return std::make_unique<DetokStream>(*tok_, skip_special_tokens);
  }
  std::string TokenText(int32_t id) override {
    auto s = tok_->Decode({id});
    return s.ok() ? *s : std::string();
  }

 private:
  std::unique_ptr<tokenizer::Tokenizer> tok_;
  absl::StatusOr<tokenizer::ChatTemplate> template_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<PromptCodec>> LoadPromptCodec(const std::string& dir,
                                                              const std::string& chat_template) {
  struct stat st;
  if (stat((dir + "/tokenizer.json").c_str(), &st) != 0) return std::shared_ptr<PromptCodec>();
  R1_ASSIGN_OR_RETURN(auto tok, tokenizer::Tokenizer::FromDir(dir));
  absl::StatusOr<tokenizer::ChatTemplate> tmpl =
      tokenizer::ResolveChatTemplate(chat_template, dir);
  // An explicit --chat-template that is wrong is a start-up error; with "auto", a checkpoint
  // whose template is not recognised still serves text and token-id prompts.
  if (!tmpl.ok() && chat_template != "auto") return tmpl.status();
  return std::shared_ptr<PromptCodec>(std::make_shared<Codec>(std::move(tok), std::move(tmpl)));
}

}  // namespace r1::service
