// Engine deltas -> GenerateResponse messages. A reader that lags gets several deltas merged
// into one message: ids, logprobs and text appended in order, the final fields from the last.
#pragma once

#include "r1serve/v1/inference.pb.h"
#include "worker/engine/engine.h"

namespace r1::service {

r1serve::v1::FinishReason ToProtoFinishReason(engine::FinishReason r);

// Appends `delta` to `msg`. `codec` (may be null) gives the logprob entries' token text.
void AppendDelta(engine::Delta&& delta, engine::TextCodec* codec, bool logprobs,
                 r1serve::v1::GenerateResponse* msg);

}  // namespace r1::service
