// Whole r1-loadtest runs against a fake OpenAI streaming server on loopback: request counts,
// latency percentiles against injected delays, error classification, open loop, duration,
// and the r1-loadtest program itself (--json, exit codes).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/json.hpp>

#include "loadtest/report.h"
#include "loadtest/runner.h"
#include "tests/loadtest/fake_http_server.h"

namespace r1::loadtest {
namespace {

using testing::FakeBehaviour;
using testing::FakeHttpServer;

Options BaseOptions(const std::string& url) {
  Options o;
  o.target = url;
  o.prompt_len = LengthDist::Fixed(8);
  o.output_len = LengthDist::Fixed(5);
  o.timeout_s = 30;
  return o;
}

// Every request streams its tokens after a first-token delay of `first_token_ms`.
std::function<FakeBehaviour(int)> AllOk(int first_token_ms) {
  return [first_token_ms](int) {
    FakeBehaviour b;
    b.first_token_ms = first_token_ms;
    return b;
  };
}

LevelReport RunOne(const Options& o, Level level) {
  auto results = RunLoadTest(o, {level});
  EXPECT_TRUE(results.ok()) << results.status();
  if (!results.ok() || results->size() != 1) return {};
  return MakeReport((*results)[0]);
}

TEST(HttpLoad, PercentilesFollowInjectedDelays) {
  // One request in five waits 300 ms for its first token, the rest 40 ms; tokens come 10 ms
  // apart. Sleeps are never shorter than asked, so lower bounds are exact; the other checks
  // compare the two groups, or leave room for a busy machine.
  FakeHttpServer server([](int k) {
    FakeBehaviour b;
    b.first_token_ms = k % 5 == 0 ? 300 : 40;
    b.token_gap_ms = 10;
    b.chunked = k % 2 == 0;
    return b;
  });
  Options o = BaseOptions(server.url());
  o.requests = 100;
  LevelReport r = RunOne(o, Level{10, 0});
  EXPECT_EQ(r.sent, 100);
  EXPECT_EQ(r.succeeded, 100);
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(server.requests(), 100);
  EXPECT_EQ(server.connections(), 100);  // one per request without --keep-alive
  EXPECT_EQ(r.output_tokens, 500);  // from the usage chunks
  EXPECT_EQ(r.prompt_tokens, 700);
  EXPECT_EQ(r.ttft_ms.count, 100u);
  EXPECT_GE(r.ttft_ms.p50, 40);
  EXPECT_GE(r.ttft_ms.p90, 300);
  EXPECT_GE(r.ttft_ms.p99, 300);
  // A busy machine delays both groups alike: the median stays with the fast group.
  EXPECT_LT(r.ttft_ms.p50, r.ttft_ms.p90 - 150);
  EXPECT_EQ(r.itl_ms.count, 400u);  // 4 gaps in each of 100 streams
  EXPECT_GE(r.itl_ms.p50, 9);       // gaps are measured on arrival: a little jitter each way
  EXPECT_LT(r.itl_ms.p50, 250);
  // Four 10 ms gaps over four tokens after the first; arrival jitter can shorten the span a
  // little, never by much.
  EXPECT_EQ(r.tpot_ms.count, 100u);
  EXPECT_GE(r.tpot_ms.p50, 5);
  EXPECT_LT(r.tpot_ms.p50, 250);
  EXPECT_GE(r.e2e_ms.p50, 40 + 4 * 10);
  EXPECT_GE(r.e2e_ms.p99, 300 + 4 * 10);
  EXPECT_GT(r.requests_per_s, 0);
  EXPECT_NEAR(r.output_tokens_per_s, 500 / r.wall_s, 1e-6);
  // The requests were streaming chat requests for the asked number of tokens.
  for (const std::string& body : server.bodies()) {
    auto v = boost::json::parse(body).as_object();
    EXPECT_TRUE(v.at("stream").as_bool());
    EXPECT_EQ(v.at("max_tokens").as_int64(), 5);
  }
  for (const std::string& path : server.paths()) EXPECT_EQ(path, "/v1/chat/completions");
}

TEST(HttpLoad, ClassifiesErrorsByKind) {
  FakeHttpServer server([](int k) {
    FakeBehaviour b;
    switch (k % 10) {
      case 1: b.kind = FakeBehaviour::kHttpError; b.http_status = 503; break;
      case 2: b.kind = FakeBehaviour::kHttpError; b.http_status = 429; break;
      case 3: b.kind = FakeBehaviour::kErrorEvent; break;
      case 4: b.kind = FakeBehaviour::kCloseEarly; b.chunked = false; break;
      case 5: b.kind = FakeBehaviour::kBadJson; break;
      case 6: b.kind = FakeBehaviour::kHang; b.hang_ms = 4000; break;
      case 7: b.kind = FakeBehaviour::kCloseEarly; b.chunked = true; break;
      default: break;
    }
    return b;
  });
  Options o = BaseOptions(server.url());
  o.requests = 50;
  o.timeout_s = 1.5;  // the others end in milliseconds; the hanging ones need 4 s
  LevelReport r = RunOne(o, Level{5, 0});
  EXPECT_EQ(r.sent, 50);
  EXPECT_EQ(r.succeeded, 15);
  EXPECT_EQ(r.failed, 35);
  std::map<std::string, int64_t> want = {{"http_503", 5},     {"http_429", 5},
                                         {"stream_error", 5}, {"disconnected", 10},
                                         {"bad_response", 5}, {"timeout", 5}};
  EXPECT_EQ(r.errors, want);
  EXPECT_EQ(r.error_samples["http_503"], "fake failure 503");
  EXPECT_EQ(r.error_samples["stream_error"], "worker failed mid-stream");
  // Only succeeded requests are in the latency figures.
  EXPECT_EQ(r.e2e_ms.count, 15u);
  EXPECT_EQ(r.output_tokens, 15 * 5);
}

TEST(HttpLoad, KeepAliveReusesConnections) {
  FakeHttpServer server(AllOk(2));
  Options o = BaseOptions(server.url());
  o.keep_alive = true;
  o.requests = 40;
  LevelReport r = RunOne(o, Level{4, 0});
  EXPECT_EQ(r.succeeded, 40);
  EXPECT_EQ(server.requests(), 40);
  EXPECT_GE(server.connections(), 1);
  EXPECT_LE(server.connections(), 8);  // about one per slot, not one per request
}

TEST(HttpLoad, AStaleKeptAliveConnectionIsRetriedOnANewOne) {
  // The server keeps no connection open although its responses allow it: every reuse
  // finds the connection closed, and the request goes again on a new one.
  FakeHttpServer server([](int) {
    FakeBehaviour b;
    b.close_anyway = true;
    return b;
  });
  Options o = BaseOptions(server.url());
  o.keep_alive = true;
  o.requests = 20;
  LevelReport r = RunOne(o, Level{2, 0});
  EXPECT_EQ(r.succeeded, 20) << (r.errors.empty() ? "" : r.errors.begin()->first);
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(server.requests(), 20);
}

TEST(HttpLoad, ConnectionRefusedIsAConnectError) {
  int port;
  {
    FakeHttpServer probe([](int) { return FakeBehaviour{}; });
    port = probe.port();
  }  // closed now: nothing listens there
  Options o = BaseOptions("http://127.0.0.1:" + std::to_string(port));
  o.requests = 6;
  LevelReport r = RunOne(o, Level{3, 0});
  EXPECT_EQ(r.sent, 6);
  EXPECT_EQ(r.errors, (std::map<std::string, int64_t>{{"connect", 6}}));
}

TEST(HttpLoad, OpenLoopAndWarmupAndCompletionsEndpoint) {
  FakeHttpServer server(AllOk(5));
  Options o = BaseOptions(server.url());
  o.endpoint = "completions";
  o.api_key = "sk-test";
  o.requests = 40;
  o.warmup = 3;
  o.output_len = *LengthDist::Parse("list:2,3");
  LevelReport r = RunOne(o, Level{64, 40.0});
  EXPECT_EQ(r.sent, 40);
  EXPECT_EQ(r.succeeded, 40);
  EXPECT_EQ(server.requests(), 43);  // 3 warm-up requests are sent but not measured
  EXPECT_EQ(r.client_queued, 0);
  // 39 exponential gaps of mean 25 ms: below 0.2 s has a vanishing chance (and the seed is
  // fixed, so the draw is the same every run).
  EXPECT_GT(r.wall_s, 0.2);
  EXPECT_LT(r.wall_s, 20);
  for (const std::string& path : server.paths()) EXPECT_EQ(path, "/v1/completions");
  for (const std::string& auth : server.auth_headers()) EXPECT_EQ(auth, "Bearer sk-test");
  int64_t twos = 0;
  for (const std::string& body : server.bodies()) {
    auto v = boost::json::parse(body).as_object();
    int64_t mt = v.at("max_tokens").as_int64();
    EXPECT_TRUE(mt == 2 || mt == 3);
    twos += mt == 2;
    EXPECT_TRUE(v.contains("prompt"));
  }
  EXPECT_GT(twos, 0);
  EXPECT_LT(twos, 43);
}

TEST(HttpLoad, DurationModeStopsSendingAtTheDeadline) {
  FakeHttpServer server(AllOk(20));
  Options o = BaseOptions(server.url());
  o.duration_s = 0.6;
  LevelReport r = RunOne(o, Level{2, 0});
  EXPECT_GT(r.sent, 2);
  EXPECT_EQ(r.failed, 0);
  EXPECT_GE(r.wall_s, 0.6);
  // Each request takes at least 20 ms, so two slots finish at most 2 * 0.6 / 0.02 requests.
  EXPECT_LE(r.sent, 62);
}

// Runs a command, returning its exit status and standard output.
int RunCommand(const std::string& cmd, std::string* out) {
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// R1_BIN_DIR when set, else bin/ beside this test's own folder (BUILD/tests/..).
std::string Binary() {
  if (const char* dir = std::getenv("R1_BIN_DIR")) return std::string(dir) + "/r1-loadtest";
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  return std::filesystem::path(self).parent_path().parent_path().string() + "/bin/r1-loadtest";
}

TEST(LoadtestProgram, JsonReportAgainstTheFake) {
  FakeHttpServer server([](int k) {
    FakeBehaviour b;
    if (k % 4 == 3) {
      b.kind = FakeBehaviour::kHttpError;
      b.http_status = 500;
    }
    return b;
  });
  std::string out;
  int rc = RunCommand(Binary() + " --target " + server.url() +
                          " --requests 20 --concurrency 1,4 --output-len 3 --prompt-len "
                          "uniform:2:9 --json 2>/dev/null",
                      &out);
  ASSERT_EQ(rc, 0) << out;
  auto v = boost::json::parse(out).as_object();
  auto& runs = v.at("runs").as_array();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].at("concurrency").as_int64(), 1);
  EXPECT_EQ(runs[1].at("concurrency").as_int64(), 4);
  for (auto& run : runs) {
    EXPECT_EQ(run.at("sent").as_int64(), 20);
    EXPECT_EQ(run.at("succeeded").as_int64(), 15);
    EXPECT_EQ(run.at("errors").at("http_500").as_int64(), 5);
    EXPECT_EQ(run.at("output_tokens").as_int64(), 45);
    EXPECT_GT(run.at("ttft_ms").at("p50").to_number<double>(), 0);
  }
  EXPECT_EQ(v.at("prompt_len").as_string(), "uniform:2:9");
}

TEST(LoadtestProgram, PlotsLatencyVersusLoadWithGnuplot) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "gnuplot is not installed (apt-get install gnuplot-nox)";
  }
  FakeHttpServer server([](int) { return FakeBehaviour{}; });
  std::string png = ::testing::TempDir() + "/r1-loadtest-plot-" + std::to_string(getpid()) + ".png";
  std::string out;
  ASSERT_EQ(RunCommand(Binary() + " --target " + server.url() + " --requests 6 --concurrency 1,3 "
                           "--output-len 2 --plot " + png + " 2>&1", &out), 0) << out;
  std::ifstream f(png, std::ios::binary);
  char magic[8] = {};
  f.read(magic, 8);
  EXPECT_EQ(std::string(magic + 1, 3), "PNG");
  std::ifstream dat(png + ".dat");
  std::string line;
  int rows = 0;
  while (std::getline(dat, line)) rows += !line.empty() && line[0] != '#';
  EXPECT_EQ(rows, 2);  // one point per level
  std::remove(png.c_str());
  std::remove((png + ".dat").c_str());
}

