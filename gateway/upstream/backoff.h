// Full-jitter exponential backoff, as Envoy's JitteredExponentialBackOffStrategy: the n-th
// delay is uniform in [0, min(cap, base * 2^(n-1))). Defaults (25 ms base, 250 ms cap) are
// Envoy's router retry defaults.
#pragma once

#include <cstdint>

#include "common/random.h"

namespace r1::gw {

class JitteredBackoff {
 public:
  JitteredBackoff(uint64_t base_ms, uint64_t cap_ms, Random* random);
  // The next delay in milliseconds.
  uint64_t NextMs();
  void Reset() { next_interval_ = base_ms_; }

 private:
  uint64_t base_ms_;
  uint64_t cap_ms_;
  uint64_t next_interval_;
  Random* random_;
};

}  // namespace r1::gw
