// A retry budget as Envoy's: at most max(min_concurrency, percent% of requests in flight)
// retries may be outstanding at once, so retries cannot multiply an overload. A retry is
// outstanding while its Token lives: from the decision to retry until its attempt gets a
// first message or the request ends.
//
// The budget does not count requests itself: it reads the gateway's own counter of requests
// in flight (the one that admission and draining use), so there is one source of truth.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>

namespace r1::gw {

class RetryBudget {
 public:
  // `requests_in_flight` must outlive the budget and every token.
  RetryBudget(double percent, uint32_t min_concurrency,
              const std::atomic<int64_t>* requests_in_flight)
      : percent_(percent), min_concurrency_(min_concurrency), requests_(requests_in_flight) {}

  // One outstanding retry; gives its place back when destroyed or reset.
  class Token {
   public:
    Token(Token&& o) noexcept : budget_(o.budget_) { o.budget_ = nullptr; }
    Token& operator=(Token&& o) noexcept {
      if (this != &o) {
        Release();
        budget_ = o.budget_;
        o.budget_ = nullptr;
      }
      return *this;
    }
    Token(const Token&) = delete;
    Token& operator=(const Token&) = delete;
    ~Token() { Release(); }

   private:
    friend class RetryBudget;
    explicit Token(RetryBudget* budget) : budget_(budget) {}
    void Release() {
      if (budget_) --budget_->active_retries_;
      budget_ = nullptr;
    }
    RetryBudget* budget_;
  };

  // A token when the budget has room, else nothing.
  std::optional<Token> TryStartRetry() {
    const int64_t limit = std::max<int64_t>(
        min_concurrency_, static_cast<int64_t>(percent_ / 100.0 * requests_->load()));
    int64_t cur = active_retries_.load();
    while (cur < limit) {
      if (active_retries_.compare_exchange_weak(cur, cur + 1)) return Token(this);
    }
    return std::nullopt;
  }
  int64_t active_retries() const { return active_retries_; }

 private:
  const double percent_;
  const uint32_t min_concurrency_;
  const std::atomic<int64_t>* requests_;
  std::atomic<int64_t> active_retries_{0};
};

}  // namespace r1::gw
