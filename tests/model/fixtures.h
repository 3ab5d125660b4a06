// Access to the transformers reference fixtures in tests/fixtures/model (made by
// tests/fixtures/make_model_fixtures.py), shared by the CPU and GPU parity tests.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "worker/model/safetensors.h"

namespace r1::model::fixtures {

inline std::string Dir() {
  const char* src = std::getenv("R1_SOURCE_DIR");
  return std::string(src ? src : ".") + "/tests/fixtures/model";
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

// The prompts of one case ("gqa_untied", "tied_mqa_sharded") with transformers' float32 greedy
// continuations.
inline std::vector<Prompt> Prompts(const std::string& c) {
  std::ifstream in(Dir() + "/reference.json");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  boost::json::value ref = boost::json::parse(text);
  std::vector<Prompt> out;
  for (const auto& [name, p] : ref.at("cases").at(c).at("prompts").as_object())
    out.push_back({std::string(name), Ints(p.at("prompt")), Ints(p.at("greedy_f32"))});
  return out;
}

// transformers' logits at every position of prompt + greedy_f32, [L, V], float32 on the CPU.
// key: "<case>.<prompt>.f32" or "<case>.<prompt>.bf16".
inline at::Tensor Reference(const std::string& key) {
  static auto file = SafetensorsFile::Open(Dir() + "/logits.safetensors");
  EXPECT_TRUE(file.ok()) << file.status();
  const TensorView& t = (*file)->tensors().at(key);
  return at::from_blob(const_cast<void*>(t.data), t.shape, at::kFloat).clone();
}

// transformers' own bf16-versus-f32 gap for one prompt: the size of bf16 rounding noise.
inline double HfGap(const std::string& c, const std::string& prompt_name) {
  std::string k = c + "." + prompt_name;
  return (Reference(k + ".bf16") - Reference(k + ".f32")).abs().max().item<double>();
}

}  // namespace r1::model::fixtures
