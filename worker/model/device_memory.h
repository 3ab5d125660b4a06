// Device memory as the driver and libtorch's caching allocator see it, for load reports,
// metrics and sizing the KV cache. Built everywhere; on a CPU device (or a libtorch without
// CUDA) `available` is false and the figures are zero.
#pragma once

#include <ATen/Device.h>

#include <cstdint>

namespace r1::model {

struct DeviceMemory {
  bool available = false;  // the figures below are real (a CUDA device)
  int64_t free_bytes = 0;       // cudaMemGetInfo: free on the device (all processes)
  int64_t total_bytes = 0;      // cudaMemGetInfo: the device's memory
  int64_t allocated_bytes = 0;  // libtorch's caching allocator: in live tensors
  int64_t reserved_bytes = 0;   // libtorch's caching allocator: held from the driver
  int64_t used_bytes() const { return total_bytes - free_bytes; }
};

DeviceMemory QueryDeviceMemory(const at::Device& device);

}  // namespace r1::model
