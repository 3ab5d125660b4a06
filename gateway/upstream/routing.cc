#include "gateway/upstream/routing.h"

#include <algorithm>

#include "gateway/upstream/balancer.h"

namespace r1::gw {
namespace {

// The best of `ids` by `better` (a strict order), ties uniformly at random (reservoir sampling).
template <typename Better, typename Same>
int PickBest(const std::vector<int>& ids, Better better, Same same, Random* random) {
  int best = -1;
  int ties = 0;
  for (int i : ids) {
    if (best < 0 || better(i, best)) {
      best = i;
      ties = 1;
    } else if (same(i, best) && random->Below(++ties) == 0) {
      best = i;
    }
  }
  return best;
}

}  // namespace

bool ParseRoutingPolicy(const std::string& name, RoutingPolicy* out) {
  if (name == "least-connections") {
    *out = RoutingPolicy::kLeastConnections;
  } else if (name == "load") {
    *out = RoutingPolicy::kLoad;
  } else if (name == "prefix-aware") {
    *out = RoutingPolicy::kPrefixAware;
  } else {
    return false;
  }
  return true;
}

const char* RoutingPolicyName(RoutingPolicy p) {
  switch (p) {
    case RoutingPolicy::kLeastConnections: return "least-connections";
    case RoutingPolicy::kLoad: return "load";
    case RoutingPolicy::kPrefixAware: return "prefix-aware";
  }
  return "?";
}

double LoadOf(const RouteCandidate& c) {
  const double reported = std::max<double>(
      0, static_cast<double>(c.running) + static_cast<double>(c.waiting) +
             static_cast<double>(c.streams - c.streams_at_report));
  return std::max(static_cast<double>(c.streams), reported) + std::clamp(c.kv_usage, 0.0, 1.0);
}

int ChooseWorker(const RoutingOptions& options, const std::vector<RouteCandidate>& candidates,
                 Random* random) {
  if (candidates.empty()) return -1;
  if (options.policy == RoutingPolicy::kLeastConnections) {
    std::vector<int64_t> streams;
    for (const RouteCandidate& c : candidates) streams.push_back(c.streams);
    return PickLeastLoaded(streams, random);
  }
  std::vector<double> load;
  for (const RouteCandidate& c : candidates) load.push_back(LoadOf(c));
  std::vector<int> allowed;
  if (options.policy == RoutingPolicy::kLoad) {
    for (int i = 0; i < static_cast<int>(candidates.size()); ++i) allowed.push_back(i);
    return PickBest(
        allowed, [&](int a, int b) { return load[a] < load[b]; },
        [&](int a, int b) { return load[a] == load[b]; }, random);
  }
  const double min_load = *std::min_element(load.begin(), load.end());
  const double slack = std::max(options.balance_abs, options.balance_rel * min_load);
  for (int i = 0; i < static_cast<int>(candidates.size()); ++i)
    if (load[i] <= min_load + slack) allowed.push_back(i);
  const auto chunks = [&](int i) { return candidates[i].prefix_chunks; };
  return PickBest(
      allowed,
      [&](int a, int b) {
        return chunks(a) != chunks(b) ? chunks(a) > chunks(b) : load[a] < load[b];
      },
      [&](int a, int b) { return chunks(a) == chunks(b) && load[a] == load[b]; }, random);
}

}  // namespace r1::gw
