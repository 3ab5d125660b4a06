// Minimal leveled logging to stderr: `R1_LOG(INFO) << "loaded " << n << " tensors";`
// One write per line, so lines from different threads never interleave.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace r1 {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Parses "debug|info|warning|error"; false when unknown.
bool ParseLogLevel(std::string_view s, LogLevel* out);

// Escapes control characters and non-printable bytes, so that text from a request can
// never forge a log line. Long input is cut at max_len with a marker.
std::string EscapeForLog(std::string_view s, size_t max_len = 200);

class LogLine {
 public:
  LogLine(LogLevel level, const char* file, int line);
  ~LogLine();
  std::ostream& stream() { return os_; }

 private:
  std::ostringstream os_;
};

}  // namespace r1

#define R1_LOG_DEBUG ::r1::LogLevel::kDebug
#define R1_LOG_INFO ::r1::LogLevel::kInfo
#define R1_LOG_WARNING ::r1::LogLevel::kWarning
#define R1_LOG_ERROR ::r1::LogLevel::kError
#define R1_LOG(level)                                      \
  if (R1_LOG_##level < ::r1::GetLogLevel()) {              \
  } else                                                   \
    ::r1::LogLine(R1_LOG_##level, __FILE__, __LINE__).stream()
