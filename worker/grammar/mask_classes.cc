#include "worker/grammar/mask_classes.h"

#include "absl/container/flat_hash_map.h"

namespace r1::grammar {

MaskClasses KEquivalenceClasses(const Automaton& a, size_t k) {
  int32_t count = 0;
  int32_t* num_classes = &count;
  const size_t n = a.num_states();
  const int nc = a.num_classes();
  // Round 0: what a state does with no byte read (flags; callees exactly).
  std::vector<int32_t> cls(n);
  {
    absl::flat_hash_map<std::vector<int32_t>, int32_t> ids;
    for (size_t q = 0; q < n; ++q) {
      std::vector<int32_t> sig = {a.flags(static_cast<int32_t>(q))};
      for (const Call& c : a.calls(static_cast<int32_t>(q))) sig.push_back(c.callee_start);
      cls[q] = ids.try_emplace(std::move(sig), static_cast<int32_t>(ids.size())).first->second;
    }
    *num_classes = static_cast<int32_t>(ids.size());
  }
  // Round r: round r-1's class, the classes reached by each byte, and, per call, the callee
  // (exactly) with the class of the return state.
  std::vector<int32_t> sig;
  for (size_t round = 0; round < k; ++round) {
    absl::flat_hash_map<std::vector<int32_t>, int32_t> ids;
    std::vector<int32_t> next(n);
    for (size_t q = 0; q < n; ++q) {
      const int32_t s = static_cast<int32_t>(q);
      sig.assign(1, cls[q]);
      for (int c = 0; c < nc; ++c) {
        const int32_t t = a.NextByClass(s, c);
        sig.push_back(t < 0 ? -1 : cls[t]);
      }
      for (const Call& c : a.calls(s)) {
        sig.push_back(c.callee_start);
        sig.push_back(cls[c.ret]);
      }
      next[q] = ids.try_emplace(sig, static_cast<int32_t>(ids.size())).first->second;
    }
    cls.swap(next);
    const int32_t count = static_cast<int32_t>(ids.size());
    if (count == *num_classes) break;  // stable: more rounds change nothing
    *num_classes = count;
  }
  return MaskClasses{std::move(cls), count};
}

}  // namespace r1::grammar
