// Where one request's work runs: a strand (callbacks run one at a time, in order) and timers
// on it. An interface so that the exchange and its attempts run on a hand-driven strand and a
// fake clock in unit tests; AsioStrand is the real one (the HTTP session's strand).
#pragma once

#include <functional>
#include <memory>

#include <boost/asio/any_io_executor.hpp>

#include "common/clock.h"

namespace r1::gw {

// A one-shot timer on its strand. `fn` runs on the strand after `delay`, unless Cancel() or
// another Start() came first or the timer was destroyed.
class Timer {
 public:
  virtual ~Timer() = default;
  virtual void Start(Clock::Duration delay, std::function<void()> fn) = 0;
  virtual void Cancel() = 0;
};

class Strand {
 public:
  virtual ~Strand() = default;
  // Runs `fn` on the strand later; callable from any thread.
  virtual void Post(std::function<void()> fn) = 0;
  virtual std::unique_ptr<Timer> NewTimer() = 0;
};

// A Boost.Asio strand executor (copies keep the strand alive, not the object that made it).
class AsioStrand final : public Strand {
 public:
  explicit AsioStrand(boost::asio::any_io_executor executor) : executor_(std::move(executor)) {}
  void Post(std::function<void()> fn) override;
  std::unique_ptr<Timer> NewTimer() override;

 private:
  boost::asio::any_io_executor executor_;
};

}  // namespace r1::gw
