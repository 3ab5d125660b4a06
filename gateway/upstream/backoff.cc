#include "gateway/upstream/backoff.h"

#include <algorithm>

namespace r1::gw {

JitteredBackoff::JitteredBackoff(uint64_t base_ms, uint64_t cap_ms, Random* random)
    : base_ms_(std::max<uint64_t>(base_ms, 1)),
      cap_ms_(std::max(cap_ms, std::max<uint64_t>(base_ms, 1))),
      next_interval_(base_ms_),
      random_(random) {}

uint64_t JitteredBackoff::NextMs() {
  const uint64_t interval = next_interval_;
  // Double until the cap, without overflow.
  next_interval_ = next_interval_ < cap_ms_ / 2 ? next_interval_ * 2 : cap_ms_;
  return random_->Below(interval);
}

}  // namespace r1::gw
