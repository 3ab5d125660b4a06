// Prompt text of about N tokens: N common English words, each one token in the Qwen
// byte-level BPE vocabulary (a space followed by a lower-case word).
#pragma once

#include <cstdint>
#include <string>

#include "common/random.h"

namespace r1::loadtest {

std::string MakePrompt(int64_t words, Random& rng);

}  // namespace r1::loadtest
