// The naive float32 algorithm (Algorithm::kNaive).
#ifndef ATTN_SRC_KERNELS_NAIVE_H_
#define ATTN_SRC_KERNELS_NAIVE_H_

#include "src/api/problem.h"

namespace attn::kernels {

template <class T>
void naive_attention(const detail::Problem<T>& problem);

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_NAIVE_H_
