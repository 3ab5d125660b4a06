// Stop strings on detokenized text. Text that could be the start of a stop string is held back
// until it is known not to be one; the stop string itself is never returned. Torch-free.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace r1::engine {

class StopChecker {
 public:
  explicit StopChecker(std::vector<std::string> stops = {});

  struct Result {
    std::string text;  // safe to send now
    int matched = -1;  // index of the stop string found, or -1
  };
  // Adds newly decoded text.
  Result Add(std::string_view text);
  // At the end of the sequence (no stop string matched): the text held back so far.
  std::string Flush();

  const std::vector<std::string>& stops() const { return stops_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
};

}  // namespace r1::engine
