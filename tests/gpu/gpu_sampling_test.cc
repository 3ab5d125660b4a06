// The sort-free top-p kernel (worker/model/cuda/sampling.cu) against a reference written with
// the sort it replaces: ATen sorts each row by scaled logit (stable, so ties stay in id order),
// takes the weights exp(s - max) on the same GPU (the same float32 roundings as the kernel),
// sums them as integers in units of 2^-40 and searches the cumulative sums for the top-p cut and
// the draw. The tokens must be equal, every one: both compute exactly the same integers.
// Built everywhere; skipped where libtorch or the machine has no CUDA.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#if defined(R1_HAVE_CUDA)
#include <ATen/cuda/CUDAContext.h>

#include "worker/model/cuda/sampling.h"
#endif

namespace r1::model {
namespace {

class GpuSamplingTest : public ::testing::Test {
 protected:
  void SetUp() override {
#if !defined(R1_HAVE_CUDA)
    GTEST_SKIP() << "built without CUDA";
#else
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
#endif
  }
};

#if defined(R1_HAVE_CUDA)
struct RowOptions {
  float temperature = 0.6f, top_p = 0.95f, min_p = 0.f;
};

// The reference token of row `x` ([V] float32 on CUDA) for one draw u.
int64_t Reference(const at::Tensor& x, const RowOptions& o, float u) {
  const float inv_t = 1.f / o.temperature;
  at::Tensor s = x * inv_t;
  s.masked_fill_(at::logical_not(at::isfinite(x)), -std::numeric_limits<float>::infinity());
  float top = s.max().item<float>();
  if (!std::isfinite(top)) top = 0.f;
  at::Tensor p = (s - top).exp();
  p.masked_fill_(p < o.min_p, 0.f);
  at::Tensor q = (p * std::ldexp(1.f, 40)).to(at::kLong);
  at::Tensor ids = std::get<1>(s.sort(/*stable=*/true, 0, /*descending=*/true));
  at::Tensor cum = q.index_select(0, ids).cumsum(0).cpu();
  ids = ids.cpu();
  const int64_t* c = cum.data_ptr<int64_t>();
  const int64_t V = cum.size(0), total = c[V - 1];
  if (total == 0) return ids[0].item<int64_t>();
  auto first_reaching = [&](int64_t m) {  // the first position whose cumulative weight >= m
    return static_cast<int64_t>(std::lower_bound(c, c + V, m) - c);
  };
  int64_t kept = total;
  if (o.top_p < 1.f) {
    const double want = std::ceil(static_cast<double>(o.top_p) * static_cast<double>(total));
    const int64_t m = std::clamp<int64_t>(static_cast<int64_t>(want), 1, total);
    kept = c[first_reaching(m)];
  }
  const int64_t m = std::min<int64_t>(
      kept, static_cast<int64_t>(std::floor(static_cast<double>(u) * static_cast<double>(kept))) + 1);
  return ids[first_reaching(m)].item<int64_t>();
}

// Samples rows `rows` of x (all rows when empty) with the kernel, one draw per row.
std::vector<int64_t> Kernel(const at::Tensor& x, const std::vector<int64_t>& rows,
                            const std::vector<RowOptions>& o, const std::vector<float>& u) {
  const int64_t n = static_cast<int64_t>(o.size());
  std::vector<float> inv_t, top_p, min_p;
  for (const RowOptions& r : o) {
    inv_t.push_back(1.f / r.temperature);
    top_p.push_back(r.top_p);
    min_p.push_back(r.min_p);
  }
  auto up = [](const auto& v, at::ScalarType t) {
    return at::tensor(v, at::TensorOptions().dtype(t)).to(at::kCUDA);
  };
  at::Tensor t_inv = up(inv_t, at::kFloat), t_top = up(top_p, at::kFloat),
             t_min = up(min_p, at::kFloat), t_u = up(u, at::kFloat);
  at::Tensor t_rows = rows.empty() ? at::Tensor() : up(rows, at::kLong);
  at::Tensor out = at::full({n}, -1, at::TensorOptions().dtype(at::kLong).device(at::kCUDA));
  cuda::TopPSampleArgs a;
  a.logits = x.data_ptr<float>();
  a.ld = x.stride(0);
  a.rows = rows.empty() ? nullptr : t_rows.data_ptr<int64_t>();
  a.n = n;
  a.V = x.size(1);
  a.inv_t = t_inv.data_ptr<float>();
  a.top_p = t_top.data_ptr<float>();
  a.min_p = t_min.data_ptr<float>();
  a.u = t_u.data_ptr<float>();
  a.out = out.data_ptr<int64_t>();
  EXPECT_EQ(cuda::TopPSample(a, at::cuda::getCurrentCUDAStream()), 0);
  out = out.cpu();
  return std::vector<int64_t>(out.data_ptr<int64_t>(), out.data_ptr<int64_t>() + n);
}

// Draws at the edges, then uniform ones.
std::vector<float> Draws(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(0.f, 1.f);
  std::vector<float> u;
  for (int64_t i = 0; i < n; ++i) {
    u.push_back(i == 0 ? 0.f : i == 1 ? 0x1.fffffep-1f : std::min(d(rng), 0x1.fffffep-1f));
  }
  return u;
}

void ExpectEqualToReference(const at::Tensor& x, const std::vector<RowOptions>& o, int rounds,
                            const std::string& what, const std::vector<int64_t>& rows = {}) {
  std::mt19937 rng(17);
  int64_t checked = 0;
  for (int round = 0; round < rounds; ++round) {
    std::vector<float> u = Draws(static_cast<int64_t>(o.size()), rng);
    if (round > 0) std::shuffle(u.begin(), u.end(), rng);
    std::vector<int64_t> got = Kernel(x, rows, o, u);
    for (size_t i = 0; i < o.size(); ++i) {
      const int64_t row = rows.empty() ? static_cast<int64_t>(i) : rows[i];
      EXPECT_EQ(got[i], Reference(x[row], o[i], u[i]))
          << what << ": row " << row << " u " << u[i] << " top_p " << o[i].top_p << " min_p "
          << o[i].min_p << " temperature " << o[i].temperature;
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

at::Tensor Randn(int64_t n, int64_t V, double scale, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return (at::randn({n, V}, gen, at::TensorOptions().dtype(at::kFloat)) * scale).to(at::kCUDA);
}

// Qwen's vocabulary, wide and peaked rows, the R1 defaults and other cuts.
TEST_F(GpuSamplingTest, TopPTokensEqualTheSortedReference) {
  const int64_t V = 151936;
  std::vector<RowOptions> o(12);
  o[1].top_p = 0.5f;
  o[2].top_p = 1.f;  // keep everything: the draw alone
  o[3].top_p = 0.999f;
  o[4].min_p = 0.05f;
  o[5].temperature = 1.3f;
  o[6].temperature = 0.1f;
  o[7].top_p = 0.2f, o[7].temperature = 1.f;
  for (const double scale : {1.0, 3.0, 8.0}) {  // wide (as random weights give) to peaked
    ExpectEqualToReference(Randn(12, V, scale, 5 + static_cast<uint64_t>(scale)), o, 6,
                           "randn x " + std::to_string(scale));
  }
}

// bf16 logits: thousands of equal values, so the cuts fall inside runs of ties (by id).
TEST_F(GpuSamplingTest, TiesAreTakenInIdOrder) {
  const int64_t V = 151936;
  std::vector<RowOptions> o(8);
  o[1].top_p = 0.6f;
  o[2].min_p = 0.2f;
  o[3].temperature = 1.f;
  at::Tensor x = Randn(8, V, 2.0, 11).to(at::kBFloat16).to(at::kFloat);
  ExpectEqualToReference(x, o, 8, "bf16-rounded logits");
  // Every logit equal: the tokens are counted off in id order.
  at::Tensor flat = at::full({4, V}, 1.5f, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA));
  ExpectEqualToReference(flat, std::vector<RowOptions>(4), 8, "equal logits");
}

// Masked logits (-inf, NaN), rows with one finite logit and with none, a vocabulary that is
// not a multiple of 4 (the scalar loads), and a subset of rows by index.
TEST_F(GpuSamplingTest, NonFiniteRowsOddSizesAndRowSubsets) {
  const float inf = std::numeric_limits<float>::infinity();
  at::Tensor x = Randn(6, 151936, 3.0, 21);
  at::Tensor keep = at::rand({6, 151936}, at::TensorOptions().device(at::kCUDA)) < 0.3;
  x.masked_fill_(at::logical_not(keep), -inf);
  x[1].fill_(-inf);                           // nothing finite: token 0, as the sort gives
  x[2].fill_(-inf), x[2][12345] = 4.f;        // one finite logit
  x[3][7] = std::numeric_limits<float>::quiet_NaN(), x[3][8] = inf;  // never candidates
  std::vector<RowOptions> o(6);
  o[4].min_p = 0.1f;
  ExpectEqualToReference(x, o, 6, "masked rows");
  std::vector<int64_t> got = Kernel(x, {}, o, std::vector<float>(6, 0.5f));
  EXPECT_EQ(got[1], 0);
  EXPECT_EQ(got[2], 12345);
  EXPECT_TRUE(got[3] != 7 && got[3] != 8);

  at::Tensor odd = Randn(5, 1001, 2.0, 31);
  ExpectEqualToReference(odd, std::vector<RowOptions>(5), 10, "V = 1001");
  // Rows 4, 0 and 2 of the odd batch, in that order, read through a strided view.
  at::Tensor wide = at::zeros({5, 1004}, odd.options());
  wide.narrow(1, 0, 1001).copy_(odd);
  at::Tensor view = wide.narrow(1, 0, 1001);
  ExpectEqualToReference(view, std::vector<RowOptions>(3), 10, "row subset", {4, 0, 2});
}

// A row's token depends on its own logits and draw only, and repeats.
TEST_F(GpuSamplingTest, ARowsTokenIgnoresTheBatchAndRepeats) {
  at::Tensor x = Randn(16, 151936, 2.0, 41);
  std::vector<RowOptions> o(16);
  std::vector<float> u(16, 0.37f);
  std::vector<int64_t> all = Kernel(x, {}, o, u);
  EXPECT_EQ(Kernel(x, {}, o, u), all);
  std::vector<int64_t> one = Kernel(x, {9}, {o[9]}, {0.37f});
  EXPECT_EQ(one[0], all[9]);
}
#else
TEST_F(GpuSamplingTest, SkippedWithoutCuda) {}  // so that ctest lists the suite as skipped
#endif

}  // namespace
}  // namespace r1::model
