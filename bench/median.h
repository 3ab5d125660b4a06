// The median the benches print: the upper middle of an even count, 0 for none.
#pragma once

#include <algorithm>
#include <vector>

namespace r1::bench {

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace r1::bench
