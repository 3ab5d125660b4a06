// Tokenizer speed: load time, encode MB/s and decode tokens/s on one thread.
//   tokenizer_bench --tokenizer FILE --text FILE [--rounds N]
// bench/tokenizer_bench_hf.py measures Hugging Face tokenizers the same way.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "common/flags.h"
#include "worker/tokenizer/detokenizer.h"
#include "worker/tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// CPU time of this thread, in seconds: shows the work apart from a busy machine's waiting.
double CpuNow() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("tokenizer_bench", "Single-thread tokenizer speed: load, encode, decode.");
  std::string* tok_path = flags.String("tokenizer", ".cache/tokenizer/tokenizer.json",
                                       "tokenizer.json to load");
  std::string* text_path = flags.String("text", "", "UTF-8 text file to encode (required)");
  int64_t* rounds = flags.Int("rounds", 5, "timed rounds per measurement (best is reported)");
  flags.ParseOrExit(argc, argv);
  if (text_path->empty()) flags.Fail("--text is required");
  if (*rounds < 1) flags.Fail("--rounds must be at least 1");

  std::ifstream in(*text_path, std::ios::binary);
  if (!in) flags.Fail("cannot open " + *text_path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  std::vector<std::string> lines;
  {
    size_t b = 0;
    while (b < text.size()) {
      size_t e = text.find('\n', b);
      e = e == std::string::npos ? text.size() : e + 1;
      lines.push_back(text.substr(b, e - b));
      b = e;
    }
  }

  double load_first = 0, load_best = 1e9, load_cpu_best = 1e9;
  std::unique_ptr<r1::tokenizer::Tokenizer> tok;
  for (int64_t r = 0; r < std::max<int64_t>(3, *rounds); ++r) {
    tok.reset();
    auto t0 = Clock::now();
    double c0 = CpuNow();
    auto t = r1::tokenizer::Tokenizer::FromFile(*tok_path);
    double s = Since(t0);
    load_cpu_best = std::min(load_cpu_best, CpuNow() - c0);
    if (!t.ok()) flags.Fail(std::string(t.status().message()));
    if (r == 0) load_first = s;
    load_best = std::min(load_best, s);
    tok = std::move(*t);
  }
  const double mb = text.size() / 1e6;
  std::printf("r1 load_ms first=%.1f best=%.1f best_cpu=%.1f\n", load_first * 1e3,
              load_best * 1e3, load_cpu_best * 1e3);

  std::vector<int32_t> ids;
  double cold = 0, best = 1e9, best_cpu = 1e9;
  for (int64_t r = 0; r <= *rounds; ++r) {
    auto t0 = Clock::now();
    double c0 = CpuNow();
    auto out = tok->Encode(text);
    double s = Since(t0);
    if (r > 0) best_cpu = std::min(best_cpu, CpuNow() - c0);
    if (!out.ok()) flags.Fail(std::string(out.status().message()));
    if (r == 0) {
      cold = s;
      ids = std::move(*out);
    } else {
      best = std::min(best, s);
    }
  }
  std::printf("r1 encode_doc bytes=%zu tokens=%zu cold_MBps=%.2f warm_MBps=%.2f warm_cpu_MBps=%.2f\n",
              text.size(), ids.size(), mb / cold, mb / best, mb / best_cpu);

  double line_best = 1e9;
  size_t line_tokens = 0;
  for (int64_t r = 0; r < *rounds; ++r) {
    auto t0 = Clock::now();
    size_t n = 0;
    for (const std::string& l : lines) n += tok->Encode(l)->size();
    line_best = std::min(line_best, Since(t0));
    line_tokens = n;
  }
  std::printf("r1 encode_lines lines=%zu tokens=%zu MBps=%.2f\n", lines.size(), line_tokens,
              mb / line_best);

  double dec_best = 1e9;
  size_t dec_len = 0;
  for (int64_t r = 0; r < *rounds; ++r) {
    auto t0 = Clock::now();
    auto s = tok->Decode(ids);
    dec_best = std::min(dec_best, Since(t0));
    dec_len = s->size();
  }
  std::printf("r1 decode_doc tokens=%zu out_bytes=%zu Mtok_per_s=%.2f roundtrip=%s\n", ids.size(),
              dec_len, ids.size() / dec_best / 1e6, dec_len == text.size() ? "same-size" : "differs");

  double inc_best = 1e9;
  for (int64_t r = 0; r < *rounds; ++r) {
    auto t0 = Clock::now();
    r1::tokenizer::IncrementalDetokenizer d(*tok);
    size_t n = 0;
    for (int32_t id : ids) n += d.Add(id).size();
    n += d.Finish().size();
    inc_best = std::min(inc_best, Since(t0));
    if (n != dec_len) flags.Fail("incremental detokenizer output differs from Decode");
  }
  std::printf("r1 decode_incremental tokens=%zu Mtok_per_s=%.2f\n", ids.size(),
              ids.size() / inc_best / 1e6);
  return 0;
}
