#include "worker/service/generation_defaults.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include <boost/json.hpp>

#include "absl/strings/str_cat.h"

namespace r1::service {
namespace json = boost::json;

namespace {

absl::StatusOr<std::optional<double>> Number(const json::object& o, const char* key,
                                             const std::string& path, double lo, double hi) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return std::optional<double>();
  const json::value& v = it->value();
  double d;
  if (v.is_double()) d = v.get_double();
  else if (v.is_int64()) d = static_cast<double>(v.get_int64());
  else if (v.is_uint64()) d = static_cast<double>(v.get_uint64());
  else return absl::InvalidArgumentError(absl::StrCat(path, ": \"", key, "\" must be a number"));
  if (!std::isfinite(d) || d < lo || d > hi)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": \"", key, "\" must be in [", lo, ", ", hi, "], got ", d));
  return std::optional<double>(d);
}

}  // namespace

absl::StatusOr<GenerationDefaults> LoadGenerationDefaults(const std::string& model_dir,
                                                          const std::string& mode) {
  GenerationDefaults d;
  if (mode == "none") return d;
  if (mode != "auto")
    return absl::InvalidArgumentError("--generation-config must be auto or none, not '" + mode + "'");
  const std::string path = model_dir + "/generation_config.json";
  std::ifstream f(path);
  if (!f) return d;  // no file: no defaults, as vLLM
  std::stringstream ss;
  ss << f.rdbuf();
  boost::system::error_code ec;
  json::value v = json::parse(ss.str(), ec);
  if (ec || !v.is_object())
    return absl::InvalidArgumentError(path + " is not a JSON object (--generation-config none skips it)");
  const json::object& o = v.get_object();
  R1_ASSIGN_OR_RETURN(auto temperature, Number(o, "temperature", path, 0, 100));
  R1_ASSIGN_OR_RETURN(auto top_p, Number(o, "top_p", path, 0, 1));
  R1_ASSIGN_OR_RETURN(auto top_k, Number(o, "top_k", path, -1, 1 << 30));
  d.source = "generation_config.json";
  if (temperature) d.temperature = static_cast<float>(*temperature);
  if (top_p) d.top_p = static_cast<float>(*top_p);
  // top_k -1 or 0 means off (Hugging Face's default is 50 when unset, which vLLM does not
  // apply either: only keys the file writes count).
  if (top_k && *top_k > 0) d.top_k = static_cast<int32_t>(*top_k);
  return d;
}

std::string DescribeDefaults(const GenerationDefaults& d) {
  std::string out;
  if (d.temperature) absl::StrAppend(&out, "temperature=", *d.temperature, " ");
  if (d.top_p) absl::StrAppend(&out, "top_p=", *d.top_p, " ");
  if (d.top_k) absl::StrAppend(&out, "top_k=", *d.top_k, " ");
  if (out.empty()) out = "none ";
  absl::StrAppend(&out, "(", d.source, ")");
  return out;
}

}  // namespace r1::service
