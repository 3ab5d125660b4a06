#include "worker/grammar/stack_closure.h"

#include <algorithm>

namespace r1::grammar {
namespace {

// More expansions than this from one stack means a pathological grammar; the rest are dropped
// (fewer texts allowed, never more).
constexpr size_t kMaxVisits = 4096;

class Expander {
 public:
  Expander(const Automaton& a, size_t floor, Expansion* out) : a_(a), floor_(floor), out_(out) {}

  void Visit(const Stack& s) {
    if (visits_++ > kMaxVisits) return;
    for (const Stack& seen : seen_)
      if (seen == s) return;
    seen_.push_back(s);
    const int32_t top = s.back();
    const uint8_t fl = a_.flags(top);
    if (fl & Automaton::kBytes) out_->ready.push_back(s);
    for (const Call& c : a_.calls(top)) {
      Stack pushed = s;
      pushed.back() = c.ret;
      pushed.push_back(c.callee_start);
      Visit(pushed);
    }
    if (fl & Automaton::kAccept) {
      if (s.size() <= floor_ || s.size() == 1) {
        out_->floor_done = true;
      } else {
        Stack popped(s.begin(), s.end() - 1);
        Visit(popped);
      }
    }
  }

 private:
  const Automaton& a_;
  size_t floor_;
  Expansion* out_;
  std::vector<Stack> seen_;
  size_t visits_ = 0;
};

}  // namespace

void Expand(const Automaton& a, const Stack& stack, size_t floor, Expansion* out) {
  Expander(a, floor, out).Visit(stack);
  SortUnique(&out->ready);
}

void SortUnique(std::vector<Stack>* stacks) {
  std::sort(stacks->begin(), stacks->end());
  stacks->erase(std::unique(stacks->begin(), stacks->end()), stacks->end());
}

}  // namespace r1::grammar
