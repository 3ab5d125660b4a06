#include "worker/grammar/random_walk.h"

#include <bit>
#include <limits>

#include "worker/grammar/bitmask.h"

namespace r1::grammar {

int32_t NthSetBit(const uint32_t* bits, size_t words, uint64_t r) {
  for (size_t w = 0; w < words; ++w) {
    const uint64_t n = std::popcount(bits[w]);
    if (r >= n) {
      r -= n;
      continue;
    }
    uint32_t word = bits[w];
    for (uint64_t i = 0; i < r; ++i) word &= word - 1;
    return static_cast<int32_t>(w * 32 + std::countr_zero(word));
  }
  return -1;
}

namespace {

// The allowed token after which the fewest bytes complete the text.
int32_t Closest(const GrammarMatcher& m, const std::vector<uint32_t>& bits, uint64_t allowed,
                std::mt19937_64& rng) {
  const TokenVocabulary& vocab = m.grammar().vocabulary();
  std::vector<int32_t> candidates;
  for (int b = 0; b < 256; ++b) {
    const int32_t id = vocab.ByteToken(static_cast<uint8_t>(b));
    if (id >= 0 && TestBit(bits.data(), id)) candidates.push_back(id);
  }
  for (int i = 0; i < 64; ++i) candidates.push_back(NthSetBit(bits.data(), bits.size(), rng() % allowed));
  int32_t best = -1;
  uint32_t best_left = std::numeric_limits<uint32_t>::max();
  for (int32_t id : candidates) {
    GrammarMatcher next = m;
    if (!next.AcceptToken(id)) continue;
    const uint32_t left = next.MinBytesToComplete();
    if (left < best_left) best = id, best_left = left;
  }
  return best;
}

}  // namespace

WalkResult RandomWalk(GrammarMatcher& m, int32_t eos_id, std::mt19937_64& rng,
                      const WalkOptions& options) {
  WalkResult out;
  std::vector<uint32_t> bits(m.bitmask_words());
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  for (int step = 0;; ++step) {
    if (options.fill) options.fill(m, bits.data());
    else m.FillNextTokenBitmask(bits.data());
    const bool eos_ok = TestBit(bits.data(), eos_id);
    if (eos_ok) ClearBit(bits.data(), eos_id);
    uint64_t allowed = 0;
    for (uint32_t w : bits) allowed += std::popcount(w);
    if (eos_ok && (allowed == 0 || step >= options.max_tokens || coin(rng) < options.eos_probability)) {
      out.complete = m.AcceptToken(eos_id);
      return out;
    }
    if (allowed == 0) return out;  // a dead end: the tests report it
    const int32_t id = step >= options.max_tokens ? Closest(m, bits, allowed, rng)
                                                   : NthSetBit(bits.data(), bits.size(), rng() % allowed);
    if (id < 0 || !m.AcceptToken(id)) return out;
    out.ids.push_back(id);
    out.text += m.grammar().vocabulary().TokenBytes(id);
  }
}

}  // namespace r1::grammar
