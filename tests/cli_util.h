// Running our programs from a test: a shell command's exit code and output, and the path of a
// program in build/bin (R1_BIN_DIR, set by tests/test_main.cc).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace r1::testing {

struct CmdResult {
  int exit_code;
  std::string out;
};

// Runs a shell command; captures stdout, and stderr too unless the command redirects it.
inline CmdResult RunCommand(const std::string& cmd) {
  CmdResult r{-1, ""};
  bool own_stderr = cmd.find("2>/dev/null") != std::string::npos;
  FILE* p = popen((own_stderr ? cmd : cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

inline std::string Bin(const std::string& name) {
  const char* b = std::getenv("R1_BIN_DIR");
  return std::string(b ? b : "bin") + "/" + name;
}

}  // namespace r1::testing
