#include "loadtest/distribution.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace r1::loadtest {
namespace {

absl::StatusOr<int64_t> ParseLength(absl::string_view s, const std::string& whole) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(s, &v) || v < 0 || v > 10'000'000) {
    return absl::InvalidArgumentError("bad length '" + std::string(s) + "' in '" + whole +
                                      "' (want a whole number >= 0)");
  }
  return v;
}

}  // namespace

LengthDist LengthDist::Fixed(int64_t n) {
  LengthDist d;
  d.kind_ = Kind::kFixed;
  d.lo_ = d.hi_ = n;
  return d;
}

absl::StatusOr<LengthDist> LengthDist::Parse(const std::string& text) {
  absl::string_view s = text;
  LengthDist d;
  if (absl::ConsumePrefix(&s, "uniform:")) {
    std::vector<absl::string_view> parts = absl::StrSplit(s, ':');
    if (parts.size() != 2) {
      return absl::InvalidArgumentError("bad distribution '" + text + "' (want uniform:MIN:MAX)");
    }
    R1_ASSIGN_OR_RETURN(d.lo_, ParseLength(parts[0], text));
    R1_ASSIGN_OR_RETURN(d.hi_, ParseLength(parts[1], text));
    if (d.lo_ > d.hi_) {
      return absl::InvalidArgumentError("bad distribution '" + text + "' (MIN > MAX)");
    }
    d.kind_ = Kind::kUniform;
    return d;
  }
  if (absl::ConsumePrefix(&s, "lognormal:")) {
    std::vector<absl::string_view> parts = absl::StrSplit(s, ':');
    if (parts.size() != 4 || !absl::SimpleAtod(parts[0], &d.median_) ||
        !absl::SimpleAtod(parts[1], &d.sigma_) || !(d.median_ >= 1) || !(d.sigma_ >= 0) ||
        d.sigma_ > 10) {
      return absl::InvalidArgumentError("bad distribution '" + text +
                                        "' (want lognormal:MEDIAN:SIGMA:MIN:MAX, MEDIAN >= 1, "
                                        "0 <= SIGMA <= 10)");
    }
    R1_ASSIGN_OR_RETURN(d.lo_, ParseLength(parts[2], text));
    R1_ASSIGN_OR_RETURN(d.hi_, ParseLength(parts[3], text));
    if (d.lo_ > d.hi_) return absl::InvalidArgumentError("bad distribution '" + text + "' (MIN > MAX)");
    d.kind_ = Kind::kLogNormal;
    return d;
  }
  bool list = absl::ConsumePrefix(&s, "list:");
  if (!list) absl::ConsumePrefix(&s, "fixed:");
  if (s.empty()) return absl::InvalidArgumentError("empty length distribution");
  for (absl::string_view part : absl::StrSplit(s, ',')) {
    R1_ASSIGN_OR_RETURN(int64_t v, ParseLength(part, text));
    d.values_.push_back(v);
  }
  if (d.values_.size() == 1 && !list) return Fixed(d.values_[0]);
  d.kind_ = Kind::kList;
  d.lo_ = *std::min_element(d.values_.begin(), d.values_.end());
  d.hi_ = *std::max_element(d.values_.begin(), d.values_.end());
  return d;
}

int64_t LengthDist::Sample(Random& rng) const {
  switch (kind_) {
    case Kind::kFixed:
      return lo_;
    case Kind::kUniform:
      return lo_ + static_cast<int64_t>(rng.Below(static_cast<uint64_t>(hi_ - lo_ + 1)));
    case Kind::kList:
      return values_[rng.Below(values_.size())];
    case Kind::kLogNormal: {
      // Box-Muller: one standard normal from two uniforms (the first kept away from 0).
      const double u1 = 1.0 - rng.Uniform01(), u2 = rng.Uniform01();
      const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
      const double v = std::round(median_ * std::exp(sigma_ * z));
      return std::clamp<int64_t>(static_cast<int64_t>(std::min(v, 1e12)), lo_, hi_);
    }
  }
  return lo_;
}

int64_t LengthDist::Min() const { return lo_; }
int64_t LengthDist::Max() const { return hi_; }

std::string LengthDist::ToString() const {
  switch (kind_) {
    case Kind::kFixed:
      return "fixed:" + std::to_string(lo_);
    case Kind::kUniform:
      return "uniform:" + std::to_string(lo_) + ":" + std::to_string(hi_);
    case Kind::kList:
      return "list:" + absl::StrJoin(values_, ",");
    case Kind::kLogNormal:
      return "lognormal:" + absl::StrCat(median_) + ":" + absl::StrCat(sigma_) + ":" +
             std::to_string(lo_) + ":" + std::to_string(hi_);
  }
  return "";
}

}  // namespace r1::loadtest
