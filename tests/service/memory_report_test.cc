// The memory figures of the load report (what the gateway's breaker reads): on CUDA the
// device's used memory less the KV cache's free blocks; on CPU the resident memory at start
// less the KV cache's free blocks, of the machine's; --memory-limit replaces the total.
#include "worker/service/memory_report.h"

#include <gtest/gtest.h>

namespace r1::service {
namespace {

engine::EngineLoad CudaLoad(int64_t blocks_used) {
  engine::EngineLoad l;
  l.device_memory_available = true;
  l.device_memory_total = 80'000'000'000;
  l.device_memory_used = 76'000'000'000;  // weights, activations and the whole KV cache
  l.kv_cache_bytes = 64'000'000'000;
  l.blocks_total = 1000;
  l.blocks_used = blocks_used;
  l.allocator_allocated = 70'000'000'000;
  l.allocator_reserved = 72'000'000'000;
  return l;
}

TEST(MemoryReportTest, CudaCountsTheFreeKvBlocksAsFree) {
  ReportedMemory idle = MemoryForReport(CudaLoad(0), 0, 0);
  EXPECT_EQ(idle.total, 80'000'000'000u);
  EXPECT_EQ(idle.used, 12'000'000'000u);  // 76 G used less 64 G of free blocks
  ReportedMemory quarter = MemoryForReport(CudaLoad(250), 0, 0);
  EXPECT_EQ(quarter.used, 28'000'000'000u);  // 16 G of blocks in use
  ReportedMemory full = MemoryForReport(CudaLoad(1000), 0, 0);
  EXPECT_EQ(full.used, 76'000'000'000u);  // everything: pressure at a 0.9 threshold
  EXPECT_GT(static_cast<double>(full.used), 0.9 * static_cast<double>(full.total));
  EXPECT_LT(static_cast<double>(idle.used), 0.9 * static_cast<double>(idle.total));
  // --memory-limit replaces the total only.
  ReportedMemory limited = MemoryForReport(CudaLoad(250), 40'000'000'000, 0);
  EXPECT_EQ(limited.total, 40'000'000'000u);
  EXPECT_EQ(limited.used, 28'000'000'000u);
}

TEST(MemoryReportTest, CpuReportsWhatLiveWorkHoldsNotThePeak) {
  // At start: 3 GB resident, of which the whole 1 GB KV cache (allocated and zeroed).
  const uint64_t at_start = 3'000'000'000;
  engine::EngineLoad l;  // no device figures
  l.blocks_total = 1000;
  l.kv_cache_bytes = 1'000'000'000;
  l.blocks_used = 0;
  ReportedMemory idle = MemoryForReport(l, 0, at_start);
  EXPECT_EQ(idle.used, 2'000'000'000u);  // weights and runtime; the cache's free blocks are free
  EXPECT_EQ(idle.total, MachineMemoryBytes());
  l.blocks_used = 600;
  EXPECT_EQ(MemoryForReport(l, 0, at_start).used, 2'600'000'000u);
  // The work ends: back to the idle figure, however high the process's resident memory went.
  l.blocks_used = 0;
  EXPECT_EQ(MemoryForReport(l, 0, at_start).used, idle.used);
  EXPECT_EQ(MemoryForReport(l, 123456789, at_start).total, 123456789u);
}

}  // namespace
}  // namespace r1::service
