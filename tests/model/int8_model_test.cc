// Int8 and int4 models (issue 18): config.json's quantization_config is read or refused by
// name; an int8 (W8A8) or AWQ checkpoint written by r1-mkmodel loads to exactly the model that
// quantizing its float twin at load gives; bad checkpoints and impossible --quantization values
// are clear errors; and the drift of quantized logits from transformers' float32 ones
// (teacher-forced over the parity fixtures) stays inside stated bounds. On random weights the
// drift says nothing about quality: it guards against a broken path (a wrong scale, a swapped
// row), which moves it by orders of magnitude. Kernel exactness is cpu_int8_test's and
// cpu_int4_test's.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/cli_util.h"
#include "tests/model/fixtures.h"
#include "worker/model/config.h"
#include "worker/model/cpu_gemm.h"
#include "worker/model/cpu_int4.h"
#include "worker/model/cpu_int8.h"
#include "worker/model/fp8.h"
#include "worker/model/qwen2.h"

namespace r1::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using r1::testing::Bin;
using r1::testing::RunCommand;

const char kQwenHead[] = R"({"model_type":"qwen2","architectures":["Qwen2ForCausalLM"],
  "vocab_size":100,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":2,
  "num_attention_heads":4,"num_key_value_heads":2)";

std::string WithQuantization(const std::string& qc) {
  return std::string(kQwenHead) + ",\"quantization_config\":" + qc + "}";
}

std::string Scheme(const std::string& type, const std::string& strategy, bool dynamic, int bits = 8) {
  return R"({"type":")" + type + R"(","num_bits":)" + std::to_string(bits) + R"(,"strategy":")" +
         strategy + R"(","symmetric":true,"dynamic":)" + (dynamic ? "true" : "false") + "}";
}

std::string CompressedTensors(const std::string& format, const std::string& weights,
                              const std::string& acts, const std::string& ignore = R"(["lm_head"])") {
  return R"({"quant_method":"compressed-tensors","format":")" + format +
         R"(","config_groups":{"group_0":{"targets":["Linear"],"weights":)" + weights +
         R"(,"input_activations":)" + acts + R"(}},"ignore":)" + ignore + "}";
}

