// Time comes in through an interface so that backoff, breakers and schedulers can be
// unit tested with a fake clock.
#pragma once

#include <atomic>
#include <chrono>

namespace r1 {

class Clock {
 public:
  using Duration = std::chrono::steady_clock::duration;
  using TimePoint = std::chrono::steady_clock::time_point;
  using WallTime = std::chrono::system_clock::time_point;
  virtual ~Clock() = default;
  // Monotonic time, for intervals and timeouts.
  virtual TimePoint Now() const = 0;
  // Calendar time, for timestamps people read (OpenAI's "created") and for gRPC deadlines.
  virtual WallTime WallNow() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
  WallTime WallNow() const override { return std::chrono::system_clock::now(); }
  static SystemClock* Get() {
    static SystemClock clock;
    return &clock;
  }
};

// A clock that moves only when told to. Its calendar time starts at `wall_start`.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(WallTime wall_start = WallTime(std::chrono::seconds(1'700'000'000)))
      : wall_start_(wall_start) {}
  TimePoint Now() const override { return TimePoint(Duration(now_.load())); }
  WallTime WallNow() const override {
    return wall_start_ + std::chrono::duration_cast<WallTime::duration>(Duration(now_.load()));
  }
  void Advance(Duration d) { now_ += d.count(); }

 private:
  WallTime wall_start_;
  std::atomic<Duration::rep> now_{0};
};

// Milliseconds between two time points, as a double.
inline double MillisBetween(Clock::TimePoint a, Clock::TimePoint b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace r1
