// Randomness comes in through an interface so that jitter and tie-breaking are testable.
#pragma once

#include <cstdint>
#include <mutex>
#include <random>

namespace r1 {

class Random {
 public:
  virtual ~Random() = default;
  // Uniform in [0, 2^64).
  virtual uint64_t Next() = 0;
  // Uniform in [0, n); n > 0.
  uint64_t Below(uint64_t n) { return Next() % n; }
  // Uniform in [0, 1).
  double Uniform01() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
};

// Thread-safe Mersenne twister seeded from the OS (or a fixed seed).
class SystemRandom final : public Random {
 public:
  SystemRandom() : gen_(std::random_device{}()) {}
  explicit SystemRandom(uint64_t seed) : gen_(seed) {}
  uint64_t Next() override {
    std::lock_guard<std::mutex> lock(mu_);
    return gen_();
  }

 private:
  std::mutex mu_;
  std::mt19937_64 gen_;
};

// Returns the given values in turn, then repeats the last one. For tests.
class FakeRandom final : public Random {
 public:
  explicit FakeRandom(std::initializer_list<uint64_t> values) : values_(values) {}
  uint64_t Next() override {
    if (values_.empty()) return 0;
    uint64_t v = values_[std::min(pos_, values_.size() - 1)];
    ++pos_;
    return v;
  }

 private:
  std::vector<uint64_t> values_;
  size_t pos_ = 0;
};

}  // namespace r1
