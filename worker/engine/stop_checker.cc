#include "worker/engine/stop_checker.h"

#include <algorithm>

namespace r1::engine {

StopChecker::StopChecker(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

StopChecker::Result StopChecker::Add(std::string_view text) {
  Result r;
  if (stops_.empty()) {
    r.text.assign(text);
    return r;
  }
  pending_.append(text);
  // The earliest stop string in the pending text ends the sequence.
  size_t best = std::string::npos;
  for (size_t i = 0; i < stops_.size(); ++i) {
    size_t pos = pending_.find(stops_[i]);
    if (pos != std::string::npos && (best == std::string::npos || pos < best)) {
      best = pos;
      r.matched = static_cast<int>(i);
    }
  }
  if (r.matched >= 0) {
    r.text = pending_.substr(0, best);
    pending_.clear();
    return r;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    size_t max_k = std::min(s.size() - 1, pending_.size());
    for (size_t k = max_k; k > hold; --k) {
      if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  r.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return r;
}

std::string StopChecker::Flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace r1::engine
