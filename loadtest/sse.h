// Incremental parser for a server-sent-events body: feed bytes as they arrive, get each
// event's data (the "data:" lines joined by '\n') once its blank line has been seen.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace r1::loadtest {

class SseParser {
 public:
  using OnEvent = std::function<void(const std::string& data)>;
  explicit SseParser(OnEvent on_event) : on_event_(std::move(on_event)) {}
  void Feed(std::string_view bytes);
  // Dispatches an event left without its closing blank line (at end of stream).
  void Finish();

 private:
  void Line(std::string_view line);
  OnEvent on_event_;
  std::string pending_;  // bytes of an unfinished line
  std::string data_;
  bool has_data_ = false;
};

}  // namespace r1::loadtest