TEST(Int8ConfigTest, ReadsW8A8AndNamesWhatItRefuses) {
  auto none = ParseModelConfig(std::string(kQwenHead) + "}", "c.json");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->quantization.kind, "none");

  auto w8a8 = ParseModelConfig(
      WithQuantization(CompressedTensors("int-quantized", Scheme("int", "channel", false),
                                         Scheme("int", "token", true))), "c.json");
  ASSERT_TRUE(w8a8.ok()) << w8a8.status();
  EXPECT_EQ(w8a8->quantization.kind, "int8");

  // compressed-tensors FP8 dynamic (RedHatAI's "FP8-dynamic" checkpoints).
  auto fp8 = ParseModelConfig(
      WithQuantization(CompressedTensors("float-quantized", Scheme("float", "channel", false),
                                         Scheme("float", "token", true))), "c.json");
  ASSERT_TRUE(fp8.ok()) << fp8.status();
  EXPECT_EQ(fp8->quantization.kind, "fp8");

  // AutoAWQ GEMM, as config.json has it and as its own quant_config.json names the fields.
  for (const char* qc : {R"({"quant_method":"awq","bits":4,"group_size":64,"version":"gemm","zero_point":true,"modules_to_not_convert":null})",
                         R"({"quant_method":"awq","w_bit":4,"q_group_size":128,"version":"GEMM","zero_point":true})"}) {
    auto awq = ParseModelConfig(WithQuantization(qc), "c.json");
    ASSERT_TRUE(awq.ok()) << awq.status();
    EXPECT_EQ(awq->quantization.kind, "awq");
    EXPECT_EQ(awq->quantization.group_size, std::string(qc).find("64") != std::string::npos ? 64 : 128);
  }

  struct Case {
    std::string qc, says;
  } cases[] = {
      // Static FP8 (one scale per tensor, activations too): not built.
      {CompressedTensors("float-quantized", Scheme("float", "tensor", false), Scheme("float", "tensor", false)),
       "compressed-tensors format \"float-quantized\" with 1 config group(s), weights [float num_bits 8 tensor symmetric]"},
      {CompressedTensors("float-quantized", Scheme("float", "channel", false), Scheme("float", "token", true), "[]"),
       "quantizes lm_head"},
      {CompressedTensors("int-quantized", Scheme("int", "tensor", false), Scheme("int", "token", true)),
       "weights [int num_bits 8 tensor symmetric]"},
      {CompressedTensors("int-quantized", Scheme("int", "channel", false), Scheme("int", "tensor", false)),
       "input activations [int num_bits 8 tensor symmetric]"},
      {CompressedTensors("pack-quantized", Scheme("int", "group", false, 4), "null"),
       "format \"pack-quantized\""},
      {CompressedTensors("int-quantized", Scheme("int", "channel", false), Scheme("int", "token", true), "[]"),
       "quantizes lm_head"},
      {R"({"quant_method":"awq","bits":4,"group_size":128,"version":"gemv","zero_point":true})",
       "quant_method \"awq\" (bits 4, group_size 128, version \"gemv\", zero_point true, modules_to_not_convert absent)"},
      {R"({"quant_method":"awq","bits":4,"group_size":128,"version":"gemm","zero_point":false})",
       "zero_point false"},
      {R"({"quant_method":"awq","bits":4,"group_size":256,"version":"gemm","zero_point":true})",
       "group_size 256"},
      {R"({"quant_method":"awq","bits":8,"group_size":128,"version":"gemm","zero_point":true})",
       "(bits 8,"},
      {R"({"quant_method":"awq","bits":4,"group_size":128,"version":"gemm","modules_to_not_convert":["mlp"]})",
       "modules_to_not_convert [\"mlp\"]"},
      {R"({"quant_method":"gptq","bits":4,"group_size":128})", "quant_method \"gptq\" (bits 4, group_size 128)"},
      {R"({"quant_method":"fp8","activation_scheme":"dynamic"})", "quant_method \"fp8\""},
      {R"({"bits":8})", "quant_method \"(none)\""},
  };
  for (const Case& c : cases) {
    auto r = ParseModelConfig(WithQuantization(c.qc), "c.json");
    ASSERT_FALSE(r.ok()) << c.qc;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.says)) << c.qc;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("c.json: quantization_config"));
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("r1serve loads compressed-tensors int8 W8A8"));
  }
}

// --dtype auto is bfloat16 only where bfloat16 runs on our kernels (CUDA; a CPU with
// AVX512-BF16), float32 on other CPUs; explicit values are kept, float16 is refused on the CPU.
TEST(DtypeTest, AutoIsBfloat16OnlyWhereItRunsOnOurKernels) {
  const at::Device cpu(at::kCPU), cuda(at::kCUDA, 0);
  EXPECT_EQ(*ResolveDtype("auto", cpu), CpuGemmAvailable() ? at::kBFloat16 : at::kFloat);
  EXPECT_EQ(*ResolveDtype("auto", cuda), at::kBFloat16);
  EXPECT_EQ(*ResolveDtype("bfloat16", cpu), at::kBFloat16);
  EXPECT_EQ(*ResolveDtype("float32", cuda), at::kFloat);
  EXPECT_EQ(*ResolveDtype("float16", cuda), at::kHalf);
  auto half = ResolveDtype("float16", cpu);
  ASSERT_FALSE(half.ok());
  EXPECT_THAT(std::string(half.status().message()), HasSubstr("not supported on CPU"));
  auto bad = ResolveDtype("int7", cpu);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("'int7'"));
}

