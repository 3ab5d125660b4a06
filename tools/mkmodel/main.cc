// r1-mkmodel: writes a random-weight Qwen2 or Llama checkpoint in the Hugging Face layout
// (config.json, generation_config.json, model.safetensors or shards with an index, and the
// tokenizer files) for demos, tests and benchmarks. Speed does not depend on the values.
// The shapes are in presets.cc.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "tools/mkmodel/presets.h"
#include "worker/model/awq.h"
#include "worker/model/cpu_int8.h"
#include "worker/model/fp8.h"
#include "worker/model/safetensors_writer.h"
#include "worker/tokenizer/demo_files.h"
#include "worker/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
namespace json = boost::json;
using r1::mkmodel::Preset;
using r1::model::DType;
using r1::model::TensorSpec;

namespace {

absl::Status WriteJson(const fs::path& path, const json::value& v) {
  std::ofstream out(path);
  out << json::serialize(v) << "\n";
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

// Each linear layer's weight: "none", in `dt`; "int8" (I8) or "fp8" (F8_E4M3) with a
// `weight_scale` [rows, 1] in `dt` after it; "awq", AutoAWQ GEMM's qweight, qzeros (I32) and
// scales (`dt`), group `group`.
std::vector<TensorSpec> Specs(const Preset& p, DType dt, const std::string& quantization, int64_t group) {
  const int64_t H = p.hidden, D = p.Dim(), Q = p.heads * D, K = p.kv_heads * D;
  std::vector<TensorSpec> s;
  auto linear = [&](const std::string& name, int64_t rows, int64_t cols) {
    if (quantization == "awq") {
      s.push_back({name + ".qweight", DType::kI32, {cols, rows / 8}});
      s.push_back({name + ".qzeros", DType::kI32, {cols / group, rows / 8}});
      s.push_back({name + ".scales", dt, {cols / group, rows}});
      return;
    }
    const bool int8 = quantization == "int8", fp8 = quantization == "fp8";
    s.push_back({name + ".weight", int8 ? DType::kI8 : fp8 ? DType::kF8E4M3 : dt, {rows, cols}});
    if (int8 || fp8) s.push_back({name + ".weight_scale", dt, {rows, 1}});
  };
  s.push_back({"model.embed_tokens.weight", dt, {p.vocab, H}});
  for (int64_t i = 0; i < p.layers; ++i) {
    std::string l = absl::StrCat("model.layers.", i, ".");
    s.push_back({l + "input_layernorm.weight", dt, {H}});
    for (const auto& [proj, rows] :
         {std::pair{"q_proj", Q}, std::pair{"k_proj", K}, std::pair{"v_proj", K}}) {
      linear(absl::StrCat(l, "self_attn.", proj), rows, H);
      if (p.qkv_bias()) s.push_back({absl::StrCat(l, "self_attn.", proj, ".bias"), dt, {rows}});
    }
    linear(l + "self_attn.o_proj", H, Q);
    s.push_back({l + "post_attention_layernorm.weight", dt, {H}});
    linear(l + "mlp.gate_proj", p.intermediate, H);
    linear(l + "mlp.up_proj", p.intermediate, H);
    linear(l + "mlp.down_proj", H, p.intermediate);
  }
  s.push_back({"model.norm.weight", dt, {H}});
  if (!p.tied) s.push_back({"lm_head.weight", dt, {p.vocab, H}});
  return s;
}

// The demo tokenizer files from the npm tokenizer.json, for the preset's own vocabulary.
absl::Status WriteTokenizer(const std::string& base, const Preset& p, const fs::path& dir) {
  R1_RETURN_IF_ERROR(r1::tokenizer::WriteDemoTokenizerFiles(base, dir.string()));
  R1_ASSIGN_OR_RETURN(auto tok, r1::tokenizer::Tokenizer::FromDir(dir.string()));
  auto bos = tok->TokenToId("<｜begin▁of▁sentence｜>");
  if (tok->vocab_size() > p.vocab || !bos || *bos != p.gen_bos)
    return absl::InvalidArgumentError(absl::StrCat(
        "--tokenizer ", base, " is not the vocabulary of --preset ", p.name, " (", p.arch,
        "): use the npm ", p.arch == "llama" ? "Llama 3.1" : "Qwen", " tokenizer.json"));
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("r1-mkmodel",
                  "Writes a random-weight Qwen2 or Llama checkpoint in the Hugging Face layout.");
  std::string* preset = flags.String("preset", "tiny", r1::mkmodel::PresetNames());
  std::string* out = flags.String("out", "", "output directory (required; must not hold a model)");
  std::string* tokenizer = flags.String(
      "tokenizer", "",
      "npm tokenizer.json to build the DeepSeek-R1-Distill tokenizer files from: Qwen's for the "
      "qwen presets, Llama 3.1's for the llama ones (none: no tokenizer files)");
  bool* config_only = flags.Bool(
      "config-only", false, "write config.json and generation_config.json only (no weights)");
  int64_t* seed = flags.Int("seed", 0, "random seed for the weights");
  std::string* dtype = flags.String("dtype", "bfloat16", "bfloat16 | float16 | float32");
  std::string* quantization = flags.String(
      "quantization", "none",
      "none | int8 | fp8 | awq: int8 writes a compressed-tensors W8A8 checkpoint (I8 linear weights, "
      "each row quantized symmetrically from the --dtype values, with its scale in --dtype as "
      "weight_scale); fp8 a compressed-tensors FP8 dynamic one (F8_E4M3 linear weights, each row "
      "scaled to a largest magnitude of 448 as --quantization fp8 does at load, scale in --dtype "
      "as weight_scale); awq an AutoAWQ GEMM one (4-bit groups of --group-size with zero points, "
      "quantized from the --dtype values as --quantization int4 does at load: qweight and "
      "qzeros I32, scales in --dtype). lm_head, embeddings, norms and biases stay in --dtype");
  int64_t* group_size = flags.Int("group-size", 128, "with --quantization awq: columns per group (32, 64 or 128)");
  int64_t* shards = flags.Int("shards", 1, "number of safetensors shards (>1 writes an index)");
  bool* force = flags.Bool("force", false, "overwrite a model already in --out");
  double* init_std = flags.Double(
      "init-std", -1,
      "standard deviation of the random weights; -1: the preset's (0.02, as transformers "
      "initialises; tiny uses 0.5 so that its greedy output varies)");
  flags.ParseOrExit(argc, argv);

  const Preset* found = r1::mkmodel::FindPreset(*preset);
  if (!found)
    flags.Fail("--preset: unknown preset '" + *preset + "' (" + r1::mkmodel::PresetNames() + ")");
  Preset p = *found;
  if (out->empty()) flags.Fail("--out is required");
  DType dt;
  if (*dtype == "bfloat16") dt = DType::kBF16;
  else if (*dtype == "float16") dt = DType::kF16;
  else if (*dtype == "float32") dt = DType::kF32;
  else flags.Fail("--dtype: '" + *dtype + "' is not one of bfloat16, float16, float32");
  if (*quantization != "none" && *quantization != "int8" && *quantization != "fp8" && *quantization != "awq")
    flags.Fail("--quantization: '" + *quantization + "' is not one of none, int8, fp8, awq");
  const bool int8 = *quantization == "int8", fp8 = *quantization == "fp8", awq = *quantization == "awq";
  if (awq) {
    if (!r1::model::Int4GroupSizeSupported(*group_size)) flags.Fail("--group-size must be 32, 64 or 128");
    // AWQ packs eight output rows to an int32 and groups whole input columns.
    const int64_t D = p.Dim();
    for (int64_t n : {p.heads * D, p.kv_heads * D, p.hidden, p.intermediate})
      if (n % 8 != 0) flags.Fail(absl::StrCat("--quantization awq: --preset ", p.name, " has a layer of ", n, " rows, not a multiple of 8"));
    for (int64_t k : {p.hidden, p.heads * D, p.intermediate})
      if (k % *group_size != 0)
        flags.Fail(absl::StrCat("--quantization awq: --preset ", p.name, " has a layer of ", k,
                                " input columns, not a multiple of --group-size ", *group_size));
  }
  if (*shards < 1 || *shards > 64) flags.Fail("--shards must be in [1, 64]");
  if (*init_std >= 0) p.init_std = *init_std;
  if (!(p.init_std > 0 && p.init_std < 10)) flags.Fail("--init-std must be in (0, 10)");
  fs::path dir(*out);
  if (fs::exists(dir / "config.json") && !*force)
    flags.Fail(absl::StrCat("--out ", *out, " already holds a model (config.json); use --force"));
  if (!tokenizer->empty() && !fs::exists(*tokenizer))
    flags.Fail(absl::StrCat("--tokenizer ", *tokenizer, " does not exist"));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) flags.Fail(absl::StrCat("cannot create ", *out, ": ", ec.message()));

  auto t0 = std::chrono::steady_clock::now();
  const char* dtype_name = dt == DType::kBF16 ? "bfloat16" : dt == DType::kF16 ? "float16" : "float32";
  if (!tokenizer->empty()) {  // first: a tokenizer of the wrong family fails before the weights
    if (auto s = WriteTokenizer(*tokenizer, p, dir); !s.ok()) flags.Fail(std::string(s.message()));
  }
  json::object config = r1::mkmodel::ConfigJson(p, dtype_name);
  if (int8) config["quantization_config"] = r1::mkmodel::Int8QuantizationConfig();
  if (fp8) config["quantization_config"] = r1::mkmodel::Fp8QuantizationConfig();
  if (awq) config["quantization_config"] = r1::mkmodel::AwqQuantizationConfig(*group_size);
  if (auto s = WriteJson(dir / "config.json", config); !s.ok()) flags.Fail(std::string(s.message()));
  if (auto s = WriteJson(dir / "generation_config.json", r1::mkmodel::GenerationConfigJson(p));
      !s.ok())
    flags.Fail(std::string(s.message()));
  if (*config_only) return 0;

  // Weights: N(0, init_std) matrices and biases, norms of one.
  std::vector<TensorSpec> specs = Specs(p, dt, *quantization, *group_size);
  auto gen_cpu = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(*seed));
  at::ScalarType st = dt == DType::kBF16 ? at::kBFloat16 : dt == DType::kF16 ? at::kHalf : at::kFloat;
  // A quantized weight's other tensors (an I8 weight's weight_scale, an AWQ qweight's qzeros
  // and scales), kept from its fill for the specs that follow it.
  std::map<std::string, at::Tensor> scales;
  auto fill_from = [&](const std::vector<TensorSpec>& part) {
    return [&, part](size_t i, void* buf) {
      const TensorSpec& s = part[i];
      at::Tensor t;
      if (auto it = scales.find(s.name); it != scales.end()) {
        t = it->second.scalar_type() == at::kInt ? it->second : it->second.to(st).reshape(s.shape).contiguous();
        scales.erase(it);
      } else if (s.name.size() > 8 && s.name.compare(s.name.size() - 8, 8, ".qweight") == 0) {
        // The float weight [N, K] drawn as for the other formats, quantized, packed AWQ's way.
        const int64_t K = s.shape[0], N = s.shape[1] * 8;
        t = at::randn({N, K}, gen_cpu, at::TensorOptions().dtype(at::kFloat)).mul_(p.init_std).to(st);
        r1::model::AwqTensors a = r1::model::AwqFromInt4(r1::model::QuantizeInt4Groups(t, *group_size));
        const std::string base = s.name.substr(0, s.name.size() - 7);
        scales[base + "qzeros"] = a.qzeros;
        scales[base + "scales"] = a.scales;
        t = a.qweight;
      } else {
        t = s.name.find("norm") != std::string::npos
                ? at::ones(s.shape, at::kFloat)
                : at::randn(s.shape, gen_cpu, at::TensorOptions().dtype(at::kFloat)).mul_(p.init_std);
        t = t.to(st).contiguous();
        if (s.dtype == DType::kI8) {
          r1::model::Int8Rows q = r1::model::QuantizeInt8Rows(t);
          scales[s.name.substr(0, s.name.size() - 6) + "weight_scale"] = q.scale;
          t = q.q;
        } else if (s.dtype == DType::kF8E4M3) {  // from the --dtype values, as the GPU quantizes at load
          at::Tensor x = t.to(at::kFloat).contiguous();
          at::Tensor q = at::empty(s.shape, at::kByte), scale = at::empty({s.shape[0]}, at::kFloat);
          r1::model::QuantizeFp8RowsHost(x.data_ptr<float>(), s.shape[0], s.shape[1], q.data_ptr<uint8_t>(),
                                         scale.data_ptr<float>());
          scales[s.name.substr(0, s.name.size() - 6) + "weight_scale"] = scale;
          t = q;
        }
      }
      std::memcpy(buf, t.data_ptr(), s.nbytes());
    };
  };
  size_t total_bytes = 0;
  for (const auto& s : specs) total_bytes += s.nbytes();
  if (*shards == 1) {
    if (auto s = r1::model::WriteSafetensors((dir / "model.safetensors").string(), specs,
                                             fill_from(specs));
        !s.ok())
      flags.Fail(std::string(s.message()));
  } else {
    json::object weight_map;
    size_t per = (specs.size() + static_cast<size_t>(*shards) - 1) / static_cast<size_t>(*shards);
    for (int64_t k = 0; k < *shards; ++k) {
      std::string name = absl::StrCat("model-", absl::Dec(k + 1, absl::kZeroPad5), "-of-",
                                      absl::Dec(*shards, absl::kZeroPad5), ".safetensors");
      size_t b = std::min(specs.size(), static_cast<size_t>(k) * per);
      size_t e = std::min(specs.size(), b + per);
      std::vector<TensorSpec> part(specs.begin() + static_cast<long>(b),
                                   specs.begin() + static_cast<long>(e));
      for (const auto& s : part) weight_map[s.name] = name;
      if (auto s = r1::model::WriteSafetensors((dir / name).string(), part, fill_from(part));
          !s.ok())
        flags.Fail(std::string(s.message()));
    }
    json::object index{{"metadata", json::object{{"total_size", total_bytes}}},
                       {"weight_map", std::move(weight_map)}};
    fs::remove(dir / "model.safetensors", ec);
    if (auto s = WriteJson(dir / "model.safetensors.index.json", index); !s.ok())
      flags.Fail(std::string(s.message()));
  }

  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cerr << "r1-mkmodel: wrote " << *preset << " (" << dtype_name << (int8 ? ", int8 W8A8" : fp8 ? ", FP8 dynamic" : awq ? absl::StrCat(", AWQ int4 group ", *group_size) : "") << ", "
            << total_bytes / 1e6 << " MB of weights) to " << *out << " in " << secs << " s\n";
  return 0;
}
