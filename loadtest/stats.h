// Latency samples and their percentiles.
#pragma once

#include <cstddef>
#include <vector>

namespace r1::loadtest {

// The q-quantile (q in [0, 1]) of the samples, interpolating linearly between closest ranks
// (numpy's default). 0 when there are no samples. Sorts `sorted` in place when asked to.
double Quantile(std::vector<double>& samples, double q);

struct Summary {
  size_t count = 0;
  double mean = 0, min = 0, max = 0;
  double p50 = 0, p90 = 0, p99 = 0;
};

Summary Summarize(std::vector<double> samples);

}  // namespace r1::loadtest
