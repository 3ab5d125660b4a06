// A memory-mapped safetensors reader: one model.safetensors or shards listed in
// model.safetensors.index.json. Torch-free: tensors are views of the mapped bytes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace r1::model {

enum class DType { kBF16, kF16, kF32, kI8, kI32, kF8E4M3 };  // kI8, kI32, kF8E4M3: quantized weights only
const char* DTypeName(DType d);
size_t DTypeSize(DType d);

struct TensorView {
  std::string name;
  std::string file;  // the file it lives in, for error messages
  DType dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // inside the read-only mapping
  size_t nbytes = 0;
  int64_t numel() const;
};

// One mapped .safetensors file.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::string& path() const { return path_; }
  size_t size() const { return size_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  std::map<std::string, TensorView> tensors_;
};

// Every tensor of a checkpoint directory, single file or sharded.
class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  // NotFound naming the tensor and the checkpoint when absent.
  absl::StatusOr<const TensorView*> Get(const std::string& name) const;
  bool Has(const std::string& name) const { return index_.count(name) != 0; }
  // Get plus a shape check; InvalidArgument naming tensor, file, wanted and found shapes.
  absl::StatusOr<const TensorView*> GetShaped(const std::string& name,
                                              const std::vector<int64_t>& shape) const;
  size_t total_bytes() const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

std::string ShapeString(const std::vector<int64_t>& shape);

}  // namespace r1::model
