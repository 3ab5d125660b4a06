#include "worker/model/cpu_weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>

#include "worker/model/safetensors.h"

namespace r1::model {
namespace {
constexpr size_t kHuge = size_t{2} << 20;
constexpr size_t kAlign = 4096;
size_t RoundUp(size_t n, size_t a) { return (n + a - 1) / a * a; }
}  // namespace

void AdviseHugePages(const std::vector<const TensorView*>& tensors) {
#ifdef MADV_HUGEPAGE
  std::map<std::string, std::pair<uintptr_t, uintptr_t>> span;  // file -> [lo, hi)
  for (const TensorView* t : tensors) {
    if (!t || !t->data) continue;
    auto lo = reinterpret_cast<uintptr_t>(t->data), hi = lo + t->nbytes;
    auto [it, fresh] = span.try_emplace(t->file, lo, hi);
    if (!fresh) it->second = {std::min(it->second.first, lo), std::max(it->second.second, hi)};
  }
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  for (const auto& [file, r] : span) {
    uintptr_t lo = (r.first + page - 1) / page * page, hi = r.second / page * page;
    if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
  }
#else
  (void)tensors;
#endif
}

size_t FilePmdMappedBytes() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("FilePmdMapped:", 0) == 0) return std::stoul(line.substr(14)) * 1024;
  return 0;
}

std::shared_ptr<WeightArena> WeightArena::Create(size_t bytes) {
  std::shared_ptr<WeightArena> a(new WeightArena());
  a->capacity_ = RoundUp(bytes, kHuge);
  a->map_bytes_ = a->capacity_ + kHuge;
  a->map_ = mmap(nullptr, a->map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a->map_ == MAP_FAILED) {
    a->map_ = nullptr;
    return nullptr;
  }
  auto addr = reinterpret_cast<uintptr_t>(a->map_);
  a->base_ = reinterpret_cast<char*>(RoundUp(addr, kHuge));
#ifdef MADV_HUGEPAGE
  madvise(a->base_, a->capacity_, MADV_HUGEPAGE);
#endif
  return a;
}

WeightArena::~WeightArena() {
  if (map_) munmap(map_, map_bytes_);
}

at::Tensor WeightArena::Alloc(at::IntArrayRef shape, at::ScalarType dtype) {
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  size_t n = static_cast<size_t>(numel) * c10::elementSize(dtype);
  if (used_ + n > capacity_) return at::empty(shape, at::TensorOptions().dtype(dtype));
  char* p = base_ + used_;
  used_ = RoundUp(used_ + n, kAlign);
  // The deleter holds the arena: it lives as long as any tensor in it.
  return at::from_blob(p, shape, [keep = shared_from_this()](void*) {},
                       at::TensorOptions().dtype(dtype));
}

namespace {
// dst (contiguous) = src: one memcpy when nothing converts (one thread streams at page-cache
// speed; libtorch's copy_ splits the work and then waits on a thread that a busy core holds).
void CopyInto(at::Tensor dst, const at::Tensor& src) {
  if (src.scalar_type() == dst.scalar_type() && src.is_contiguous() && src.is_cpu())
    std::memcpy(dst.data_ptr(), src.data_ptr(), dst.nbytes());
  else
    dst.copy_(src);
}
}  // namespace

at::Tensor WeightArena::Copy(const at::Tensor& src, at::ScalarType dtype) {
  at::Tensor dst = Alloc(src.sizes(), dtype);
  CopyInto(dst, src);
  return dst;
}

at::Tensor WeightArena::Stack(const std::vector<at::Tensor>& parts, at::ScalarType dtype) {
  std::vector<int64_t> shape = parts.at(0).sizes().vec();
  shape[0] = 0;
  for (const at::Tensor& p : parts) shape[0] += p.size(0);
  at::Tensor dst = Alloc(shape, dtype);
  int64_t row = 0;
  for (const at::Tensor& p : parts) {
    CopyInto(dst.narrow(0, row, p.size(0)), p);
    row += p.size(0);
  }
  return dst;
}

at::Tensor WeightArena::Zeros(at::IntArrayRef shape, at::ScalarType dtype) {
  at::Tensor t = Alloc(shape, dtype);  // in the arena, or at::empty when it is full
  t.zero_();
  return t;
}

size_t WeightArena::HugeBytes() const {
  // smaps lists each mapping's range, then its counters; sum AnonHugePages of ours.
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool ours = false;
  size_t total = 0;
  const auto lo = reinterpret_cast<uintptr_t>(map_), hi = lo + map_bytes_;
  while (std::getline(in, line)) {
    unsigned long a = 0, b = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &a, &b) == 2 && line.find(':') > line.find(' ')) {
      ours = a >= lo && b <= hi;
    } else if (ours && line.rfind("AnonHugePages:", 0) == 0) {
      total += std::stoul(line.substr(14)) * 1024;
    }
  }
  return total;
}

void WeightArena::ReleaseMapped(const void* p, size_t n) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  auto lo = RoundUp(reinterpret_cast<uintptr_t>(p), page);
  auto hi = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

}  // namespace r1::model
