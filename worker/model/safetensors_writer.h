// Writes a .safetensors file tensor by tensor, so that a multi-GB checkpoint never has to be
// in memory at once. Torch-free: the caller supplies each tensor's bytes through a callback.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/model/safetensors.h"

namespace r1::model {

struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  size_t nbytes() const;
};

// Writes `specs` in order to `path`; `fill(i, buffer)` must fill buffer (specs[i].nbytes()
// bytes) with tensor i's data.
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorSpec>& specs,
                              const std::function<void(size_t, void*)>& fill);

}  // namespace r1::model
