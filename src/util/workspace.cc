#include "attn/workspace.h"

#include "src/util/workspace_impl.h"

namespace attn {

Workspace::Workspace() : impl_(std::make_unique<Impl>()) {}
Workspace::~Workspace() = default;
Workspace::Workspace(Workspace&&) noexcept = default;
Workspace& Workspace::operator=(Workspace&&) noexcept = default;

std::size_t Workspace::bytes_reserved() const {
  std::size_t total = 0;
  if (!impl_) return 0;  // moved from
  for (const auto& s : impl_->slices) total += s.bytes;
  return total + impl_->shared_slice.bytes + impl_->rewrite_slice.bytes;
}

void Workspace::release() {
  if (!impl_) return;
  impl_->slices.clear();
  impl_->shared_slice = {};
  impl_->rewrite_slice = {};
}

Workspace& workspace_or_default(Workspace* workspace) {
  thread_local Workspace own;
  return workspace != nullptr ? *workspace : own;
}

}  // namespace attn
