// Workspace: scratch memory that attention calls reuse.
//
// Tiled kernels need a few hundred KiB of scratch per worker thread. Fresh
// pages cost far more to touch the first time than reused ones, so scratch
// lives in a Workspace that grows to the largest call seen and is kept.
// Pass one through AttentionOptions::workspace to control its lifetime;
// without one, each calling thread uses its own, kept until it exits. A
// Workspace serves one call at a time.
#ifndef ATTN_WORKSPACE_H_
#define ATTN_WORKSPACE_H_

#include <cstddef>
#include <memory>

namespace attn {

class Workspace {
 public:
  Workspace();
  ~Workspace();
  Workspace(Workspace&&) noexcept;
  Workspace& operator=(Workspace&&) noexcept;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  // Bytes currently held (all workers together).
  std::size_t bytes_reserved() const;
  // Returns the memory to the system.
  void release();

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace attn

#endif  // ATTN_WORKSPACE_H_
