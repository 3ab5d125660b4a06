#include "worker/tokenizer/demo_files.h"

#include <cstdio>
#include <string>

#include <boost/json.hpp>

#include "absl/strings/str_cat.h"
#include "worker/tokenizer/chat_template.h"

namespace r1::tokenizer {
namespace json = boost::json;

namespace {

struct DemoToken {
  int id;
  const char* content;
  bool special;
};

// deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B tokenizer.json "added_tokens", in order.
constexpr DemoToken kAddedTokens[] = {
    {151643, "<｜end▁of▁sentence｜>", true},
    {151644, "<｜User｜>", false},
    {151645, "<｜Assistant｜>", false},
    {151646, "<｜begin▁of▁sentence｜>", true},
    {151647, "<|EOT|>", false},
    {151648, "<think>", false},
    {151649, "</think>", false},
    {151650, "<|quad_start|>", true},
    {151651, "<|quad_end|>", true},
    {151652, "<|vision_start|>", true},
    {151653, "<|vision_end|>", true},
    {151654, "<|vision_pad|>", true},
    {151655, "<|image_pad|>", true},
    {151656, "<|video_pad|>", true},
    {151657, "<tool_call>", false},
    {151658, "</tool_call>", false},
    {151659, "<|fim_prefix|>", false},
    {151660, "<|fim_middle|>", false},
    {151661, "<|fim_suffix|>", false},
    {151662, "<|fim_pad|>", false},
    {151663, "<|repo_name|>", false},
    {151664, "<|file_sep|>", false},
};

constexpr const char* kBos = "<｜begin▁of▁sentence｜>";
constexpr const char* kEos = "<｜end▁of▁sentence｜>";

absl::Status WriteFile(const std::string& path, const std::string& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  size_t n = std::fwrite(data.data(), 1, data.size(), f);
  int rc = std::fclose(f);
  if (n != data.size() || rc != 0) return absl::DataLossError(absl::StrCat("short write to ", path));
  return absl::OkStatus();
}

json::object AddedTokenJson(const DemoToken& t, bool with_id) {
  json::object o;
  if (with_id) o["id"] = t.id;
  o["content"] = t.content;
  o["single_word"] = false;
  o["lstrip"] = false;
  o["rstrip"] = false;
  o["normalized"] = false;
  o["special"] = t.special;
  return o;
}

json::object AddedTokenConfig(const char* content) {
  json::object o;
  o["__type"] = "AddedToken";
  o["content"] = content;
  o["lstrip"] = false;
  o["normalized"] = true;
  o["rstrip"] = false;
  o["single_word"] = false;
  return o;
}

}  // namespace

absl::Status WriteDemoTokenizerFiles(const std::string& qwen_tokenizer_json,
                                     const std::string& out_dir) {
  std::string data;
  if (FILE* f = std::fopen(qwen_tokenizer_json.c_str(), "rb")) {
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) data.append(buf, n);
    std::fclose(f);
  } else {
    return absl::NotFoundError(absl::StrCat("cannot open ", qwen_tokenizer_json));
  }
  json::monotonic_resource mr(data.size() * 2);
  boost::system::error_code ec;
  json::value root = json::parse(data, ec, &mr);
  if (ec || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(qwen_tokenizer_json, ": not a JSON object"));
  }
  json::object& top = root.as_object();
  json::value* model = top.if_contains("model");
  if (!model || !model->is_object() || !model->as_object().contains("vocab") ||
      !model->as_object().contains("merges")) {
    return absl::InvalidArgumentError(
        absl::StrCat(qwen_tokenizer_json, ": no BPE model with vocab and merges"));
  }
  // The DeepSeek ids start right after the Qwen vocabulary; check they are free.
  for (const auto& kv : model->as_object().at("vocab").as_object()) {
    if (kv.value().is_int64() && kv.value().as_int64() >= kAddedTokens[0].id) {
      return absl::InvalidArgumentError(absl::StrCat(
          qwen_tokenizer_json, ": vocab id ", kv.value().as_int64(),
          " collides with DeepSeek-R1-Distill's added tokens (expected the Qwen2 vocabulary)"));
    }
  }

  // tokenizer.json: the Qwen file with DeepSeek's added tokens and BOS post-processor.
  json::array added(root.storage());
  for (const DemoToken& t : kAddedTokens) added.push_back(AddedTokenJson(t, true));
  top["added_tokens"] = std::move(added);
  top["post_processor"] = json::parse(R"({
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<｜begin▁of▁sentence｜>", "type_id": 0}},
               {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [{"SpecialToken": {"id": "<｜begin▁of▁sentence｜>", "type_id": 0}},
             {"Sequence": {"id": "A", "type_id": 0}},
             {"SpecialToken": {"id": "<｜begin▁of▁sentence｜>", "type_id": 1}},
             {"Sequence": {"id": "B", "type_id": 1}}],
    "special_tokens": {"<｜begin▁of▁sentence｜>": {"id": "<｜begin▁of▁sentence｜>",
        "ids": [151646], "tokens": ["<｜begin▁of▁sentence｜>"]}}})");
  absl::Status s = WriteFile(out_dir + "/tokenizer.json", json::serialize(root));
  if (!s.ok()) return s;

  // tokenizer_config.json, as the model ships it.
  json::object cfg;
  cfg["add_bos_token"] = true;
  cfg["add_eos_token"] = false;
  cfg["bos_token"] = AddedTokenConfig(kBos);
  cfg["clean_up_tokenization_spaces"] = false;
  cfg["eos_token"] = AddedTokenConfig(kEos);
  cfg["legacy"] = true;
  cfg["model_max_length"] = 16384;
  cfg["pad_token"] = AddedTokenConfig(kEos);
  cfg["sp_model_kwargs"] = json::object();
  cfg["unk_token"] = nullptr;
  cfg["tokenizer_class"] = "LlamaTokenizerFast";
  cfg["chat_template"] = kDeepSeekR1TemplateText;
  return WriteFile(out_dir + "/tokenizer_config.json", json::serialize(cfg) + "\n");
}

}  // namespace r1::tokenizer
