// Shared secrets sent as "Authorization: Bearer KEY" and compared in constant time: the
// gateway's API keys (/v1 routes) and the worker's token (--auth-token-file).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace r1 {

// One key per line; blank lines and lines starting with '#' are skipped. `what` names the
// file in errors ("API key file", "token file").
absl::StatusOr<std::vector<std::string>> LoadKeyFile(const std::string& path,
                                                     const std::string& what = "API key file");

// Compares without an early exit, so the time taken does not tell how much matched.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// True when `authorization` is "Bearer K" for one of `keys` (every key is compared).
bool Authorized(std::string_view authorization, const std::vector<std::string>& keys);

}  // namespace r1
