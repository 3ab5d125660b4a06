// Host memory policy for the worker process. Torch-free.
#pragma once

namespace r1::engine {

// Keeps freed host memory in the process for reuse: one glibc malloc arena, no mmap for large
// blocks, no trimming. Without it every large block (a step's [batch, vocab] logits, GEMM
// outputs) is a fresh mmap that page-faults on first touch and is unmapped on free: at 256
// tiny-model streams on CPU that was over 40% of the worker's time, in the kernel. Call first
// thing in main, before threads start. Returns false where the C library has no such knobs.
bool KeepFreedHostMemory();

}  // namespace r1::engine
