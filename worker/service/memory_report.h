// The memory a worker reports (load report, metrics): torch-free and gRPC-free.
#pragma once

#include <cstdint>

#include "worker/engine/engine.h"

namespace r1::service {

// Resident memory of this process, and the machine's memory, in bytes.
uint64_t ResidentMemoryBytes();
uint64_t MachineMemoryBytes();

// The memory figures of the load report (device_memory_used_bytes / _total_bytes), which the
// gateway's breaker compares with --breaker-memory-threshold.
//  - CUDA: the device's used memory (cudaMemGetInfo, all processes) less the KV cache's free
//    blocks, of the device's memory. The cache is allocated whole at start-up (most of the free
//    memory, --kv-cache-fraction); its free blocks are room for new sequences, not pressure, so
//    "used" nears the total only as the cache fills.
//  - CPU: the process's resident memory, of the machine's memory.
//  - memory_limit > 0 replaces the total.
struct ReportedMemory {
  uint64_t used = 0;
  uint64_t total = 0;
};
ReportedMemory MemoryForReport(const engine::EngineLoad& load, int64_t memory_limit);

}  // namespace r1::service
