#include "worker/model/safetensors_writer.h"

#include <boost/json.hpp>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace r1::model {

size_t TensorSpec::nbytes() const {
  size_t n = DTypeSize(dtype);
  for (int64_t s : shape) n *= static_cast<size_t>(s);
  return n;
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorSpec>& specs,
                              const std::function<void(size_t, void*)>& fill) {
  boost::json::object header;
  header["__metadata__"] = boost::json::object{{"format", "pt"}};
  size_t offset = 0;
  for (const TensorSpec& s : specs) {
    boost::json::array shape;
    for (int64_t d : s.shape) shape.push_back(d);
    header[s.name] = boost::json::object{
        {"dtype", DTypeName(s.dtype)},
        {"shape", std::move(shape)},
        {"data_offsets", boost::json::array{offset, offset + s.nbytes()}}};
    offset += s.nbytes();
  }
  std::string text = boost::json::serialize(header);
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  uint64_t len = text.size();
  bool ok = std::fwrite(&len, 8, 1, f.get()) == 1 &&
            std::fwrite(text.data(), 1, text.size(), f.get()) == text.size();
  std::vector<char> buf;
  for (size_t i = 0; ok && i < specs.size(); ++i) {
    buf.resize(specs[i].nbytes());
    fill(i, buf.data());
    ok = std::fwrite(buf.data(), 1, buf.size(), f.get()) == buf.size();
  }
  if (!ok || std::fflush(f.get()) != 0)
    return absl::InternalError(absl::StrCat("error writing ", path, ": ", std::strerror(errno)));
  return absl::OkStatus();
}

}  // namespace r1::model
