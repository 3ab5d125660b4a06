#include "worker/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/model/json_util.h"

namespace r1::model {
namespace json = boost::json;
namespace fs = std::filesystem;

const char* DTypeName(DType d) {
  switch (d) {
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kF32: return "F32";
    case DType::kI8: return "I8";
    case DType::kI32: return "I32";
    case DType::kF8E4M3: return "F8_E4M3";
  }
  return "?";
}

size_t DTypeSize(DType d) {
  return d == DType::kF32 || d == DType::kI32 ? 4 : d == DType::kI8 || d == DType::kF8E4M3 ? 1 : 2;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) munmap(map_, size_);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot stat ", path));
  }
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ < 8) {
    ::close(fd);
    return bad(absl::StrCat("truncated safetensors file (", f->size_, " bytes, no header)"));
  }
  f->map_ = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (f->map_ == MAP_FAILED) {
    f->map_ = nullptr;
    return absl::InternalError(absl::StrCat("cannot mmap ", path, ": ", std::strerror(errno)));
  }
  const auto* bytes = static_cast<const uint8_t*>(f->map_);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes, 8);  // little-endian, as is x86-64
  if (header_len > f->size_ - 8 || header_len > (100u << 20))
    return bad(absl::StrCat("corrupt header: header length ", header_len, " exceeds the file (",
                            f->size_, " bytes); the file may be truncated"));
  std::string_view header(reinterpret_cast<const char*>(bytes + 8), header_len);
  auto parsed = ParseJson(header, path + " header");
  if (!parsed.ok()) return bad(absl::StrCat("corrupt header: ", parsed.status().message()));
  if (!parsed->is_object()) return bad("corrupt header: not a JSON object");
  const uint8_t* data = bytes + 8 + header_len;
  const size_t data_size = f->size_ - 8 - header_len;

  for (const auto& [key, val] : parsed->get_object()) {
    std::string name(key);
    if (name == "__metadata__") continue;
    auto tbad = [&](const std::string& what) { return bad(absl::StrCat("tensor ", name, ": ", what)); };
    if (!val.is_object()) return tbad("header entry is not an object");
    const json::object& t = val.get_object();
    auto dt = t.find("dtype");
    auto sh = t.find("shape");
    auto off = t.find("data_offsets");
    if (dt == t.end() || !dt->value().is_string()) return tbad("missing dtype");
    if (sh == t.end() || !sh->value().is_array()) return tbad("missing shape");
    if (off == t.end() || !off->value().is_array() || off->value().get_array().size() != 2)
      return tbad("missing data_offsets");
    TensorView v;
    v.name = name;
    v.file = path;
    std::string dtype(dt->value().get_string());
    if (dtype == "BF16") v.dtype = DType::kBF16;
    else if (dtype == "F16") v.dtype = DType::kF16;
    else if (dtype == "F32") v.dtype = DType::kF32;
    else if (dtype == "I8") v.dtype = DType::kI8;
    else if (dtype == "I32") v.dtype = DType::kI32;
    else if (dtype == "F8_E4M3") v.dtype = DType::kF8E4M3;
    else return tbad(absl::StrCat("unsupported dtype ", dtype, " (BF16, F16, F32, I8, I32 and F8_E4M3 are supported)"));
    for (const auto& d : sh->value().get_array()) {
      auto n = JsonInt(d);
      if (!n || *n < 0) return tbad("bad shape");
      v.shape.push_back(*n);
    }
    auto b = JsonInt(off->value().get_array()[0]);
    auto e = JsonInt(off->value().get_array()[1]);
    if (!b || !e || *b < 0 || *e < *b) return tbad("bad data_offsets");
    if (static_cast<size_t>(*e) > data_size)
      return tbad(absl::StrCat("data ends at byte ", *e, " but the file has only ", data_size,
                               " data bytes: the file is truncated"));
    v.nbytes = static_cast<size_t>(*e - *b);
    if (v.nbytes != static_cast<size_t>(v.numel()) * DTypeSize(v.dtype))
      return tbad(absl::StrCat("shape ", ShapeString(v.shape), " of ", dtype, " needs ",
                               v.numel() * DTypeSize(v.dtype), " bytes, data_offsets give ",
                               v.nbytes));
    v.data = data + *b;
    f->tensors_.emplace(name, std::move(v));
  }
  return f;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  std::unique_ptr<Checkpoint> ck(new Checkpoint());
  ck->dir_ = dir;
  fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  fs::path single_path = fs::path(dir) / "model.safetensors";
  if (fs::exists(index_path)) {
    R1_ASSIGN_OR_RETURN(std::string text, ReadFile(index_path.string()));
    R1_ASSIGN_OR_RETURN(json::value idx, ParseJson(text, index_path.string()));
    const json::object* wm = nullptr;
    if (idx.is_object())
      if (auto it = idx.get_object().find("weight_map");
          it != idx.get_object().end() && it->value().is_object())
        wm = &it->value().get_object();
    if (!wm)
      return absl::InvalidArgumentError(index_path.string() + ": missing \"weight_map\" object");
    std::map<std::string, SafetensorsFile*> by_file;
    for (const auto& [name, file_val] : *wm) {
      if (!file_val.is_string())
        return absl::InvalidArgumentError(
            absl::StrCat(index_path.string(), ": weight_map entry ", std::string(name),
                         " is not a file name"));
      std::string file(file_val.get_string());
      if (file.find('/') != std::string::npos || file == "..")
        return absl::InvalidArgumentError(
            absl::StrCat(index_path.string(), ": shard name ", file, " must be a plain file name"));
      auto fit = by_file.find(file);
      if (fit == by_file.end()) {
        R1_ASSIGN_OR_RETURN(auto shard, SafetensorsFile::Open((fs::path(dir) / file).string()));
        fit = by_file.emplace(file, shard.get()).first;
        ck->files_.push_back(std::move(shard));
      }
      auto t = fit->second->tensors().find(std::string(name));
      if (t == fit->second->tensors().end())
        return absl::InvalidArgumentError(
            absl::StrCat(index_path.string(), " places tensor ", std::string(name), " in ", file,
                         ", but ", fit->second->path(), " does not have it"));
      ck->index_[std::string(name)] = &t->second;
    }
  } else if (fs::exists(single_path)) {
    R1_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(single_path.string()));
    for (const auto& [name, view] : f->tensors()) ck->index_[name] = &view;
    ck->files_.push_back(std::move(f));
  } else {
    return absl::NotFoundError(absl::StrCat("no model.safetensors or model.safetensors.index.json in ", dir));
  }
  return ck;
}

absl::StatusOr<const TensorView*> Checkpoint::Get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    return absl::NotFoundError(absl::StrCat("checkpoint ", dir_, " has no tensor ", name));
  return it->second;
}

absl::StatusOr<const TensorView*> Checkpoint::GetShaped(const std::string& name,
                                                        const std::vector<int64_t>& shape) const {
  R1_ASSIGN_OR_RETURN(const TensorView* t, Get(name));
  if (t->shape != shape)
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " in ", t->file, " has shape ",
                                                   ShapeString(t->shape), ", expected ",
                                                   ShapeString(shape)));
  return t;
}

size_t Checkpoint::total_bytes() const {
  size_t n = 0;
  for (const auto& [name, t] : index_) n += t->nbytes;
  return n;
}

}  // namespace r1::model
