#include "gateway/upstream/balancer.h"

namespace r1::gw {

int PickLeastLoaded(const std::vector<int64_t>& loads, Random* random) {
  int best = -1;
  int ties = 0;
  for (int i = 0; i < static_cast<int>(loads.size()); ++i) {
    if (best < 0 || loads[i] < loads[best]) {
      best = i;
      ties = 1;
    } else if (loads[i] == loads[best]) {
      // Reservoir sampling over the tied ones: each ends up chosen with probability 1/ties.
      ++ties;
      if (random->Below(ties) == 0) best = i;
    }
  }
  return best;
}

}  // namespace r1::gw
