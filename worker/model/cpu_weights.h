// CPU weights (and the CPU KV cache) in anonymous memory backed by transparent huge pages.
//
// A decode step streams every weight once. Zero-copy views of the mapped checkpoint sit in
// 4 KiB page-cache pages: the hardware prefetcher stops at each page edge and every 4 KiB costs
// a TLB entry. Copying the weights once, at load, into one 2 MiB-aligned region advised
// MADV_HUGEPAGE lays each layer out contiguously in huge pages.
#pragma once

#include <ATen/ATen.h>

#include <cstddef>
#include <memory>
#include <vector>

namespace r1::model {

struct TensorView;

// Advises MADV_HUGEPAGE over the mapped bytes the tensors span, per file (one range each, so
// the mapping stays one region): pages that faults read in then come as 2 MiB folios, and
// 2 MiB folios already in the page cache are mapped whole. Call before touching them.
void AdviseHugePages(const std::vector<const TensorView*>& tensors);

// Bytes of this process's file mappings mapped 2 MiB at a time (FilePmdMapped in smaps_rollup).
size_t FilePmdMappedBytes();

class WeightArena : public std::enable_shared_from_this<WeightArena> {
 public:
  // Reserves `bytes` (plus alignment slack) of anonymous memory, 2 MiB aligned, advised
  // MADV_HUGEPAGE. Null when the reservation fails.
  static std::shared_ptr<WeightArena> Create(size_t bytes);
  ~WeightArena();
  WeightArena(const WeightArena&) = delete;
  WeightArena& operator=(const WeightArena&) = delete;

  // A contiguous copy of `src` (CPU) in `dtype` inside the arena, 4 KiB aligned; the tensor
  // keeps the arena alive. Falls back to an ordinary tensor when the arena is full.
  at::Tensor Copy(const at::Tensor& src, at::ScalarType dtype);
  // Rows of several tensors stacked along dim 0 into one arena tensor.
  at::Tensor Stack(const std::vector<at::Tensor>& parts, at::ScalarType dtype);
  // A zeroed tensor inside the arena (every page written now, so the memory is taken at once,
  // as at::zeros takes it); at::zeros when the arena is full.
  at::Tensor Zeros(at::IntArrayRef shape, at::ScalarType dtype);

  size_t used() const { return used_; }
  // Bytes of the arena that the kernel backs with huge pages (AnonHugePages in smaps).
  size_t HugeBytes() const;

  // Drops the pages of [p, p + n) from this process's mapping (MADV_DONTNEED on the whole
  // pages inside it): the page cache keeps the file, the RSS stops counting it.
  static void ReleaseMapped(const void* p, size_t n);

 private:
  WeightArena() = default;
  at::Tensor Alloc(at::IntArrayRef shape, at::ScalarType dtype);
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  char* base_ = nullptr;
  size_t capacity_ = 0, used_ = 0;
};

}  // namespace r1::model
