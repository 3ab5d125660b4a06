#include "worker/model/config.h"

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/model/json_util.h"

namespace r1::model {
namespace json = boost::json;

namespace {

// Reads a required positive integer field.
absl::Status RequireInt(const json::object& o, const char* key, const std::string& source,
                        int64_t* out) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null())
    return absl::InvalidArgumentError(absl::StrCat(source, ": missing field \"", key, "\""));
  auto v = JsonInt(it->value());
  if (!v || *v <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field \"", key, "\" must be a positive integer, found ",
                     json::serialize(it->value())));
  *out = *v;
  return absl::OkStatus();
}

// Reads an optional number; keeps *out when absent or null.
absl::Status OptionalDouble(const json::object& o, const char* key, const std::string& source,
                            double* out) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return absl::OkStatus();
  auto v = JsonDouble(it->value());
  if (!v || !(*v > 0))
    return absl::InvalidArgumentError(absl::StrCat(source, ": field \"", key,
                                                   "\" must be a positive number, found ",
                                                   json::serialize(it->value())));
  *out = *v;
  return absl::OkStatus();
}

// eos_token_id may be an integer or a list of integers.
absl::Status ReadEos(const json::object& o, const std::string& source, std::vector<int32_t>* out) {
  auto it = o.find("eos_token_id");
  if (it == o.end() || it->value().is_null()) return absl::OkStatus();
  std::vector<int32_t> ids;
  auto add = [&](const json::value& v) -> absl::Status {
    auto id = JsonInt(v);
    if (!id || *id < 0)
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": eos_token_id must be a non-negative integer or a list of them"));
    ids.push_back(static_cast<int32_t>(*id));
    return absl::OkStatus();
  };
  if (it->value().is_array()) {
    for (const auto& v : it->value().get_array()) R1_RETURN_IF_ERROR(add(v));
  } else {
    R1_RETURN_IF_ERROR(add(it->value()));
  }
  *out = std::move(ids);
  return absl::OkStatus();
}

// A required positive number of a RoPE object.
absl::Status RequireDouble(const json::object& o, const char* key, const std::string& where,
                           double* out) {
  if (!o.contains(key) || o.at(key).is_null())
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing field \"", key, "\""));
  return OptionalDouble(o, key, where, out);
}

// Which of the two architectures, from model_type and architectures; both must agree.
absl::StatusOr<std::string> ReadModelType(const json::object& o, const std::string& source) {
  std::string model_type, arch;
  if (auto it = o.find("model_type"); it != o.end() && it->value().is_string())
    model_type = std::string(it->value().get_string());
  if (auto it = o.find("architectures"); it != o.end() && it->value().is_array()) {
    std::vector<std::string> names;
    for (const auto& a : it->value().get_array())
      if (a.is_string()) names.emplace_back(a.get_string());
    arch = absl::StrJoin(names, ",");
  }
  for (const auto& [type, cls] :
       {std::pair{"qwen2", "Qwen2ForCausalLM"}, std::pair{"llama", "LlamaForCausalLM"}}) {
    bool type_ok = model_type == type || (model_type.empty() && arch == cls);
    if (type_ok && (arch.empty() || arch == cls)) return std::string(type);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      source, ": unsupported model: model_type \"", model_type, "\", architectures [", arch,
      "]; r1serve serves Qwen2ForCausalLM (model_type qwen2) and LlamaForCausalLM (model_type "
      "llama) checkpoints"));
}

// rope_parameters (transformers 5) or rope_scaling (older files): the type, its fields, and
// rope_theta when it is kept there.
absl::Status ReadRope(const json::object& o, const std::string& source, ModelConfig* c) {
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    auto it = o.find(key);
    if (it == o.end() || it->value().is_null()) continue;
    if (!it->value().is_object())
      return absl::InvalidArgumentError(absl::StrCat(source, ": \"", key, "\" must be an object"));
    const json::object& rp = it->value().get_object();
    const std::string where = absl::StrCat(source, ": \"", key, "\"");
    RopeScaling r;
    for (const char* tkey : {"rope_type", "type"})
      if (auto t = rp.find(tkey); t != rp.end() && t->value().is_string())
        r.type = std::string(t->value().get_string());
    if (r.type == "llama3") {
      R1_RETURN_IF_ERROR(RequireDouble(rp, "factor", where, &r.factor));
      R1_RETURN_IF_ERROR(RequireDouble(rp, "low_freq_factor", where, &r.low_freq_factor));
      R1_RETURN_IF_ERROR(RequireDouble(rp, "high_freq_factor", where, &r.high_freq_factor));
      R1_RETURN_IF_ERROR(RequireInt(rp, "original_max_position_embeddings", where,
                                    &r.original_max_position_embeddings));
      if (!(r.high_freq_factor > r.low_freq_factor))
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": high_freq_factor ", r.high_freq_factor,
            " must be greater than low_freq_factor ", r.low_freq_factor));
    } else if (r.type != "default") {
      return absl::InvalidArgumentError(absl::StrCat(source, ": unsupported RoPE type \"", r.type,
                                                     "\" in \"", key,
                                                     "\" (supported: default, llama3)"));
    }
    c->rope_scaling = r;
    R1_RETURN_IF_ERROR(OptionalDouble(rp, "rope_theta", source, &c->rope_theta));
  }
  if (auto it = o.find("partial_rotary_factor"); it != o.end() && !it->value().is_null()) {
    auto v = JsonDouble(it->value());
    if (!v || *v != 1.0)
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": partial_rotary_factor ", v ? absl::StrCat(*v) : json::serialize(it->value()),
          " is not supported (only 1)"));
  }
  return absl::OkStatus();
}

