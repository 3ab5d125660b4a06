// The checkpoint's sampling defaults: generation_config.json's temperature, top_p and top_k,
// applied to requests that leave them unset (as vLLM's --generation-config auto does). Read
// once at start; torch-free and gRPC-free.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"

namespace r1::service {

struct GenerationDefaults {
  std::string source = "none";  // "generation_config.json" when read from the checkpoint
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int32_t> top_k;
};

// mode "auto": DIR/generation_config.json when present (none otherwise); "none": no defaults.
// A file with a value out of range is an error naming the file and the key.
absl::StatusOr<GenerationDefaults> LoadGenerationDefaults(const std::string& model_dir,
                                                          const std::string& mode);

// "temperature=0.6 top_p=0.95 (generation_config.json)" for the start-up log.
std::string DescribeDefaults(const GenerationDefaults& d);

}  // namespace r1::service
