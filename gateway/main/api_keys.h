// API keys for the /v1 routes: "Authorization: Bearer KEY", compared in constant time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace r1::gw {

// One key per line; blank lines and lines starting with '#' are skipped.
absl::StatusOr<std::vector<std::string>> LoadApiKeys(const std::string& path);

// Compares without an early exit, so the time taken does not tell how much matched.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// True when `authorization` is "Bearer K" for one of `keys` (every key is compared).
bool Authorized(std::string_view authorization, const std::vector<std::string>& keys);

}  // namespace r1::gw