TEST(Int8ConfigTest, QuantizationFlagIsResolvedAgainstCheckpointAndDevice) {
  ModelConfig f, q;
  q.quantization.kind = "int8";
  const at::Device cpu(at::kCPU), cuda(at::kCUDA, 0);
  if (Int8KernelAvailable()) {
    EXPECT_EQ(*ResolveQuantization("auto", f, cpu), "none");
    EXPECT_EQ(*ResolveQuantization("auto", q, cpu), "int8");
    EXPECT_EQ(*ResolveQuantization("int8", f, cpu), "int8");
    EXPECT_EQ(*ResolveQuantization("none", f, cpu), "none");
  }
  auto no_dequant = ResolveQuantization("none", q, cpu);
  ASSERT_FALSE(no_dequant.ok());
  EXPECT_THAT(std::string(no_dequant.status().message()), HasSubstr("is not dequantized"));
  auto gpu = ResolveQuantization("int8", f, cuda);
  ASSERT_FALSE(gpu.ok());
  EXPECT_THAT(std::string(gpu.status().message()), HasSubstr("runs on the CPU only"));
  // fp8: CUDA only (the GPU itself is checked at load), from floating or FP8 checkpoints.
  EXPECT_EQ(*ResolveQuantization("fp8", f, cuda), "fp8");
  ModelConfig f8;
  f8.quantization.kind = "fp8";
  EXPECT_EQ(*ResolveQuantization("auto", f8, cuda), "fp8");
  EXPECT_EQ(*ResolveQuantization("fp8", f8, cuda), "fp8");
  // int4: quantized at load from a floating checkpoint, or an AWQ checkpoint's (also "awq").
  ModelConfig awq;
  awq.quantization.kind = "awq";
  awq.quantization.group_size = 128;
  if (Int4KernelAvailable()) {
    EXPECT_EQ(*ResolveQuantization("int4", f, cpu), "int4");
    EXPECT_EQ(*ResolveQuantization("auto", awq, cpu), "int4");
    EXPECT_EQ(*ResolveQuantization("awq", awq, cpu), "int4");
    EXPECT_EQ(*ResolveQuantization("int4", awq, cpu), "int4");
  }
  // On CUDA too (the int4 GEMV; the loader checks the dtype, group size and shapes).
  EXPECT_EQ(*ResolveQuantization("int4", f, cuda), "int4");
  EXPECT_EQ(*ResolveQuantization("auto", awq, cuda), "int4");
  EXPECT_EQ(*ResolveQuantization("awq", awq, cuda), "int4");
  struct Refused {
    const char* flag;
    const ModelConfig* ck;
    at::Device device;
    const char* says;
  } refused[] = {
      {"awq", &f, cpu, "config.json has no AWQ quantization_config"},
      {"none", &awq, cpu, "the checkpoint is AWQ int4"},
      {"int8", &awq, cpu, "use --quantization awq, int4 or auto"},
      {"int4", &q, cpu, "the checkpoint is int8 (compressed-tensors W8A8) and is not requantized"},
      {"int8", &f, cuda, "on the GPU use --quantization fp8, int4 or awq"},
      {"fp8", &f, cpu, "runs on CUDA GPUs only"},
      {"fp8", &q, cuda, "the checkpoint is int8 (compressed-tensors W8A8) and is not requantized"},
      {"fp8", &awq, cuda, "the checkpoint is AWQ int4 and is not requantized"},
      {"auto", &f8, cpu, "the checkpoint is FP8 (compressed-tensors float-quantized), which runs on CUDA GPUs only"},
      {"none", &f8, cuda, "the checkpoint is FP8"},
      {"int8", &f8, cpu, "use --quantization fp8 or auto"},
  };
  for (const Refused& r : refused) {
    auto got = ResolveQuantization(r.flag, *r.ck, r.device);
    ASSERT_FALSE(got.ok()) << r.flag;
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(r.says)) << r.flag;
  }
  auto bad = ResolveQuantization("int7", f, cpu);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("not one of auto, none, int8, int4, fp8, awq"));
}