// The fields that only one architecture has, or whose values only one supports.
absl::Status ReadArchitectureFields(const json::object& o, const std::string& source,
                                    ModelConfig* c) {
  auto flag = [&](const char* key) {
    auto it = o.find(key);
    return it != o.end() && it->value().is_bool() && it->value().get_bool();
  };
  if (c->model_type == "qwen2") {
    c->qkv_bias = true;  // Qwen2Attention: q, k and v always have one
    if (flag("use_sliding_window"))
      return absl::InvalidArgumentError(source + ": use_sliding_window=true is not supported");
  } else {
    c->qkv_bias = false;
    for (const char* key : {"attention_bias", "mlp_bias"})
      if (flag(key))
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": ", key, "=true is not supported (Llama checkpoints without biases only)"));
  }
  if (auto it = o.find("hidden_act"); it != o.end() && it->value().is_string() &&
                                      it->value().get_string() != "silu")
    return absl::InvalidArgumentError(absl::StrCat(source, ": hidden_act \"",
                                                   std::string(it->value().get_string()),
                                                   "\" is not supported (only silu)"));
  return absl::OkStatus();
}

// A short account of a quantization scheme for error messages: "int 8-bit channel symmetric
// dynamic token", from a compressed-tensors weights or input_activations object.
std::string SchemeText(const json::value* v) {
  if (!v || !v->is_object()) return "none";
  const json::object& o = v->get_object();
  std::vector<std::string> parts;
  for (const char* key : {"type", "num_bits", "strategy", "symmetric", "dynamic", "group_size"}) {
    auto it = o.find(key);
    if (it == o.end() || it->value().is_null()) continue;
    if (it->value().is_bool()) {
      if (it->value().get_bool()) parts.push_back(key);
    } else if (it->value().is_string()) {
      parts.push_back(std::string(it->value().get_string()));
    } else {
      parts.push_back(absl::StrCat(key, " ", json::serialize(it->value())));
    }
  }
  return absl::StrJoin(parts, " ");
}

bool FieldIs(const json::value* v, const char* key, const json::value& want) {
  if (!v || !v->is_object()) return false;
  const json::value* f = v->get_object().if_contains(key);
  if (!f) return false;
  if (want.is_number() && f->is_number()) return JsonInt(*f) == JsonInt(want);
  return *f == want;
}

// An AutoAWQ quantization_config (AutoAWQ writes "w_bit" / "q_group_size" in its own
// quant_config.json and "bits" / "group_size" in config.json; both are read). Only the GEMM
// packing, 4 bits with zero points, is taken.
absl::Status ReadAwq(const json::object& q, const std::string& where, const std::string& supported,
                     ModelConfig* c) {
  auto field = [&](const char* a, const char* b) -> const json::value* {
    if (const json::value* v = q.if_contains(a)) return v;
    return q.if_contains(b);
  };
  const json::value* bits = field("bits", "w_bit");
  const json::value* group = field("group_size", "q_group_size");
  const json::value* version = q.if_contains("version");
  const json::value* zero_point = q.if_contains("zero_point");
  const json::value* skip = q.if_contains("modules_to_not_convert");
  auto text = [](const json::value* v) { return v ? json::serialize(*v) : std::string("absent"); };
  const std::string found = absl::StrCat("quant_method \"awq\" (bits ", text(bits), ", group_size ",
                                         text(group), ", version ", text(version), ", zero_point ",
                                         text(zero_point), ", modules_to_not_convert ", text(skip), ")");
  const std::optional<int64_t> g = group ? JsonInt(*group) : std::nullopt;
  const bool ok = bits && JsonInt(*bits) == 4 && g && (*g == 32 || *g == 64 || *g == 128) &&
                  version && version->is_string() && absl::AsciiStrToLower(std::string(version->get_string())) == "gemm" &&
                  (!zero_point || (zero_point->is_bool() && zero_point->get_bool())) &&
                  (!skip || skip->is_null() || (skip->is_array() && skip->get_array().empty()));
  if (!ok) return absl::InvalidArgumentError(absl::StrCat(where, ": ", found, " is not supported: ", supported));
  c->quantization.kind = "awq";
  c->quantization.group_size = *g;
  return absl::OkStatus();
}

