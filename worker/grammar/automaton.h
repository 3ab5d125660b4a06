// The runtime form of a grammar: every rule's DFA linked into one table of states, so that a
// matcher's state is a stack of state ids (the top is where the text is; each one below is
// where its rule resumes once the rule above completes). Immutable once linked.
//
// Linking drops every state from which no complete text can follow (so a matcher never walks
// into a dead end), refuses left recursion (a rule that can call itself before reading a byte),
// and numbers bytes by equivalence class so that a transition is one table lookup.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "worker/grammar/dfa.h"

namespace r1::grammar {

struct Call {
  int32_t callee_start;  // the called rule's start state
  int32_t ret;           // where the caller resumes
};

class Automaton {
 public:
  enum Flag : uint8_t {
    kAccept = 1,  // the state's rule may end here
    kCalls = 2,   // the state calls rules
    kBytes = 4,   // the state reads bytes
  };

  // rules[r] is rule r's DFA (calls name rules by index); the text is one root_rule.
  static absl::StatusOr<Automaton> Link(const std::vector<Dfa>& rules, int32_t root_rule);

  int32_t Next(int32_t q, uint8_t b) const { return next_[q * num_classes_ + byte_class_[b]]; }
  int32_t NextByClass(int32_t q, int byte_class) const { return next_[q * num_classes_ + byte_class]; }
  uint8_t flags(int32_t q) const { return flags_[q]; }
  std::span<const Call> calls(int32_t q) const {
    return {calls_.data() + call_begin_[q], calls_.data() + call_begin_[q + 1]};
  }
  int32_t root_start() const { return root_start_; }
  // Fewest bytes that complete state q's rule (calls included).
  uint32_t min_complete(int32_t q) const { return min_complete_[q]; }
  size_t num_states() const { return flags_.size(); }
  int num_classes() const { return num_classes_; }

 private:
  uint8_t byte_class_[256] = {};
  int num_classes_ = 0;
  std::vector<int32_t> next_;  // num_states x num_classes, -1 for none
  std::vector<uint8_t> flags_;
  std::vector<uint32_t> call_begin_;
  std::vector<Call> calls_;
  std::vector<uint32_t> min_complete_;
  int32_t root_start_ = 0;
};

}  // namespace r1::grammar
