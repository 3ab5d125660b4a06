// Length distributions for prompts and outputs: "128" (fixed), "uniform:A:B" (inclusive),
// "list:A,B,C" / "A,B,C" (each value equally likely), or "lognormal:MEDIAN:SIGMA:MIN:MAX"
// (MEDIAN * exp(SIGMA * N(0, 1)), rounded and clamped to [MIN, MAX]: the long tail of reasoning
// lengths, e.g. lognormal:2000:1:64:16384 for R1 answers).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/random.h"
#include "common/status.h"

namespace r1::loadtest {

class LengthDist {
 public:
  static absl::StatusOr<LengthDist> Parse(const std::string& text);
  static LengthDist Fixed(int64_t n);

  int64_t Sample(Random& rng) const;
  int64_t Min() const;
  int64_t Max() const;
  // The text it was parsed from, normalised ("fixed:16", "uniform:8:32", "list:1,2").
  std::string ToString() const;

 private:
  enum class Kind { kFixed, kUniform, kList, kLogNormal };
  Kind kind_ = Kind::kFixed;
  int64_t lo_ = 0, hi_ = 0;
  double median_ = 0, sigma_ = 0;
  std::vector<int64_t> values_;
};

}  // namespace r1::loadtest
