#include "gateway/main/models.h"

#include "absl/strings/str_cat.h"
#include "gateway/openai/cat.h"

namespace r1::gw {

ModelCard CardOf(const r1serve::v1::LoadReport& r) {
  ModelCard c;
  c.id = r.model_id();
  c.max_model_len = r.max_model_len();
  c.chat_template = r.chat_template();
  c.tools = r.tools();
  if (r.has_generation_defaults()) {
    const auto& d = r.generation_defaults();
    std::string j = "{\"source\":";
    AppendJsonString(&j, d.source().empty() ? "none" : d.source());
    if (d.has_temperature()) absl::StrAppend(&j, ",\"temperature\":", d.temperature());
    if (d.has_top_p()) absl::StrAppend(&j, ",\"top_p\":", d.top_p());
    if (d.has_top_k()) absl::StrAppend(&j, ",\"top_k\":", d.top_k());
    j.push_back('}');
    c.generation_defaults_json = std::move(j);
  }
  return c;
}

std::vector<ModelCard> ModelCards(const WorkerPool& pool) {
  std::vector<ModelCard> out;
  for (const auto& r : pool.ModelReports()) out.push_back(CardOf(r));
  return out;
}

std::optional<r1serve::v1::LoadReport> FindModel(const WorkerPool& pool, const std::string& id) {
  for (auto& r : pool.ModelReports())
    if (r.model_id() == id) return r;
  return std::nullopt;
}

std::string ModelNotFoundMessage(const std::string& id) {
  return Cat("The model '", id, "' does not exist.");
}

}  // namespace r1::gw
