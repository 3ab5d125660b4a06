#include "gateway/upstream/strand.h"

#include <atomic>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace r1::gw {
namespace {

class AsioTimer final : public Timer {
 public:
  explicit AsioTimer(const boost::asio::any_io_executor& executor)
      : timer_(executor), generation_(std::make_shared<std::atomic<uint64_t>>(0)) {}
  ~AsioTimer() override { Cancel(); }

  void Start(Clock::Duration delay, std::function<void()> fn) override {
    // A wait that already expired cannot be cancelled in Asio (its handler is queued): the
    // generation number makes sure a stale handler does nothing.
    const uint64_t mine = ++*generation_;
    timer_.expires_after(delay);
    timer_.async_wait([gen = generation_, mine, fn = std::move(fn)](boost::system::error_code ec) {
      if (!ec && *gen == mine) fn();
    });
  }
  void Cancel() override {
    ++*generation_;
    timer_.cancel();
  }

 private:
  boost::asio::steady_timer timer_;
  // Shared with pending handlers. Atomic: the last owner of an attempt may drop it (and so
  // destroy this timer) on a gRPC thread.
  std::shared_ptr<std::atomic<uint64_t>> generation_;
};

}  // namespace

void AsioStrand::Post(std::function<void()> fn) { boost::asio::post(executor_, std::move(fn)); }

std::unique_ptr<Timer> AsioStrand::NewTimer() { return std::make_unique<AsioTimer>(executor_); }

}  // namespace r1::gw
