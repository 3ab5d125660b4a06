// The models behind the gateway, as the workers' load reports describe them: /v1/models,
// /v1/models/{id}, and the check that a request names a model some worker serves.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "gateway/openai/response.h"
#include "gateway/upstream/worker_pool.h"

namespace r1::gw {

ModelCard CardOf(const r1serve::v1::LoadReport& report);
std::vector<ModelCard> ModelCards(const WorkerPool& pool);
// The load report of a worker serving `id`; none when no worker reports it.
std::optional<r1serve::v1::LoadReport> FindModel(const WorkerPool& pool, const std::string& id);
// OpenAI's words for an unknown model (404, code model_not_found).
std::string ModelNotFoundMessage(const std::string& id);

}  // namespace r1::gw
