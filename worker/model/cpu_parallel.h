// A small pool of threads for our CPU kernels, built to share a busy machine.
//
// Two things ruled out the usual pools. at::parallel_for is a header template that runs
// serially unless the including file is built with -fopenmp (ATen/ParallelOpenMP.h defines
// INTRA_OP_PARALLEL only under _OPENMP), so the kernels silently used one core. libgomp's
// teams (reached with GOMP_parallel) do run in parallel, but their waits spin: with other
// processes on the 2 cores a decode step fell from 8-9 tok/s to ~1.3 (with
// OMP_WAIT_POLICY=passive: 3.6-5.5), because every one of its ~140 joins waits for a thread
// that the scheduler has parked.
//
// Here the caller never waits for a worker that has not started: fn runs on the caller at
// once and on each worker that wakes while the job is open; the work inside is shared through
// an atomic counter, so whoever runs takes it. After its own part the caller waits only for
// the workers that joined. Idle workers spin for half a millisecond (yielding to other
// threads as they go), then sleep on a futex.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>

namespace r1::model {

// Runs fn(slot) on the calling thread (slot 0) and on up to threads - 1 pool workers that
// join in time (slots 1, 2, ...); returns when every call has returned. Nobody is promised a
// call but the caller: fn must take its work from a shared counter until none is left.
// threads <= 0: at::get_num_threads(). Concurrent callers, and calls from inside fn, run
// serially on the calling thread.
void ParallelRun(const std::function<void(int)>& fn, int threads = 0);

// Threads ParallelRun may use (at::get_num_threads()).
int ParallelThreads();

// fn(begin, end) over [0, n) in chunks of `chunk`, each taken from a shared counter by
// whoever runs next (ParallelRun's caller and the workers that join, at most one per chunk),
// so a thread slowed by a busy core does less of the work instead of holding everyone up.
template <typename Fn>
void ParallelChunks(int64_t n, int64_t chunk, const Fn& fn) {
  if (n <= 0) return;
  std::atomic<int64_t> next{0};
  const int64_t threads = std::min<int64_t>(ParallelThreads(), (n + chunk - 1) / chunk);
  ParallelRun(
      [&](int) {
        for (int64_t b; (b = next.fetch_add(chunk)) < n;) fn(b, std::min(n, b + chunk));
      },
      static_cast<int>(threads));
}

}  // namespace r1::model
