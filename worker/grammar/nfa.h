// Byte-level NFA with calls: the building material of every grammar. Edges consume a byte range,
// nothing (epsilon), or a whole rule (a call: the callee's language, then on to the target).
// Fragments have one way in and one way out and are glued with epsilon edges, Thompson style.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

namespace r1::grammar {

struct ByteRange {
  uint8_t lo, hi;  // inclusive
  int32_t to;
};
struct CallEdge {
  int32_t rule;
  int32_t to;
};

struct NfaState {
  std::vector<ByteRange> bytes;
  std::vector<int32_t> eps;
  std::vector<CallEdge> calls;
};

// A piece of automaton with one entry and one exit state.
struct Frag {
  int32_t in, out;
};

class Nfa {
 public:
  // max_states bounds the size (a schema that needs more is refused); overflow() says when it
  // was passed. States are still added, so builders never need to check midway.
  explicit Nfa(size_t max_states) : max_states_(max_states) {}

  int32_t NewState();
  void AddBytes(int32_t from, uint8_t lo, uint8_t hi, int32_t to);
  void AddEps(int32_t from, int32_t to);
  void AddCall(int32_t from, int32_t rule, int32_t to);

  size_t size() const { return states_.size(); }
  const NfaState& state(int32_t s) const { return states_[s]; }
  bool overflow() const { return states_.size() > max_states_; }
  size_t max_states() const { return max_states_; }

  // The empty string.
  Frag Empty();
  // No string at all (entry and exit are not connected).
  Frag Nothing();
  Frag Literal(std::string_view bytes);
  Frag Call(int32_t rule);
  Frag Seq(const std::vector<Frag>& parts);
  Frag Alt(const std::vector<Frag>& parts);
  Frag Opt(Frag f);
  Frag Star(Frag f);
  // make() builds a fresh copy each time it is called. max < 0: unbounded.
  Frag Repeat(const std::function<Frag()>& make, int64_t min, int64_t max);

 private:
  std::vector<NfaState> states_;
  size_t max_states_;
};

}  // namespace r1::grammar
