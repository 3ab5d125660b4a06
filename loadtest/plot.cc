#include "loadtest/plot.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace r1::loadtest {

bool HaveGnuplot() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

absl::Status WritePlot(const std::string& file, const std::vector<LevelReport>& reports) {
  std::string dat = file + ".dat";
  {
    std::ofstream out(dat);
    if (!out) return absl::InvalidArgumentError("cannot write " + dat);
    out << "# requests_per_s concurrency rate ttft_p50_ms ttft_p99_ms e2e_p50_ms e2e_p99_ms "
           "itl_p50_ms output_tok_per_s\n";
    for (const LevelReport& r : reports) {
      out << absl::StrFormat("%.4f %d %.4f %.3f %.3f %.3f %.3f %.3f %.2f\n", r.requests_per_s,
                             r.level.concurrency, r.level.rate, r.ttft_ms.p50, r.ttft_ms.p99,
                             r.e2e_ms.p50, r.e2e_ms.p99, r.itl_ms.p50, r.output_tokens_per_s);
    }
  }
  std::string terminal = absl::EndsWith(file, ".svg") ? "svg size 900,540"
                                                      : "pngcairo size 900,540";
  std::string script = absl::StrFormat(
      "set terminal %s\n"
      "set output '%s'\n"
      "set title 'r1serve latency versus load'\n"
      "set xlabel 'achieved requests/s'\n"
      "set ylabel 'latency (ms)'\n"
      "set key top left\n"
      "set grid\n"
      "plot '%s' using 1:4 with linespoints title 'TTFT p50', "
      "'' using 1:5 with linespoints title 'TTFT p99', "
      "'' using 1:6 with linespoints title 'E2E p50', "
      "'' using 1:7 with linespoints title 'E2E p99'\n",
      terminal, file, dat);
  FILE* p = popen("gnuplot", "w");
  if (p == nullptr) return absl::InternalError("cannot run gnuplot");
  fwrite(script.data(), 1, script.size(), p);
  int rc = pclose(p);
  if (rc != 0) return absl::InternalError("gnuplot failed writing " + file);
  return absl::OkStatus();
}

}  // namespace r1::loadtest
