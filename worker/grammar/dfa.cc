#include "worker/grammar/dfa.h"

#include <algorithm>
#include <deque>
#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace r1::grammar {
namespace {

// Appends a range, merging it into the previous one when they touch with the same target.
void PushRange(std::vector<ByteRange>* out, int lo, int hi, int32_t to) {
  if (!out->empty() && out->back().to == to && out->back().hi + 1 == lo) {
    out->back().hi = static_cast<uint8_t>(hi);
    return;
  }
  out->push_back({static_cast<uint8_t>(lo), static_cast<uint8_t>(hi), to});
}

// Epsilon closure with a stamp per NFA state, so a set is built without clearing.
class Closure {
 public:
  explicit Closure(const Nfa& nfa) : nfa_(nfa), stamp_(nfa.size(), 0) {}

  // Sorted, closed set of the states reachable from `seeds` by epsilon edges.
  std::vector<int32_t> Of(const std::vector<int32_t>& seeds) {
    ++gen_;
    std::vector<int32_t> out, todo;
    for (int32_t s : seeds) Visit(s, &out, &todo);
    while (!todo.empty()) {
      int32_t s = todo.back();
      todo.pop_back();
      for (int32_t t : nfa_.state(s).eps) Visit(t, &out, &todo);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  void Visit(int32_t s, std::vector<int32_t>* out, std::vector<int32_t>* todo) {
    if (stamp_[s] == gen_) return;
    stamp_[s] = gen_;
    out->push_back(s);
    todo->push_back(s);
  }
  const Nfa& nfa_;
  std::vector<uint32_t> stamp_;
  uint32_t gen_ = 0;
};

// For a pair of range lists, calls fn(lo, hi, ta, tb) on each maximal byte interval where both
// targets are constant (-1 where a list has no range).
template <typename Fn>
void ZipRanges(const std::vector<ByteRange>& a, const std::vector<ByteRange>& b, Fn fn) {
  std::vector<int> cuts = {0, 256};
  for (const auto* v : {&a, &b})
    for (const ByteRange& r : *v) {
      cuts.push_back(r.lo);
      cuts.push_back(r.hi + 1);
    }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  size_t ia = 0, ib = 0;
  for (size_t k = 0; k + 1 < cuts.size(); ++k) {
    const int lo = cuts[k], hi = cuts[k + 1] - 1;
    while (ia < a.size() && a[ia].hi < lo) ++ia;
    while (ib < b.size() && b[ib].hi < lo) ++ib;
    const int32_t ta = ia < a.size() && a[ia].lo <= lo ? a[ia].to : -1;
    const int32_t tb = ib < b.size() && b[ib].lo <= lo ? b[ib].to : -1;
    fn(lo, hi, ta, tb);
  }
}

enum class ProductOp { kAnd, kAndNot };

Dfa Product(const Dfa& a, const Dfa& b, ProductOp op) {
  Dfa out;
  absl::flat_hash_map<std::pair<int32_t, int32_t>, int32_t> ids;
  std::deque<std::pair<int32_t, int32_t>> todo;
  auto id_of = [&](int32_t x, int32_t y) {
    auto [it, fresh] = ids.try_emplace({x, y}, static_cast<int32_t>(out.states.size()));
    if (fresh) {
      out.states.emplace_back();
      todo.push_back({x, y});
    }
    return it->second;
  };
  id_of(a.start, b.start);
  while (!todo.empty()) {
    auto [x, y] = todo.front();
    todo.pop_front();
    const int32_t self = ids[{x, y}];
    const bool acc_b = y >= 0 && b.states[y].accept;
    std::vector<ByteRange> ranges;
    static const std::vector<ByteRange> kNone;
    ZipRanges(a.states[x].bytes, y >= 0 ? b.states[y].bytes : kNone,
              [&](int lo, int hi, int32_t ta, int32_t tb) {
                if (ta < 0 || (op == ProductOp::kAnd && tb < 0)) return;
                PushRange(&ranges, lo, hi, id_of(ta, tb));
              });
    out.states[self].bytes = std::move(ranges);
    out.states[self].accept =
        a.states[x].accept && (op == ProductOp::kAnd ? acc_b : !acc_b);
  }
  return Trim(out);
}

}  // namespace

bool Dfa::HasCalls() const {
  for (const DfaState& s : states)
    if (!s.calls.empty()) return true;
  return false;
}

bool Dfa::Empty() const {
  for (const DfaState& s : states)
    if (s.accept) return false;
  return true;
}

absl::StatusOr<Dfa> Determinize(const Nfa& nfa, Frag f, size_t max_states) {
  if (nfa.overflow())
    return absl::ResourceExhaustedError(
        absl::StrCat("the grammar needs more than ", nfa.max_states(), " automaton states"));
  Closure closure(nfa);
  Dfa out;
  absl::flat_hash_map<std::vector<int32_t>, int32_t> ids;
  std::vector<std::vector<int32_t>> sets;
  auto id_of = [&](std::vector<int32_t> set) {
    auto [it, fresh] = ids.try_emplace(set, static_cast<int32_t>(sets.size()));
    if (fresh) sets.push_back(std::move(set));
    return it->second;
  };
  id_of(closure.Of({f.in}));
  for (size_t cur = 0; cur < sets.size(); ++cur) {
    if (sets.size() > max_states)
      return absl::ResourceExhaustedError(
          absl::StrCat("the grammar needs more than ", max_states, " automaton states"));
    DfaState st;
    // Byte edges: cut 0..255 at every range boundary, then one closure per piece.
    std::vector<int> cuts;
    std::map<int32_t, std::vector<int32_t>> calls;
    for (int32_t s : sets[cur]) {
      if (s == f.out) st.accept = true;
      for (const ByteRange& r : nfa.state(s).bytes) {
        cuts.push_back(r.lo);
        cuts.push_back(r.hi + 1);
      }
      for (const CallEdge& c : nfa.state(s).calls) calls[c.rule].push_back(c.to);
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    for (size_t k = 0; k + 1 < cuts.size(); ++k) {
      const int lo = cuts[k], hi = cuts[k + 1] - 1;
      std::vector<int32_t> targets;
      for (int32_t s : sets[cur])
        for (const ByteRange& r : nfa.state(s).bytes)
          if (r.lo <= lo && hi <= r.hi) targets.push_back(r.to);
      if (targets.empty()) continue;
      PushRange(&st.bytes, lo, hi, id_of(closure.Of(targets)));
    }
    for (auto& [rule, targets] : calls) st.calls.push_back({rule, id_of(closure.Of(targets))});
    out.states.push_back(std::move(st));
  }
  return out;
}

Dfa Intersect(const Dfa& a, const Dfa& b) { return Product(a, b, ProductOp::kAnd); }
Dfa Subtract(const Dfa& a, const Dfa& b) { return Product(a, b, ProductOp::kAndNot); }

Dfa Trim(const Dfa& d) {
  const size_t n = d.states.size();
  std::vector<char> reach(n, 0), live(n, 0);
  std::vector<int32_t> todo = {d.start};
  reach[d.start] = 1;
  while (!todo.empty()) {
    int32_t s = todo.back();
    todo.pop_back();
    auto visit = [&](int32_t t) {
      if (!reach[t]) reach[t] = 1, todo.push_back(t);
    };
    for (const ByteRange& r : d.states[s].bytes) visit(r.to);
    for (const CallEdge& c : d.states[s].calls) visit(c.to);
  }
  const bool calls = d.HasCalls();
  // Liveness by fixpoint (automata here are small; calls make every reachable state live).
  for (size_t s = 0; s < n; ++s) live[s] = reach[s] && (calls || d.states[s].accept);
  for (bool changed = !calls; changed;) {
    changed = false;
    for (size_t s = 0; s < n; ++s) {
      if (live[s] || !reach[s]) continue;
      for (const ByteRange& r : d.states[s].bytes)
        if (live[r.to]) {
          live[s] = 1, changed = true;
          break;
        }
    }
  }
  std::vector<int32_t> id(n, -1);
  Dfa out;
  for (size_t s = 0; s < n; ++s)
    if (live[s]) id[s] = static_cast<int32_t>(out.states.size()), out.states.emplace_back();
  if (id[d.start] < 0) {  // nothing accepted: one state that accepts nothing
    out.states.assign(1, DfaState{});
    out.start = 0;
    return out;
  }
  out.start = id[d.start];
  for (size_t s = 0; s < n; ++s) {
    if (id[s] < 0) continue;
    DfaState& o = out.states[id[s]];
    o.accept = d.states[s].accept;
    for (const ByteRange& r : d.states[s].bytes)
      if (id[r.to] >= 0) PushRange(&o.bytes, r.lo, r.hi, id[r.to]);
    for (const CallEdge& c : d.states[s].calls)
      if (id[c.to] >= 0) o.calls.push_back({c.rule, id[c.to]});
  }
  return out;
}

Dfa Minimize(const Dfa& d) {
  // Moore's refinement costs a round per step of the longest distinguishing string: long
  // counting chains (maxLength 1000) would take as many rounds. Those automata are left as
  // they are, which is still correct, only larger.
  constexpr size_t kMaxStates = 4096, kMaxRounds = 64;
  const size_t n = d.states.size();
  if (n > kMaxStates) return d;
  std::vector<int32_t> cls(n);
  for (size_t s = 0; s < n; ++s) cls[s] = d.states[s].accept ? 1 : 0;
  size_t count = 0;
  std::vector<int32_t> sig, next(n);
  for (size_t round = 0;; ++round) {
    if (round == kMaxRounds) return d;
    // A state's signature: its class and, per byte interval and per call, its target's class.
    absl::flat_hash_map<std::vector<int32_t>, int32_t> ids;
    for (size_t s = 0; s < n; ++s) {
      sig.assign(1, cls[s]);
      for (const ByteRange& r : d.states[s].bytes) {
        const int32_t t = cls[r.to];
        // Neighbouring ranges to the same class merge, so equal behaviour gives equal lists.
        if (sig.size() > 1 && sig.back() == t && sig[sig.size() - 2] + 1 == r.lo)
          sig[sig.size() - 2] = r.hi;
        else
          sig.insert(sig.end(), {r.lo, r.hi, t});
      }
      sig.push_back(-1);
      for (const CallEdge& c : d.states[s].calls) sig.insert(sig.end(), {c.rule, cls[c.to]});
      next[s] = ids.try_emplace(sig, static_cast<int32_t>(ids.size())).first->second;
    }
    cls.swap(next);
    if (ids.size() == count) break;
    count = ids.size();
  }
  Dfa out;
  out.states.resize(count);
  out.start = cls[d.start];
  std::vector<char> done(count, 0);
  for (size_t s = 0; s < n; ++s) {
    if (done[cls[s]]) continue;
    done[cls[s]] = 1;
    DfaState& o = out.states[cls[s]];
    o.accept = d.states[s].accept;
    for (const ByteRange& r : d.states[s].bytes) PushRange(&o.bytes, r.lo, r.hi, cls[r.to]);
    for (const CallEdge& c : d.states[s].calls) o.calls.push_back({c.rule, cls[c.to]});
  }
  return out;
}

Frag Embed(Nfa& nfa, const Dfa& d) {
  std::vector<int32_t> id(d.states.size());
  for (size_t s = 0; s < d.states.size(); ++s) id[s] = nfa.NewState();
  const int32_t out = nfa.NewState();
  for (size_t s = 0; s < d.states.size(); ++s) {
    const DfaState& st = d.states[s];
    for (const ByteRange& r : st.bytes) nfa.AddBytes(id[s], r.lo, r.hi, id[r.to]);
    for (const CallEdge& c : st.calls) nfa.AddCall(id[s], c.rule, id[c.to]);
    if (st.accept) nfa.AddEps(id[s], out);
  }
  return {id[d.start], out};
}

}  // namespace r1::grammar
