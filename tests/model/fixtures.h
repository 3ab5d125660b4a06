// Access to the transformers reference fixtures in tests/fixtures/model and
// tests/fixtures/model_llama (made by tests/fixtures/make_model_fixtures.py), shared by the CPU
// and GPU parity tests.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "worker/model/qwen2.h"
#include "worker/model/safetensors.h"

namespace r1::model::fixtures {

// How far logits drift from the reference's, over the [positions, vocab] rows added: top-1
// agreement and mean KL(reference || got) in nats. With nothing added: top-1 0, KL 1e9.
struct Drift {
  int64_t agree = 0, positions = 0;
  double kl_sum = 0;
  void Add(const at::Tensor& got, const at::Tensor& ref) {
    agree += got.argmax(1).eq(ref.argmax(1)).sum().item<int64_t>();
    positions += ref.size(0);
    at::Tensor lp = at::log_softmax(ref.to(at::kDouble), 1), lq = at::log_softmax(got.to(at::kDouble), 1);
    kl_sum += (lp.exp() * (lp - lq)).sum().item<double>();
  }
  double top1() const { return positions > 0 ? static_cast<double>(agree) / static_cast<double>(positions) : 0; }
  double kl() const { return positions > 0 ? kl_sum / static_cast<double>(positions) : 1e9; }
};

inline std::string Dir() {
  const char* src = std::getenv("R1_SOURCE_DIR");
  return std::string(src ? src : ".") + "/tests/fixtures/model";
}
// The Llama cases' fixtures (make_model_fixtures.py --family llama); their cases are named
// llama*, so a case (or a logits key) names its directory.
inline std::string LlamaDir() { return Dir() + "_llama"; }
inline std::string DirOf(const std::string& case_or_key) {
  return case_or_key.rfind("llama", 0) == 0 ? LlamaDir() : Dir();
}

inline boost::json::value ReferenceJson(const std::string& dir) {
  std::ifstream in(dir + "/reference.json");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  return boost::json::parse(text);
}

// Why the fixtures of case `c` cannot be used ("" when they can): a file not made yet, or the
// error the fixture script recorded for the case.
inline std::string Missing(const std::string& c) {
  const std::string dir = DirOf(c);
  for (const char* f : {"/reference.json", "/logits.safetensors"})
    if (!std::filesystem::exists(dir + f))
      return dir + f + " is missing: make the fixtures on the GPU machine with " +
             "`bash tests/fixtures/make_llama_fixtures.sh OUT`, then `tar -xzf " +
             "OUT/llama_fixtures.tar.gz` in the repository root";
  const boost::json::value ref = ReferenceJson(dir);
  const auto& cases = ref.at("cases").as_object();
  if (!cases.contains(c)) return dir + "/reference.json has no case " + c;
  if (const auto* e = cases.at(c).as_object().if_contains("error"))
    return "the fixture script failed on case " + c + ": " + boost::json::serialize(*e);
  return "";
}

struct Prompt {
  std::string name;
  std::vector<int32_t> prompt, greedy_f32;
};

inline std::vector<int32_t> Ints(const boost::json::value& v) {
  std::vector<int32_t> out;
  for (const auto& x : v.as_array()) out.push_back(static_cast<int32_t>(x.to_number<int64_t>()));
  return out;
}

// The prompts of one case ("gqa_untied", "llama3_gqa_untied", ...) with transformers' float32
// greedy continuations.
inline std::vector<Prompt> Prompts(const std::string& c) {
  boost::json::value ref = ReferenceJson(DirOf(c));
  std::vector<Prompt> out;
  for (const auto& [name, p] : ref.at("cases").at(c).at("prompts").as_object())
    out.push_back({std::string(name), Ints(p.at("prompt")), Ints(p.at("greedy_f32"))});
  return out;
}

// A float32 tensor of logits.safetensors, on the CPU: transformers' logits at every position
// of prompt + greedy_f32 ([L, V]; key "<case>.<prompt>.f32" or ".bf16"), or a case's RoPE
// inv_freq ("<case>.inv_freq").
inline at::Tensor Reference(const std::string& key) {
  static std::map<std::string, std::unique_ptr<SafetensorsFile>> files;
  const std::string dir = DirOf(key);
  if (!files.count(dir)) {
    auto file = SafetensorsFile::Open(dir + "/logits.safetensors");
    EXPECT_TRUE(file.ok()) << file.status();
    if (!file.ok()) return at::Tensor();
    files[dir] = std::move(*file);
  }
  const auto& tensors = files[dir]->tensors();
  EXPECT_TRUE(tensors.count(key)) << "no tensor " << key << " in " << dir << "/logits.safetensors";
  if (!tensors.count(key)) return at::Tensor();
  const TensorView& t = tensors.at(key);
  return at::from_blob(const_cast<void*>(t.data), t.shape, at::kFloat).clone();
}

// transformers' own bf16-versus-f32 gap for one prompt: the size of bf16 rounding noise.
inline double HfGap(const std::string& c, const std::string& prompt_name) {
  std::string k = c + "." + prompt_name;
  return (Reference(k + ".bf16") - Reference(k + ".f32")).abs().max().item<double>();
}

// Greedy decoding of `prompt` for `n` tokens through Forward: the prompt in one step, then one
// token per step, over 32 blocks of 8 in scattered order. `each(pos, row)` sees the float32 CPU
// logits row of every step, for the position it predicts from. Returns the ids.
template <class EachRow>
std::vector<int32_t> GreedyIds(Qwen2Model& m, const std::vector<int32_t>& prompt, size_t n,
                               EachRow each) {
  KvCache cache(m.config(), 32, 8, m.dtype(), m.device());
  SequenceStep s;
  for (int b = 0; b < 32; ++b) s.block_table.push_back((b * 7) % 32);
  std::vector<int32_t> step_tokens = prompt, out;
  int64_t cached = 0;
  while (out.size() < n) {
    StepBatch batch;
    batch.tokens = step_tokens;
    s.num_cached = cached;
    s.num_new = static_cast<int64_t>(step_tokens.size());
    batch.seqs = {s};
    auto logits = m.Forward(batch, cache);
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) break;
    cached += s.num_new;
    at::Tensor row = logits->to(at::kCPU)[0];
    each(cached - 1, row);
    // First maximum, as torch.argmax and the greedy sampler pick.
    int32_t t = static_cast<int32_t>(row.argmax().item<int64_t>());
    out.push_back(t);
    step_tokens = {t};
  }
  return out;
}

}  // namespace r1::model::fixtures
