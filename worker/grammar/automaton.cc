#include "worker/grammar/automaton.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace r1::grammar {
namespace {

// All rules in one numbering, before trimming.
struct Flat {
  std::vector<DfaState> states;
  std::vector<int32_t> rule_start;
  std::vector<std::vector<Call>> calls;  // per state, in global ids
};

Flat Flatten(const std::vector<Dfa>& rules) {
  Flat f;
  std::vector<int32_t> offset;
  for (const Dfa& d : rules) {
    offset.push_back(static_cast<int32_t>(f.states.size()));
    f.rule_start.push_back(offset.back() + d.start);
    f.states.insert(f.states.end(), d.states.begin(), d.states.end());
  }
  f.calls.resize(f.states.size());
  for (size_t r = 0; r < rules.size(); ++r) {
    for (size_t s = 0; s < rules[r].states.size(); ++s) {
      DfaState& st = f.states[offset[r] + s];
      for (ByteRange& b : st.bytes) b.to += offset[r];
      for (const CallEdge& c : rules[r].states[s].calls)
        f.calls[offset[r] + s].push_back({f.rule_start[c.rule], offset[r] + c.to});
      st.calls.clear();
    }
  }
  return f;
}

// States from which a complete text of their rule can be read (fixpoint: calls need the callee
// to be completable too).
std::vector<char> Live(const Flat& f) {
  const size_t n = f.states.size();
  std::vector<char> live(n, 0);
  for (size_t s = 0; s < n; ++s) live[s] = f.states[s].accept;
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t s = 0; s < n; ++s) {
      if (live[s]) continue;
      bool ok = false;
      for (const ByteRange& b : f.states[s].bytes) ok = ok || live[b.to];
      for (const Call& c : f.calls[s]) ok = ok || (live[c.callee_start] && live[c.ret]);
      if (ok) live[s] = 1, changed = true;
    }
  }
  return live;
}

// Rules (by start state) that can end without reading a byte.
std::vector<char> Nullable(const Flat& f, const std::vector<char>& live) {
  const size_t n = f.states.size();
  // empty[s]: state s can reach its rule's end without reading a byte.
  std::vector<char> empty(n, 0);
  for (size_t s = 0; s < n; ++s) empty[s] = live[s] && f.states[s].accept;
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t s = 0; s < n; ++s) {
      if (empty[s] || !live[s]) continue;
      for (const Call& c : f.calls[s])
        if (empty[c.callee_start] && empty[c.ret]) {
          empty[s] = 1, changed = true;
          break;
        }
    }
  }
  return empty;
}

