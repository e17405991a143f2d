// The flash backward (Algorithm::kFlash of attention_backward).
#ifndef ATTN_SRC_KERNELS_FLASH_BACKWARD_H_
#define ATTN_SRC_KERNELS_FLASH_BACKWARD_H_

#include <cstdint>

#include "attn/workspace.h"
#include "src/core/problem.h"

namespace attn::kernels {

// Query rows per step of a backward work item (a multiple of the 6-row
// register block) and keys per item (one key tile).
inline constexpr int64_t kBackwardRows = 60;

template <class T>
void flash_attention_backward(const detail::BackwardProblem<T>& problem,
                              Workspace* workspace);

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_FLASH_BACKWARD_H_