// quantization_config: absent, compressed-tensors W8A8 int8 or FP8 dynamic, or AutoAWQ GEMM;
// anything else is refused naming what it is.
absl::Status ReadQuantization(const json::object& o, const std::string& source, ModelConfig* c) {
  const json::value* qc = o.if_contains("quantization_config");
  if (!qc || qc->is_null()) return absl::OkStatus();
  const std::string where = source + ": quantization_config";
  const std::string supported =
      "r1serve loads compressed-tensors int8 W8A8 checkpoints (format \"int-quantized\": int8 "
      "weights with per-channel scales, dynamic per-token int8 activations, lm_head not "
      "quantized) and AutoAWQ GEMM checkpoints (quant_method \"awq\", version \"gemm\", 4 bits "
      "with zero points, group_size 32, 64 or 128, no modules_to_not_convert) on the CPU, and "
      "compressed-tensors FP8 dynamic checkpoints (format \"float-quantized\": e4m3 weights with "
      "per-channel scales, dynamic per-token activations, lm_head not quantized) on CUDA GPUs; "
      "other FP8 and int4 formats are not built yet";
  if (!qc->is_object()) return absl::InvalidArgumentError(where + ": expected a JSON object");
  const json::object& q = qc->get_object();
  std::string method = q.contains("quant_method") && q.at("quant_method").is_string()
                           ? std::string(q.at("quant_method").get_string())
                           : std::string("(none)");
  if (method == "awq") return ReadAwq(q, where, supported, c);
  if (method != "compressed-tensors") {
    std::vector<std::string> found;
    for (const char* key : {"bits", "w_bit", "group_size", "q_group_size", "version", "fmt",
                            "activation_scheme", "zero_point"})
      if (auto it = q.find(key); it != q.end()) found.push_back(absl::StrCat(key, " ", json::serialize(it->value())));
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": quant_method \"", method, "\"", found.empty() ? "" : " (" + absl::StrJoin(found, ", ") + ")",
        " is not supported: ", supported));
  }
  std::string format = q.contains("format") && q.at("format").is_string()
                           ? std::string(q.at("format").get_string()) : std::string("(none)");
  const json::value* groups = q.if_contains("config_groups");
  const json::value* weights = nullptr;
  const json::value* acts = nullptr;
  size_t num_groups = 0;
  if (groups && groups->is_object()) {
    num_groups = groups->get_object().size();
    for (const auto& [name, g] : groups->get_object()) {
      if (!g.is_object()) continue;
      weights = g.get_object().if_contains("weights");
      acts = g.get_object().if_contains("input_activations");
    }
  }
  const std::string what = absl::StrCat("compressed-tensors format \"", format, "\" with ",
                                        num_groups, " config group(s), weights [",
                                        SchemeText(weights), "], input activations [",
                                        SchemeText(acts), "]");
  // One config group: weights of `type`, 8 bits, per channel, symmetric, static; activations
  // of `type`, 8 bits, per token, symmetric, dynamic. "int": W8A8 int8; "float": FP8 dynamic
  // (as RedHatAI publishes the R1 distills).
  auto per_channel_and_token = [&](const char* type) {
    return num_groups == 1 && FieldIs(weights, "type", type) && FieldIs(weights, "num_bits", 8) &&
           FieldIs(weights, "strategy", "channel") && FieldIs(weights, "symmetric", true) &&
           !FieldIs(weights, "dynamic", true) && FieldIs(acts, "type", type) &&
           FieldIs(acts, "num_bits", 8) && FieldIs(acts, "strategy", "token") &&
           FieldIs(acts, "symmetric", true) && FieldIs(acts, "dynamic", true);
  };
  const bool w8a8 = format == "int-quantized" && per_channel_and_token("int");
  const bool fp8 = format == "float-quantized" && per_channel_and_token("float");
  if (!w8a8 && !fp8)
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", what, " is not supported: ", supported));
  bool lm_head_ignored = false;
  if (const json::value* ig = q.if_contains("ignore"); ig && ig->is_array())
    for (const json::value& v : ig->get_array())
      if (v.is_string() && (v.get_string() == "lm_head" || v.get_string() == "re:.*lm_head"))
        lm_head_ignored = true;
  if (!lm_head_ignored)
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": ", what, " quantizes lm_head (it is not in \"ignore\"): ", supported));
  c->quantization.kind = fp8 ? "fp8" : "int8";
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view text, const std::string& source) {
  R1_ASSIGN_OR_RETURN(json::value root, ParseJson(text, source));
  if (!root.is_object()) return absl::InvalidArgumentError(source + ": expected a JSON object");
  const json::object& o = root.get_object();

  ModelConfig c;
  R1_ASSIGN_OR_RETURN(c.model_type, ReadModelType(o, source));
  const bool llama = c.model_type == "llama";
  R1_RETURN_IF_ERROR(RequireInt(o, "vocab_size", source, &c.vocab_size));
  R1_RETURN_IF_ERROR(RequireInt(o, "hidden_size", source, &c.hidden_size));
  R1_RETURN_IF_ERROR(RequireInt(o, "intermediate_size", source, &c.intermediate_size));
  R1_RETURN_IF_ERROR(RequireInt(o, "num_hidden_layers", source, &c.num_hidden_layers));
  R1_RETURN_IF_ERROR(RequireInt(o, "num_attention_heads", source, &c.num_attention_heads));
  auto has = [&](const char* key) { return o.contains(key) && !o.at(key).is_null(); };
  // As in transformers' configs: absent means one KV head per attention head.
  c.num_key_value_heads = c.num_attention_heads;
  if (has("num_key_value_heads"))
    R1_RETURN_IF_ERROR(RequireInt(o, "num_key_value_heads", source, &c.num_key_value_heads));
  if (has("head_dim")) R1_RETURN_IF_ERROR(RequireInt(o, "head_dim", source, &c.explicit_head_dim));
  // The defaults of transformers' Qwen2Config and LlamaConfig.
  c.max_position_embeddings = llama ? 2048 : 32768;
  if (has("max_position_embeddings"))
    R1_RETURN_IF_ERROR(
        RequireInt(o, "max_position_embeddings", source, &c.max_position_embeddings));
  R1_RETURN_IF_ERROR(OptionalDouble(o, "rms_norm_eps", source, &c.rms_norm_eps));
  R1_RETURN_IF_ERROR(OptionalDouble(o, "rope_theta", source, &c.rope_theta));
  R1_RETURN_IF_ERROR(ReadRope(o, source, &c));
  R1_RETURN_IF_ERROR(ReadArchitectureFields(o, source, &c));
  if (auto it = o.find("tie_word_embeddings"); it != o.end() && it->value().is_bool())
    c.tie_word_embeddings = it->value().get_bool();
  for (const char* key : {"torch_dtype", "dtype"})
    if (auto it = o.find(key); it != o.end() && it->value().is_string())
      c.torch_dtype = std::string(it->value().get_string());
  if (auto it = o.find("bos_token_id"); it != o.end())
    if (auto v = JsonInt(it->value())) c.bos_token_id = static_cast<int32_t>(*v);
  R1_RETURN_IF_ERROR(ReadEos(o, source, &c.eos_token_ids));
  R1_RETURN_IF_ERROR(ReadQuantization(o, source, &c));

  // head_dim from config.json need not divide hidden_size (q_proj is [heads * head_dim, H]).
  if (c.explicit_head_dim == 0 && c.hidden_size % c.num_attention_heads != 0)
    return absl::InvalidArgumentError(absl::StrCat(source, ": hidden_size ", c.hidden_size,
                                                   " is not a multiple of num_attention_heads ",
                                                   c.num_attention_heads));
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": num_attention_heads ", c.num_attention_heads,
                     " is not a multiple of num_key_value_heads ", c.num_key_value_heads));
  if (c.head_dim() % 2 != 0)
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": head dimension ", c.head_dim(), " must be even for RoPE"));
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir) {
  std::string path = (std::filesystem::path(dir) / "config.json").string();
  if (!std::filesystem::is_directory(dir))
    return absl::NotFoundError(absl::StrCat("model directory ", dir, " does not exist"));
  R1_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  R1_ASSIGN_OR_RETURN(ModelConfig c, ParseModelConfig(text, path));
  std::string gen_path = (std::filesystem::path(dir) / "generation_config.json").string();
  if (std::filesystem::exists(gen_path)) {
    R1_ASSIGN_OR_RETURN(std::string gen_text, ReadFile(gen_path));
    R1_ASSIGN_OR_RETURN(json::value gen, ParseJson(gen_text, gen_path));
    if (!gen.is_object()) return absl::InvalidArgumentError(gen_path + ": expected a JSON object");
    std::vector<int32_t> eos;
    R1_RETURN_IF_ERROR(ReadEos(gen.get_object(), gen_path, &eos));
    if (!eos.empty()) c.eos_token_ids = std::move(eos);
    if (auto it = gen.get_object().find("bos_token_id"); it != gen.get_object().end())
      if (auto v = JsonInt(it->value())) c.bos_token_id = static_cast<int32_t>(*v);
  }
  return c;
}

}  // namespace r1::model
