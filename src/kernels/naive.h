// The naive float32 algorithm (Algorithm::kNaive).
#ifndef ATTN_SRC_KERNELS_NAIVE_H_
#define ATTN_SRC_KERNELS_NAIVE_H_

#include "src/core/problem.h"

namespace attn::kernels {

template <class T>
void naive_attention(const detail::Problem<T>& problem);

// The backward as a framework's materialising math path: per (b, KV head)
// and query head of its group, P and dS as Sq x Skv float32 matrices, then
// dv = P^T dout, dq = dS k, dk = dS^T q in plain loops.
template <class T>
void naive_attention_backward(const detail::BackwardProblem<T>& problem);

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_NAIVE_H_
