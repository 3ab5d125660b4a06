#include "worker/grammar/mask_classes.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"

namespace r1::grammar {
namespace {

// Partition refinement that only looks at states whose successors changed class in the last
// round (a long counting chain splits a few states per round, so a round costs little).
class Refiner {
 public:
  explicit Refiner(const Automaton& a) : a_(a), n_(static_cast<int32_t>(a.num_states())) {
    BuildPredecessors();
    InitialPartition();
  }

  // One Moore round: states of a class whose signatures (successor classes) differ are split.
  // False when nothing changed (the partition is stable).
  bool Round() {
    ++gen_;
    // Candidates: predecessors of the states that moved last round.
    std::vector<int32_t> cand;
    for (int32_t q : changed_)
      for (int32_t i = pred_begin_[q]; i < pred_begin_[q + 1]; ++i) {
        const int32_t p = preds_[i];
        if (stamp_[p] != gen_) stamp_[p] = gen_, cand.push_back(p);
      }
    std::sort(cand.begin(), cand.end(), [&](int32_t x, int32_t y) {
      return cls_[x] != cls_[y] ? cls_[x] < cls_[y] : x < y;
    });
    // Plan every split with the classes of the last round, then apply them all.
    std::vector<std::pair<int32_t, int32_t>> moves;  // (state, new class)
    int32_t next_id = static_cast<int32_t>(members_.size());
    for (size_t b = 0; b < cand.size();) {
      size_t e = b;
      while (e < cand.size() && cls_[cand[e]] == cls_[cand[b]]) ++e;
      const int32_t c = cls_[cand[b]];
      absl::flat_hash_map<std::vector<int32_t>, std::vector<int32_t>> groups;
      for (size_t i = b; i < e; ++i) groups[Signature(cand[i])].push_back(cand[i]);
      // The group that keeps the class id: the one the untouched members are in, or the
      // largest when every member is a candidate.
      const std::vector<int32_t>* keep = nullptr;
      if (e - b < members_[c].size()) {
        for (int32_t m : members_[c])
          if (stamp_[m] != gen_) {
            auto it = groups.find(Signature(m));
            keep = it == groups.end() ? nullptr : &it->second;
            break;
          }
      } else {
        for (const auto& [sig, g] : groups)
          if (!keep || g.size() > keep->size()) keep = &g;
      }
      for (const auto& [sig, g] : groups) {
        if (&g == keep) continue;
        for (int32_t q : g) moves.push_back({q, next_id});
        ++next_id;
      }
      b = e;
    }
    changed_.clear();
    members_.resize(next_id);
    for (auto [q, to] : moves) Move(q, to), changed_.push_back(q);
    return !changed_.empty();
  }

  MaskClasses Result() const { return {cls_, static_cast<int32_t>(members_.size())}; }

 private:
  // Successor classes per byte class, then per call the callee (exactly) and the return
  // state's class.
  std::vector<int32_t> Signature(int32_t q) const {
    std::vector<int32_t> sig;
    sig.reserve(a_.num_classes() + 4);
    for (int c = 0; c < a_.num_classes(); ++c) {
      const int32_t t = a_.NextByClass(q, c);
      sig.push_back(t < 0 ? -1 : cls_[t]);
    }
    for (const Call& call : a_.calls(q)) sig.insert(sig.end(), {call.callee_start, cls_[call.ret]});
    return sig;
  }

  void BuildPredecessors() {
    std::vector<std::pair<int32_t, int32_t>> edges;  // (successor, predecessor)
    for (int32_t q = 0; q < n_; ++q) {
      for (int c = 0; c < a_.num_classes(); ++c)
        if (const int32_t t = a_.NextByClass(q, c); t >= 0) edges.push_back({t, q});
      for (const Call& call : a_.calls(q)) edges.push_back({call.ret, q});
    }
    std::sort(edges.begin(), edges.end());
    edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
    pred_begin_.assign(n_ + 1, 0);
    for (auto [t, p] : edges) ++pred_begin_[t + 1];
    for (int32_t q = 0; q < n_; ++q) pred_begin_[q + 1] += pred_begin_[q];
    preds_.resize(edges.size());
    std::vector<int32_t> fill(pred_begin_.begin(), pred_begin_.end() - 1);
    for (auto [t, p] : edges) preds_[fill[t]++] = p;
  }

  // Round 0: what a state does with no byte read (flags; callees exactly).
  void InitialPartition() {
    cls_.assign(n_, 0);
    pos_.assign(n_, 0);
    stamp_.assign(n_, 0);
    absl::flat_hash_map<std::vector<int32_t>, int32_t> ids;
    for (int32_t q = 0; q < n_; ++q) {
      std::vector<int32_t> sig = {a_.flags(q)};
      for (const Call& c : a_.calls(q)) sig.push_back(c.callee_start);
      const int32_t id = ids.try_emplace(std::move(sig), static_cast<int32_t>(ids.size())).first->second;
      if (id == static_cast<int32_t>(members_.size())) members_.emplace_back();
      cls_[q] = id;
      pos_[q] = static_cast<int32_t>(members_[id].size());
      members_[id].push_back(q);
      changed_.push_back(q);
    }
  }

  void Move(int32_t q, int32_t to) {
    std::vector<int32_t>& from = members_[cls_[q]];
    const int32_t last = from.back();
    from[pos_[q]] = last;
    pos_[last] = pos_[q];
    from.pop_back();
    cls_[q] = to;
    pos_[q] = static_cast<int32_t>(members_[to].size());
    members_[to].push_back(q);
  }

  const Automaton& a_;
  const int32_t n_;
  std::vector<int32_t> pred_begin_, preds_;
  std::vector<int32_t> cls_, pos_;
  std::vector<std::vector<int32_t>> members_;
  std::vector<int32_t> changed_;
  std::vector<uint32_t> stamp_;
  uint32_t gen_ = 0;
};

}  // namespace

std::vector<MaskClasses> KEquivalenceClasses(const Automaton& a, const std::vector<size_t>& ks) {
  Refiner r(a);
  std::vector<MaskClasses> out;
  size_t round = 0;
  bool stable = false;
  for (size_t k : ks) {
    for (; round < k && !stable; ++round) stable = !r.Round();
    out.push_back(r.Result());
  }
  return out;
}

}  // namespace r1::grammar
