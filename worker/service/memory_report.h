// The memory a worker reports (load report, metrics): torch-free and gRPC-free.
#pragma once

#include <cstdint>

#include "worker/engine/engine.h"

namespace r1::service {

// Resident memory of this process, and the machine's memory, in bytes.
uint64_t ResidentMemoryBytes();
uint64_t MachineMemoryBytes();

// The memory figures of the load report (device_memory_used_bytes / _total_bytes), which the
// gateway's breaker compares with --breaker-memory-threshold: the memory held by live work.
// The KV cache is allocated whole at start-up; its free blocks are room for new sequences, not
// pressure, so "used" is what is resident less the free blocks' share, and nears the total
// only as the cache fills (and falls back when the work ends):
//  - CUDA: the device's used memory (cudaMemGetInfo, all processes) less the KV cache's free
//    blocks, of the device's memory.
//  - CPU: `resident_at_start` (the process's resident memory once the model was loaded, the
//    KV cache allocated and zeroed, and the warm-up done) less the KV cache's free blocks, of
//    the machine's memory. Not the live resident memory: with --keep-freed-memory it stays at
//    its peak for good, so a breaker opened by a burst would never close.
//  - memory_limit > 0 replaces the total.
struct ReportedMemory {
  uint64_t used = 0;
  uint64_t total = 0;
};
ReportedMemory MemoryForReport(const engine::EngineLoad& load, int64_t memory_limit,
                               uint64_t resident_at_start);

}  // namespace r1::service
