// Between the engine's factory (engine_factory.cc: options, model runner, KV sizing) and the
// engine thread (engine.cc). Internal to worker/engine.
#pragma once

#include <memory>

#include "worker/engine/engine.h"
#include "worker/engine/model_runner.h"

namespace r1::engine {

// Builds the engine over a ready runner, warms it up and starts its thread.
absl::StatusOr<std::unique_ptr<Engine>> StartEngine(const EngineOptions& options,
                                                    std::unique_ptr<ModelRunner> runner,
                                                    int32_t max_model_len);

}  // namespace r1::engine