class TempDir {
 public:
  explicit TempDir(const std::string& tag)
      : path_(fs::temp_directory_path() / ("r1_int8_" + tag + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// One prefill step of `ids` with logits at every position.
at::Tensor AllLogits(Qwen2Model& m, const std::vector<int32_t>& ids) {
  const int64_t n = static_cast<int64_t>(ids.size());
  KvCache cache(m.config(), (n + 7) / 8, 8, m.dtype(), m.device());
  StepBatch b;
  b.tokens = ids;
  SequenceStep s{0, n, {}, true};
  for (int64_t i = 0; i < (n + 7) / 8; ++i) s.block_table.push_back(static_cast<int32_t>(i));
  s.want_all_logits = true;
  b.seqs = {s};
  auto logits = m.Forward(b, cache);
  EXPECT_TRUE(logits.ok()) << logits.status();
  return logits.ok() ? *logits : at::Tensor();
}

// Two tiny float32 checkpoints from one seed with r1-mkmodel, the second with `quantize`'s
// flags; returns the second's config.json.
std::string MkmodelTwins(const TempDir& f, const TempDir& q, const std::string& quantize) {
  for (const auto& [dir, extra] : {std::pair{f.str(), std::string()}, std::pair{q.str(), quantize}}) {
    auto r = RunCommand(Bin("r1-mkmodel") + " --preset tiny --dtype float32 --seed 3 --out " + dir + extra);
    EXPECT_EQ(r.exit_code, 0) << r.out;
  }
  std::ifstream in(q.str() + "/config.json");
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

TEST(Int8LoadTest, MkmodelCheckpointEqualsQuantizingItsFloatTwinAtLoad) {
  if (!Int8KernelAvailable()) GTEST_SKIP() << "no AVX2: int8 refuses to load";
  TempDir f("float"), q("w8a8");
  const std::string config = MkmodelTwins(f, q, " --quantization int8");
  // The file: I8 weights, their scales, and the compressed-tensors config.
  EXPECT_THAT(config, HasSubstr("\"quant_method\":\"compressed-tensors\""));
  auto ck = Checkpoint::Open(q.str());
  ASSERT_TRUE(ck.ok()) << ck.status();
  auto w = (*ck)->Get("model.layers.1.mlp.down_proj.weight");
  auto s = (*ck)->Get("model.layers.1.mlp.down_proj.weight_scale");
  ASSERT_TRUE(w.ok() && s.ok());
  EXPECT_EQ((*w)->dtype, DType::kI8);
  EXPECT_EQ((*s)->shape, (std::vector<int64_t>{(*w)->shape[0], 1}));

  LoadOptions lo("cpu", "float32", 1);
  lo.quantization = "int8";
  auto from_float = Qwen2Model::Load(f.str(), lo);
  ASSERT_TRUE(from_float.ok()) << from_float.status();
  lo.quantization = "auto";
  auto from_int8 = Qwen2Model::Load(q.str(), lo);
  ASSERT_TRUE(from_int8.ok()) << from_int8.status();
  EXPECT_EQ((*from_int8)->quantization(), "int8");
  EXPECT_EQ((*from_int8)->weight_bytes(), (*from_float)->weight_bytes());
  lo.quantization = "none";
  auto float_model = Qwen2Model::Load(f.str(), lo);
  ASSERT_TRUE(float_model.ok());
  lo.quantization = "int8";
  lo.int8_lm_head = false;
  auto float_head = Qwen2Model::Load(q.str(), lo);
  ASSERT_TRUE(float_head.ok()) << float_head.status();
  EXPECT_THAT((*from_int8)->QuantizationSummary(), HasSubstr("lm_head int8, quantized at load from the tied embedding (F32)"));
  EXPECT_THAT((*float_head)->QuantizationSummary(), HasSubstr("lm_head in Float"));
  // Linear weights: 1 byte and a 4-byte scale per row instead of 4 bytes per element. The tied
  // model's int8 lm_head is a copy of the embedding beside it: 1 byte an element, 4 a row.
  const ModelConfig& c = (*float_model)->config();
  const int64_t H = c.hidden_size, I = c.intermediate_size, QKV = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim();
  const int64_t elems = QKV * H + H * c.num_attention_heads * c.head_dim() + 3 * I * H;
  const int64_t rows = QKV + H + 2 * I + H;
  ASSERT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ((*float_model)->weight_bytes() - (*float_head)->weight_bytes(),
            c.num_hidden_layers * (4 * elems - (elems + 4 * rows)));
  EXPECT_EQ((*from_int8)->weight_bytes() - (*float_head)->weight_bytes(), c.vocab_size * (H + 4));

  const std::vector<int32_t> ids = {5, 17, 230, 4, 99, 1000, 7, 7, 7, 3000, 12};
  at::Tensor a = AllLogits(**from_float, ids), b = AllLogits(**from_int8, ids);
  EXPECT_TRUE(at::equal(a, b)) << "max diff " << (a - b).abs().max().item<float>();
  // And int8 is not the float model, nor the int8 lm_head the float one: the paths really ran.
  at::Tensor fl = AllLogits(**float_model, ids), fh = AllLogits(**float_head, ids);
  EXPECT_GT((fl - a).abs().max().item<float>(), 0.f);
  EXPECT_GT((fh - a).abs().max().item<float>(), 0.f);
  EXPECT_GT((fl - fh).abs().max().item<float>(), 0.f);
}

TEST(AwqLoadTest, MkmodelCheckpointEqualsQuantizingItsFloatTwinAtLoad) {
  if (!Int4KernelAvailable()) GTEST_SKIP() << "no AVX2 and FMA: int4 refuses to load";
  TempDir f("float4"), a("awq");
  const std::string config = MkmodelTwins(f, a, " --quantization awq --group-size 32");
  EXPECT_THAT(config, HasSubstr("\"quant_method\":\"awq\""));
  EXPECT_THAT(config, HasSubstr("\"version\":\"gemm\""));
  auto ck = Checkpoint::Open(a.str());
  ASSERT_TRUE(ck.ok()) << ck.status();
  auto qw = (*ck)->Get("model.layers.1.mlp.down_proj.qweight");  // [K = I, N / 8 = H / 8]
  auto qz = (*ck)->Get("model.layers.1.mlp.down_proj.qzeros");
  auto sc = (*ck)->Get("model.layers.1.mlp.down_proj.scales");
  ASSERT_TRUE(qw.ok() && qz.ok() && sc.ok());
  EXPECT_EQ((*qw)->dtype, DType::kI32);
  EXPECT_EQ((*qw)->shape, (std::vector<int64_t>{96, 4}));
  EXPECT_EQ((*qz)->shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ((*sc)->shape, (std::vector<int64_t>{3, 32}));
  EXPECT_FALSE((*ck)->Has("model.layers.1.mlp.down_proj.weight"));

  LoadOptions lo("cpu", "float32", 1);
  lo.quantization = "int4";
  lo.int4_group_size = 32;
  auto from_float = Qwen2Model::Load(f.str(), lo);
  ASSERT_TRUE(from_float.ok()) << from_float.status();
  lo.quantization = "auto";
  lo.int4_group_size = 128;  // an AWQ checkpoint's own group size wins
  auto from_awq = Qwen2Model::Load(a.str(), lo);
  ASSERT_TRUE(from_awq.ok()) << from_awq.status();
  EXPECT_EQ((*from_awq)->quantization(), "int4");
  EXPECT_THAT((*from_awq)->QuantizationSummary(), HasSubstr("groups of 32 columns with scales and zero points, from the AWQ GEMM checkpoint"));
  EXPECT_EQ((*from_awq)->weight_bytes(), (*from_float)->weight_bytes());
  lo.quantization = "none";
  auto float_model = Qwen2Model::Load(f.str(), lo);
  ASSERT_TRUE(float_model.ok());

  const std::vector<int32_t> ids = {5, 17, 230, 4, 99, 1000, 7, 7, 7, 3000, 12};
  at::Tensor x = AllLogits(**from_float, ids), y = AllLogits(**from_awq, ids);
  EXPECT_TRUE(at::equal(x, y)) << "max diff " << (x - y).abs().max().item<float>();
  EXPECT_GT((AllLogits(**float_model, ids) - x).abs().max().item<float>(), 0.f);

  // r1-mkmodel refuses what AWQ cannot pack; the loader names a float checkpoint under an AWQ
  // config.
  TempDir bad("awqbad");
  auto r = RunCommand(Bin("r1-mkmodel") + " --preset tiny --out " + bad.str() + " --quantization awq");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("not a multiple of --group-size 128"));
  std::ofstream(f.str() + "/config.json") << config;
  lo.quantization = "auto";
  auto float_weights = Qwen2Model::Load(f.str(), lo);
  ASSERT_FALSE(float_weights.ok());
  EXPECT_THAT(std::string(float_weights.status().message()), HasSubstr("has no tensor model.layers.0.self_attn.q_proj.qweight"));
}

// The host e4m3 codec (r1-mkmodel's FP8 checkpoints) against the format's definition (OCP FP8
// e4m3: bias 7, 3 mantissa bits, no infinities, 0x7f NaN, 448 the largest): fixed points of the
// spec, every finite code decoded and encoded back to itself, and every midpoint between
// neighbours rounded to the even code (and the values just beside it to the nearer one).
TEST(Fp8HostTest, E4m3CodecFollowsTheFormat) {
  EXPECT_EQ(E4m3ToFloat(0x38), 1.f);
  EXPECT_EQ(E4m3ToFloat(0x7e), 448.f);
  EXPECT_EQ(E4m3ToFloat(0x01), std::ldexp(1.f, -9));  // the smallest subnormal
  EXPECT_EQ(E4m3ToFloat(0x08), std::ldexp(1.f, -6));  // the smallest normal
  EXPECT_EQ(E4m3ToFloat(0xb8), -1.f);
  EXPECT_TRUE(std::isnan(E4m3ToFloat(0x7f)) && std::isnan(E4m3ToFloat(0xff)));
  EXPECT_EQ(FloatToE4m3(1e9f), 0x7e);
  EXPECT_EQ(FloatToE4m3(-460.f), 0xfe);
  EXPECT_EQ(FloatToE4m3(NAN), 0x7f);
  EXPECT_EQ(FloatToE4m3(std::ldexp(1.f, -11)), 0x00);
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    EXPECT_EQ(FloatToE4m3(E4m3ToFloat(static_cast<uint8_t>(c))), c) << c;
  }
  for (int c = 0; c < 0x7e; ++c) {
    const float lo = E4m3ToFloat(static_cast<uint8_t>(c)), hi = E4m3ToFloat(static_cast<uint8_t>(c + 1));
    const float mid = (lo + hi) / 2;
    EXPECT_EQ(FloatToE4m3(mid), (c % 2 == 0) ? c : c + 1) << "tie between " << c << " and " << c + 1;
    EXPECT_EQ(FloatToE4m3(std::nextafter(mid, 0.f)), c) << c;
    EXPECT_EQ(FloatToE4m3(std::nextafter(mid, 1e9f)), c + 1) << c;
  }
  // Rows: the largest magnitude lands on 448 exactly, a zero row gets scale 0.
  const float x[6] = {0.5f, -2.f, 0.25f, 0.f, 0.f, 0.f};
  uint8_t q[6];
  float scale[2];
  QuantizeFp8RowsHost(x, 2, 3, q, scale);
  EXPECT_EQ(q[1], 0xfe);
  EXPECT_EQ(scale[0], 2.f / 448.f);
  EXPECT_EQ(E4m3ToFloat(q[0]) * scale[0], 0.5f);
  EXPECT_EQ(scale[1], 0.f);
  EXPECT_EQ(q[3] | q[4] | q[5], 0);
}

// r1-mkmodel --quantization fp8 writes a compressed-tensors FP8 dynamic checkpoint (F8_E4M3
// weights, weight_scale [rows, 1], lm_head floating). It runs on CUDA only: on the CPU every
// --quantization is refused with the reason (gpu_model_test loads it on the GPU).
TEST(Fp8LoadTest, MkmodelCheckpointIsReadAndRefusedOnTheCpu) {
  TempDir q("fp8");
  auto r = RunCommand(Bin("r1-mkmodel") + " --preset tiny --out " + q.str() + " --quantization fp8");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::ifstream in(q.str() + "/config.json");
  const std::string config((std::istreambuf_iterator<char>(in)), {});
  EXPECT_THAT(config, HasSubstr("\"format\":\"float-quantized\""));
  auto parsed = ParseModelConfig(config, "config.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->quantization.kind, "fp8");
  auto ck = Checkpoint::Open(q.str());
  ASSERT_TRUE(ck.ok()) << ck.status();
  auto w = (*ck)->Get("model.layers.1.mlp.down_proj.weight");
  auto s = (*ck)->Get("model.layers.1.mlp.down_proj.weight_scale");
  ASSERT_TRUE(w.ok() && s.ok());
  EXPECT_EQ((*w)->dtype, DType::kF8E4M3);
  EXPECT_EQ((*s)->dtype, DType::kBF16);
  EXPECT_EQ((*s)->shape, (std::vector<int64_t>{(*w)->shape[0], 1}));
  EXPECT_EQ((*(*ck)->Get("model.embed_tokens.weight"))->dtype, DType::kBF16);
  // Every byte a finite e4m3 code and some row reaching 448 (0x7e or 0xfe).
  const uint8_t* bytes = static_cast<const uint8_t*>((*w)->data);
  bool top = false;
  for (size_t i = 0; i < (*w)->nbytes; ++i) {
    EXPECT_NE(bytes[i] & 0x7f, 0x7f) << i;
    top |= (bytes[i] & 0x7f) == 0x7e;
  }
  EXPECT_TRUE(top);
  for (const char* flag : {"auto", "fp8", "none"}) {
    LoadOptions lo("cpu", "bfloat16", 1);
    lo.quantization = flag;
    auto m = Qwen2Model::Load(q.str(), lo);
    ASSERT_FALSE(m.ok()) << flag;
    EXPECT_THAT(std::string(m.status().message()), HasSubstr("the checkpoint is FP8")) << flag;
  }
  // F8_E4M3 tensors under a config without quantization_config are named.
  const size_t at = config.find(",\"quantization_config\"");
  ASSERT_NE(at, std::string::npos);
  std::string plain = config;
  const size_t end = plain.find("\"quantization_status\":\"compressed\"}", at);
  ASSERT_NE(end, std::string::npos);
  plain = plain.substr(0, at) + plain.substr(end + std::strlen("\"quantization_status\":\"compressed\"}"));
  std::ofstream(q.str() + "/config.json") << plain;
  LoadOptions lo("cpu", "bfloat16", 1);
  auto unmarked = Qwen2Model::Load(q.str(), lo);
  ASSERT_FALSE(unmarked.ok());
  EXPECT_THAT(std::string(unmarked.status().message()), HasSubstr("is F8_E4M3 but config.json has no FP8 quantization_config"));
}

TEST(Int8LoadTest, BadInt8CheckpointsAreNamedErrors) {
  if (!Int8KernelAvailable()) GTEST_SKIP() << "no AVX2: int8 refuses to load";
  TempDir q("bad");
  auto r = RunCommand(Bin("r1-mkmodel") + " --preset tiny --dtype float32 --out " + q.str() + " --quantization int8");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  LoadOptions lo("cpu", "float32", 1);
  lo.quantization = "none";
  auto none = Qwen2Model::Load(q.str(), lo);
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("use --quantization int8 or auto"));

  // I8 tensors under a config without quantization_config.
  const std::string cfg_path = q.str() + "/config.json";
  std::ifstream in(cfg_path);
  std::string cfg((std::istreambuf_iterator<char>(in)), {});
  in.close();
  const size_t at = cfg.find(",\"quantization_config\"");
  ASSERT_NE(at, std::string::npos);
  const size_t end = cfg.find("\"quantization_status\":\"compressed\"}", at);
  ASSERT_NE(end, std::string::npos);
  std::string plain = cfg.substr(0, at) + cfg.substr(end + std::strlen("\"quantization_status\":\"compressed\"}"));
  std::ofstream(cfg_path) << plain;
  lo.quantization = "int8";
  auto unmarked = Qwen2Model::Load(q.str(), lo);
  ASSERT_FALSE(unmarked.ok());
  EXPECT_THAT(std::string(unmarked.status().message()),
              HasSubstr("model.layers.0.self_attn.q_proj.weight in "));
  EXPECT_THAT(std::string(unmarked.status().message()), HasSubstr("is I8 but config.json has no int8 quantization_config"));
  lo.quantization = "none";
  auto as_float = Qwen2Model::Load(q.str(), lo);  // int8 values are never read as numbers
  ASSERT_FALSE(as_float.ok());
  EXPECT_THAT(std::string(as_float.status().message()), HasSubstr("is I8 but config.json has no int8 quantization_config"));
  std::ofstream(cfg_path) << cfg;

  // A float checkpoint under an int8 config.
  TempDir f("floatck");
  r = RunCommand(Bin("r1-mkmodel") + " --preset tiny --dtype float32 --out " + f.str());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::ofstream(f.str() + "/config.json") << cfg;
  lo.quantization = "auto";
  auto float_weights = Qwen2Model::Load(f.str(), lo);
  ASSERT_FALSE(float_weights.ok());
  EXPECT_THAT(std::string(float_weights.status().message()), HasSubstr("is F32, not I8 as the int8 quantization_config says"));
}

// Teacher-forced over prompt + transformers' float32 greedy continuation: the quantized model's
// logits at every position against transformers' float32 logits, per fixture case: top-1
// agreement and mean KL(reference || quantized) in nats. The figures are printed; the bounds are
// about twice the drift these tiny random models gave when written (int8: top-1 0.85-0.93, KL
// 0.012-0.017 with lm_head int8 or float32; the README has them all).
fixtures::Drift MeasureDrift(const std::string& c, const LoadOptions& lo) {
  fixtures::Drift d;
  auto m = Qwen2Model::Load(fixtures::DirOf(c) + "/" + c, lo);
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return {};
  for (const fixtures::Prompt& p : fixtures::Prompts(c)) {
    std::vector<int32_t> seq = p.prompt;
    seq.insert(seq.end(), p.greedy_f32.begin(), p.greedy_f32.end());
    at::Tensor ref = fixtures::Reference(c + "." + p.name + ".f32");  // [L, V]
    at::Tensor got = AllLogits(**m, seq);
    EXPECT_EQ(got.sizes(), ref.sizes());
    if (got.sizes() != ref.sizes()) return {};
    d.Add(got, ref);
  }
  return d;
}

TEST(QuantizedDriftTest, LogitsStayNearTransformersFloat32) {
  if (!Int8KernelAvailable() || !Int4KernelAvailable()) GTEST_SKIP() << "no AVX2 and FMA: int8 and int4 refuse to load";
  struct Variant {
    const char* name;
    const char* quantization;
    bool int8_lm_head;
    int64_t group;
    double min_top1, max_kl;
  } variants[] = {
      {"int8, lm_head int8", "int8", true, 0, 0.75, 0.035},
      {"int8, lm_head float32", "int8", false, 0, 0.75, 0.035},
      // 4 bits lose ten times int8's precision: on these tiny random models (whose logits are
      // peaked) that is 0.30-0.44 top-1 and 0.67-0.86 nats. A broken path leaves the logits
      // unrelated to the reference: with the nibble halves swapped in the kernel, top-1 fell
      // to 0-0.013 and KL rose to 3.9-5.6 nats.
      {"int4 group 32, lm_head int8", "int4", true, 32, 0.2, 1.6},
      {"int4 group 128, lm_head int8", "int4", true, 128, 0.15, 1.7},
  };
  for (const Variant& v : variants) {
    for (const std::string c : {"gqa_untied", "tied_mqa_sharded", "llama3_gqa_untied", "llama3_kv3_hd12_tied_sharded"}) {
      if (std::string why = fixtures::Missing(c); !why.empty()) {
        ADD_FAILURE() << why;
        continue;
      }
      LoadOptions lo("cpu", "float32", 1);
      lo.quantization = v.quantization;
      lo.int8_lm_head = v.int8_lm_head;
      if (v.group > 0) lo.int4_group_size = v.group;
      const fixtures::Drift d = MeasureDrift(c, lo);
      std::printf("drift %s, %s: top-1 agreement %.4f, mean KL %.3g nats\n", v.name, c.c_str(), d.top1(), d.kl());
      EXPECT_GE(d.top1(), v.min_top1) << v.name << " " << c;
      EXPECT_LT(d.kl(), v.max_kl) << v.name << " " << c;
    }
  }
}

}  // namespace
}  // namespace r1::model
