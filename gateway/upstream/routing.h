// Which worker a request goes to, among those that may take it (--routing):
//  - least-connections: the fewest streams this gateway has open on it.
//  - load: the least loaded by the worker's own report and this gateway's streams:
//      load = max(streams open from here, running + waiting reported, brought up to date)
//             + KV-cache use (0..1)
//    The report covers every gateway's work but is up to one health interval old, so the
//    streams this gateway opened or closed on the worker since it came are added to it (a
//    request that ended since is not counted, one just sent is); the stream count is exact but
//    only this gateway's. The KV use breaks ties toward the emptier cache.
//  - prefix-aware (default): among the workers whose load is within the allowed imbalance of
//    the least loaded one (load <= min + max(balance_abs, balance_rel * min)), the one with the
//    longest predicted cached prefix of the prompt (prefix_index.h), then the least loaded.
//    Requests sharing a system prompt or a conversation's history thus meet their KV blocks
//    again, and no worker gets more than its share when one prefix is hot.
// Ties go uniformly at random. Pure functions: unit tested without workers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/random.h"

namespace r1::gw {

enum class RoutingPolicy { kLeastConnections, kLoad, kPrefixAware };
bool ParseRoutingPolicy(const std::string& name, RoutingPolicy* out);
const char* RoutingPolicyName(RoutingPolicy p);

struct RoutingOptions {
  RoutingPolicy policy = RoutingPolicy::kPrefixAware;
  double balance_abs = 2;    // requests a worker may be above the least loaded one
  double balance_rel = 0.5;  // ... or this share of the least loaded one's load, if more
};

// One worker as routing sees it.
struct RouteCandidate {
  int64_t streams = 0;  // this gateway's open streams on it
  // From its latest load report (zero before the first).
  uint32_t running = 0;
  uint32_t waiting = 0;
  double kv_usage = 0;  // blocks used / total
  int64_t streams_at_report = 0;  // `streams` when that report arrived
  // Leading prompt chunks predicted to be in its prefix cache (prefix-aware only).
  size_t prefix_chunks = 0;
};

double LoadOf(const RouteCandidate& c);

// The index in `candidates` to send the request to; -1 when empty.
int ChooseWorker(const RoutingOptions& options, const std::vector<RouteCandidate>& candidates,
                 Random* random);

}  // namespace r1::gw
