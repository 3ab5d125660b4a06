// Work spread over libtorch's intra-op threads from code built without -fopenmp.
//
// at::parallel_for is a header template that runs serially unless the including file is built
// with -fopenmp (ATen/ParallelOpenMP.h defines INTRA_OP_PARALLEL only under _OPENMP), so our
// kernels would silently use one core. ParallelRun starts an OpenMP team through the runtime
// libtorch itself loaded (libgomp, found with dlsym): the same threads libtorch's ops use, so
// no second pool spins against them.
#pragma once

#include <functional>

namespace r1::model {

// Calls fn(thread, threads) once on each of `threads` threads (at::get_num_threads() when 0),
// the caller being thread 0, and returns when all are done. Serial (fn(0, 1)) when no OpenMP
// runtime is loaded or when called from inside a team.
void ParallelRun(const std::function<void(int, int)>& fn, int threads = 0);

// True when ParallelRun can use more than one thread.
bool ParallelAvailable();

}  // namespace r1::model
