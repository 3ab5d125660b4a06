// Latency versus load with gnuplot: TTFT and end-to-end p50/p99 against achieved
// requests per second, one point per level.
#pragma once

#include <string>
#include <vector>

#include "loadtest/report.h"

namespace r1::loadtest {

// True when a gnuplot program is on PATH.
bool HaveGnuplot();
// Writes FILE (.png or .svg) through gnuplot, and FILE.dat with the figures plotted.
absl::Status WritePlot(const std::string& file, const std::vector<LevelReport>& reports);

}  // namespace r1::loadtest
