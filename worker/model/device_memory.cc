#include "worker/model/device_memory.h"

#if defined(R1_HAVE_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace r1::model {

DeviceMemory QueryDeviceMemory(const at::Device& device) {
  DeviceMemory m;
#if defined(R1_HAVE_CUDA)
  if (!device.is_cuda()) return m;
  c10::cuda::CUDAGuard guard(device);
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
    (void)cudaGetLastError();  // clear it: a failed query must not poison the next launch
    return m;
  }
  m.available = true;
  m.free_bytes = static_cast<int64_t>(free);
  m.total_bytes = static_cast<int64_t>(total);
  // Index 0 is the aggregate over pool types (StatType::AGGREGATE) in every libtorch version.
  auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
  m.allocated_bytes = stats.allocated_bytes[0].current;
  m.reserved_bytes = stats.reserved_bytes[0].current;
#else
  (void)device;
#endif
  return m;
}

}  // namespace r1::model