// docs/operations.md's flag table lists every flag of --help with the same default.
TEST(LoadtestProgram, OperationsDocListsEveryFlagWithItsDefault) {
  const char* src = std::getenv("R1_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  std::ifstream doc(std::string(src) + "/docs/operations.md");
  ASSERT_TRUE(doc.good());
  std::stringstream ss;
  ss << doc.rdbuf();
  std::string text = ss.str();
  std::string help;
  ASSERT_EQ(RunCommand(Binary() + " --help", &help), 0);
  std::istringstream lines(help);
  std::string line;
  int flags = 0;
  while (std::getline(lines, line)) {
    // "  --name (type, default VALUE)"
    size_t dash = line.find("  --");
    size_t def = line.find(", default ");
    if (dash != 0 || def == std::string::npos) continue;
    std::string name = line.substr(4, line.find(' ', 4) - 4);
    std::string value = line.substr(def + 10, line.rfind(')') - def - 10);
    ++flags;
    std::string row = "| `--" + name + "` | `" + value + "` |";
    EXPECT_NE(text.find(row), std::string::npos) << "docs/operations.md lacks the row " << row;
  }
  EXPECT_GE(flags, 15);
}

TEST(LoadtestProgram, BadFlagsAndDeadTargets) {
  std::string out;
  EXPECT_EQ(RunCommand(Binary() + " --help", &out), 0);
  EXPECT_NE(out.find("--concurrency"), std::string::npos);
  for (const char* args : {"--target nowhere", "--bogus 1", "--prompt-len uniform:9:1",
                           "--concurrency 0", "--rate=-1", "--concurrency 1,2 --rate 1,2",
                           "--endpoint embeddings", "--output-len 0"}) {
    out.clear();
    EXPECT_EQ(RunCommand(Binary() + " " + args + " 2>&1", &out), 2) << args;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << args << ": " << out;
  }
  out.clear();
  // Every request failing is exit status 1, with the report still printed.
  EXPECT_EQ(RunCommand(Binary() + " --target http://127.0.0.1:1 --requests 2 2>/dev/null", &out), 1);
  EXPECT_NE(out.find("connect"), std::string::npos);
}

}  // namespace
}  // namespace r1::loadtest
