#include "worker/service/memory_report.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>

namespace r1::service {

uint64_t ResidentMemoryBytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

uint64_t MachineMemoryBytes() {
  return static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
         static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

ReportedMemory MemoryForReport(const engine::EngineLoad& load, int64_t memory_limit,
                               uint64_t resident_at_start) {
  int64_t free_kv = 0;
  if (load.blocks_total > 0) {
    int64_t free_blocks =
        std::clamp<int64_t>(load.blocks_total - load.blocks_used, 0, load.blocks_total);
    free_kv = static_cast<int64_t>(static_cast<double>(load.kv_cache_bytes) *
                                   static_cast<double>(free_blocks) /
                                   static_cast<double>(load.blocks_total));
  }
  const int64_t used = load.device_memory_available ? load.device_memory_used
                                                    : static_cast<int64_t>(resident_at_start);
  ReportedMemory m;
  m.used = static_cast<uint64_t>(std::max<int64_t>(used - free_kv, 0));
  m.total = load.device_memory_available
                ? static_cast<uint64_t>(std::max<int64_t>(load.device_memory_total, 0))
                : MachineMemoryBytes();
  if (memory_limit > 0) m.total = static_cast<uint64_t>(memory_limit);
  return m;
}

}  // namespace r1::service
