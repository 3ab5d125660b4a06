#include "worker/model/cpu_parallel.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

namespace r1::model {
namespace {

using GompParallelFn = void (*)(void (*)(void*), void*, unsigned, unsigned);
using OmpIntFn = int (*)();

struct Runtime {
  GompParallelFn parallel = nullptr;
  OmpIntFn thread_num = nullptr, num_threads = nullptr, in_parallel = nullptr;
};

const Runtime& Omp() {
  static const Runtime rt = [] {
    Runtime r;
    r.parallel = reinterpret_cast<GompParallelFn>(dlsym(RTLD_DEFAULT, "GOMP_parallel"));
    r.thread_num = reinterpret_cast<OmpIntFn>(dlsym(RTLD_DEFAULT, "omp_get_thread_num"));
    r.num_threads = reinterpret_cast<OmpIntFn>(dlsym(RTLD_DEFAULT, "omp_get_num_threads"));
    r.in_parallel = reinterpret_cast<OmpIntFn>(dlsym(RTLD_DEFAULT, "omp_in_parallel"));
    if (!r.thread_num || !r.num_threads || !r.in_parallel) r.parallel = nullptr;
    return r;
  }();
  return rt;
}

struct Call {
  const std::function<void(int, int)>* fn;
};

void Trampoline(void* p) {
  const Runtime& rt = Omp();
  (*static_cast<Call*>(p)->fn)(rt.thread_num(), rt.num_threads());
}

}  // namespace

bool ParallelAvailable() { return Omp().parallel != nullptr && at::get_num_threads() > 1; }

void ParallelRun(const std::function<void(int, int)>& fn, int threads) {
  const Runtime& rt = Omp();
  if (threads <= 0) threads = at::get_num_threads();
  if (threads <= 1 || !rt.parallel || rt.in_parallel()) {
    fn(0, 1);
    return;
  }
  Call call{&fn};
  rt.parallel(&Trampoline, &call, static_cast<unsigned>(threads), 0);
}

}  // namespace r1::model
