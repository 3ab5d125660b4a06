// Least connections: the index of the smallest load, ties broken uniformly at random.
#pragma once

#include <cstdint>
#include <vector>

#include "common/random.h"

namespace r1::gw {

// -1 when `loads` is empty.
int PickLeastLoaded(const std::vector<int64_t>& loads, Random* random);

}  // namespace r1::gw
