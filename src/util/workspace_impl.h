// Workspace::Impl: one 64-byte aligned, separately allocated slice per
// worker (no false sharing between workers), grown on demand, never shrunk.
#ifndef ATTN_SRC_UTIL_WORKSPACE_IMPL_H_
#define ATTN_SRC_UTIL_WORKSPACE_IMPL_H_

#include <cstddef>
#include <memory>
#include <new>
#include <vector>

#include "attn/workspace.h"

namespace attn {

struct Workspace::Impl {
  struct Free {
    void operator()(std::byte* p) const {
      ::operator delete[](p, std::align_val_t(64));
    }
  };
  struct Slice {
    std::unique_ptr<std::byte[], Free> data;
    std::size_t bytes = 0;
  };
  std::vector<Slice> slices;

  // s holding at least `bytes` (a multiple of 64; contents not kept).
  static std::byte* grow(Slice& s, std::size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    if (s.bytes < bytes) {
      s.data.reset(static_cast<std::byte*>(
          ::operator new[](bytes, std::align_val_t(64))));
      s.bytes = bytes;
    }
    return s.data.get();
  }

  // Makes sure `workers` slices of at least `bytes` each exist. Call before
  // the parallel loop, never inside it.
  void reserve(int workers, std::size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    if (slices.size() < static_cast<std::size_t>(workers))
      slices.resize(workers);
    for (int w = 0; w < workers; ++w) grow(slices[w], bytes);
  }
  std::byte* slice(int worker) { return slices[worker].data.get(); }

  // One buffer of at least `bytes` that all workers of a call share (each
  // writing its own part), e.g. split-KV partial results. Call before the
  // parallel loop.
  std::byte* shared(std::size_t bytes) { return grow(shared_slice, bytes); }
  Slice shared_slice;

  // A buffer for a rewrite's part results (src/kernels/strided.cc), held
  // across the kernel calls the rewrite makes, which use the slices and
  // the shared buffer themselves.
  std::byte* rewrite(std::size_t bytes) { return grow(rewrite_slice, bytes); }
  Slice rewrite_slice;
};

// `workspace`, or when null this thread's own (kept until the thread
// exits): the one default every tiled kernel uses.
Workspace& workspace_or_default(Workspace* workspace);

}  // namespace attn

#endif  // ATTN_SRC_UTIL_WORKSPACE_IMPL_H_
