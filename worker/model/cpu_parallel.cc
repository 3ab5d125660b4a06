#include "worker/model/cpu_parallel.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace r1::model {
namespace {

// The job word: generation (high 32 bits), closed flag (bit 31), workers joined (low 31 bits).
constexpr uint64_t kClosed = uint64_t{1} << 31;
constexpr uint64_t kJoinedMask = kClosed - 1;
// The caller's wait for the workers that joined: about 50 us of pauses, then yields.
constexpr int kSpins = 4000;
// An idle worker spins this long before it sleeps on the futex. A decode step's gaps between
// parallel calls (attention, norms, sampling, the engine's bookkeeping) pass 50 us often
// enough that a worker spinning 4000 pauses (about 50 us on a Xeon under KVM) slept and woke
// late: int8 decode on the 1.5B ran 5-7% slower than with 0.5 ms
// (bench/results/cpu-pool-spin.log). Timed, not counted: a pause lasts 10-140 cycles by CPU.
// The spin yields every 64 pauses: with another process busy on the cores, a spin that did not
// yield took their time from the caller's serial work and decode fell 7-19% below the short
// spin's; yielding kept it level there and kept the quiet machine's gain
// (bench/results/cpu-pool-spin-busy.log).
constexpr auto kIdleSpin = std::chrono::microseconds(500);

thread_local bool t_inside = false;

class Pool {
 public:
  explicit Pool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { Work(); });
  }
  ~Pool() {
    stop_.store(true);
    gen_.fetch_add(1);
    gen_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  int workers() const { return static_cast<int>(threads_.size()); }

  void Run(const std::function<void(int)>& fn, int max_workers) {
    const uint64_t gen = (job_.load() >> 32) + 1;
    fn_.store(&fn);
    max_workers_.store(max_workers);
    finished_.store(0);
    job_.store(gen << 32);      // open, nobody joined
    gen_.store(gen);            // wake the workers
    gen_.notify_all();
    t_inside = true;
    fn(0);
    t_inside = false;
    // Close the job; the count it had is who we wait for.
    const uint64_t joined = job_.fetch_or(kClosed) & kJoinedMask;
    for (int spin = 0; finished_.load(std::memory_order_acquire) < joined; ++spin) {
      if (spin < kSpins) _mm_pause();
      else std::this_thread::yield();  // a joined worker was parked: give it the core
    }
  }

 private:
  void Work() {
    uint64_t seen = 0;
    while (true) {
      uint64_t g = gen_.load();
      const auto until = std::chrono::steady_clock::now() + kIdleSpin;
      for (int spin = 1; g == seen; ++spin) {
        _mm_pause();
        g = gen_.load();
        if (spin % 64 == 0) {
          if (std::chrono::steady_clock::now() > until) break;
          std::this_thread::yield();  // a busy machine's other threads run; an idle one returns at once
        }
      }
      if (g == seen) {
        gen_.wait(seen);
        continue;
      }
      seen = g;
      if (stop_.load()) return;
      // Join if the job of generation g is still open and has room.
      uint64_t j = job_.load();
      int slot = -1;
      while ((j >> 32) == g && !(j & kClosed) && static_cast<int>(j & kJoinedMask) < max_workers_.load()) {
        if (job_.compare_exchange_weak(j, j + 1)) {
          slot = static_cast<int>(j & kJoinedMask) + 1;
          break;
        }
      }
      if (slot < 0) continue;
      t_inside = true;
      (*fn_.load())(slot);
      t_inside = false;
      finished_.fetch_add(1, std::memory_order_release);
    }
  }

  std::vector<std::thread> threads_;
  std::atomic<uint64_t> gen_{0}, job_{0};
  std::atomic<uint64_t> finished_{0};
  std::atomic<bool> stop_{false};
  // Set by the caller before it opens a job; read by the workers that join it.
  std::atomic<const std::function<void(int)>*> fn_{nullptr};
  std::atomic<int> max_workers_{0};
};

std::mutex g_mu;  // one caller at a time; guards g_pool's creation
Pool* g_pool = nullptr;

}  // namespace

int ParallelThreads() { return std::max(1, at::get_num_threads()); }

void ParallelRun(const std::function<void(int)>& fn, int threads) {
  if (threads <= 0) threads = ParallelThreads();
  std::unique_lock<std::mutex> lock(g_mu, std::try_to_lock);
  if (threads <= 1 || t_inside || !lock.owns_lock()) {
    fn(0);
    return;
  }
  // Sized once, for the cores libtorch uses; never destroyed (workers sleep when idle).
  if (!g_pool) g_pool = new Pool(std::max(1, ParallelThreads() - 1));
  g_pool->Run(fn, std::min(threads - 1, g_pool->workers()));
}

}  // namespace r1::model