absl::Status CheckLeftRecursion(const Flat& f, const std::vector<char>& live) {
  const std::vector<char> empty = Nullable(f, live);
  // From each rule's start, follow moves that read nothing: entering a callee, or stepping over
  // a callee that can be empty. Reaching the same start again is left recursion.
  for (int32_t start : f.rule_start) {
    if (!live[start]) continue;
    std::vector<char> seen(f.states.size(), 0);
    std::vector<int32_t> todo = {start};
    while (!todo.empty()) {
      const int32_t s = todo.back();
      todo.pop_back();
      for (const Call& c : f.calls[s]) {
        if (!live[c.callee_start] || !live[c.ret]) continue;
        if (c.callee_start == start)
          return absl::InvalidArgumentError(
              "the schema refers to itself before any text is read (left recursion)");
        for (int32_t t : {c.callee_start, empty[c.callee_start] ? c.ret : -1})
          if (t >= 0 && !seen[t]) seen[t] = 1, todo.push_back(t);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Automaton> Automaton::Link(const std::vector<Dfa>& rules, int32_t root_rule) {
  Flat f = Flatten(rules);
  const std::vector<char> live = Live(f);
  if (!live[f.rule_start[root_rule]])
    return absl::InvalidArgumentError("no value satisfies the schema");
  R1_RETURN_IF_ERROR(CheckLeftRecursion(f, live));

  // Keep the live states reachable from the root, through live edges only.
  const size_t n = f.states.size();
  std::vector<int32_t> id(n, -1);
  std::vector<int32_t> order = {f.rule_start[root_rule]};
  id[order[0]] = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const int32_t s = order[i];
    auto visit = [&](int32_t t) {
      if (id[t] < 0) id[t] = static_cast<int32_t>(order.size()), order.push_back(t);
    };
    for (const ByteRange& b : f.states[s].bytes)
      if (live[b.to]) visit(b.to);
    for (const Call& c : f.calls[s])
      if (live[c.callee_start] && live[c.ret]) visit(c.callee_start), visit(c.ret);
  }

  Automaton a;
  // Byte classes: bytes no range boundary separates behave the same everywhere.
  std::vector<char> cut(257, 0);
  cut[0] = cut[256] = 1;
  for (int32_t s : order)
    for (const ByteRange& b : f.states[s].bytes) cut[b.lo] = cut[b.hi + 1] = 1;
  int cls = -1;
  for (int b = 0; b < 256; ++b) {
    if (cut[b]) ++cls;
    a.byte_class_[b] = static_cast<uint8_t>(cls);
  }
  a.num_classes_ = cls + 1;

  const size_t m = order.size();
  a.next_.assign(m * a.num_classes_, -1);
  a.flags_.assign(m, 0);
  a.call_begin_.assign(m + 1, 0);
  for (size_t i = 0; i < m; ++i) {
    const int32_t s = order[i];
    uint8_t fl = f.states[s].accept ? kAccept : 0;
    for (const ByteRange& b : f.states[s].bytes) {
      if (!live[b.to]) continue;
      fl |= kBytes;
      for (int x = b.lo; x <= b.hi; ++x) a.next_[i * a.num_classes_ + a.byte_class_[x]] = id[b.to];
    }
    for (const Call& c : f.calls[s]) {
      if (!live[c.callee_start] || !live[c.ret]) continue;
      fl |= kCalls;
      a.calls_.push_back({id[c.callee_start], id[c.ret]});
    }
    a.flags_[i] = fl;
    a.call_begin_[i + 1] = static_cast<uint32_t>(a.calls_.size());
  }
  a.root_start_ = 0;

  // Fewest bytes to complete each state's rule: relax until nothing improves, revisiting only
  // the predecessors of states that improved.
  constexpr uint32_t kInf = std::numeric_limits<uint32_t>::max() / 4;
  a.min_complete_.assign(m, kInf);
  std::vector<std::vector<int32_t>> preds(m);
  for (size_t i = 0; i < m; ++i) {
    for (int c = 0; c < a.num_classes_; ++c)
      if (a.next_[i * a.num_classes_ + c] >= 0)
        preds[a.next_[i * a.num_classes_ + c]].push_back(static_cast<int32_t>(i));
    for (const Call& c : a.calls(static_cast<int32_t>(i))) {
      preds[c.callee_start].push_back(static_cast<int32_t>(i));
      preds[c.ret].push_back(static_cast<int32_t>(i));
    }
  }
  for (auto& p : preds) {
    std::sort(p.begin(), p.end());
    p.erase(std::unique(p.begin(), p.end()), p.end());
  }
  std::vector<int32_t> todo;
  for (size_t i = 0; i < m; ++i)
    if (a.flags_[i] & kAccept) a.min_complete_[i] = 0, todo.push_back(static_cast<int32_t>(i));
  while (!todo.empty()) {
    const int32_t t = todo.back();
    todo.pop_back();
    for (int32_t p : preds[t]) {
      uint32_t best = a.min_complete_[p];
      for (int c = 0; c < a.num_classes_; ++c) {
        const int32_t q = a.next_[p * a.num_classes_ + c];
        if (q >= 0) best = std::min(best, 1 + a.min_complete_[q]);
      }
      for (const Call& c : a.calls(p))
        best = std::min(best, a.min_complete_[c.callee_start] + a.min_complete_[c.ret]);
      if (best < a.min_complete_[p]) a.min_complete_[p] = best, todo.push_back(p);
    }
  }
  return a;
}

}  // namespace r1::grammar
