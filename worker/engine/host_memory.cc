#include "worker/engine/host_memory.h"

#include <limits>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace r1::engine {

bool KeepFreedHostMemory() {
#if defined(__GLIBC__)
  // One arena: a block freed by the engine thread is found again by it (per-thread arenas are
  // at most 64 MiB each, so their large blocks go to mmap whatever M_MMAP_MAX says).
  bool ok = mallopt(M_ARENA_MAX, 1) == 1;
  ok = mallopt(M_MMAP_MAX, 0) == 1 && ok;
  ok = mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max()) == 1 && ok;
  return ok;
#else
  return false;
#endif
}

}  // namespace r1::engine
