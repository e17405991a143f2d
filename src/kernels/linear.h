// Linear attention kernels (attn/linear.h): the quadratic float32 twin
// (naive) and the O(S D Dv) chunked algorithm. See linear.cc.
#ifndef ATTN_SRC_KERNELS_LINEAR_H_
#define ATTN_SRC_KERNELS_LINEAR_H_

#include <cstdint>

#include "attn/linear.h"
#include "attn/tensor.h"
#include "attn/workspace.h"
#include "src/core/linear_problem.h"

namespace attn::kernels {

using detail::LinearBackwardProblem;
using detail::LinearProblem;
using detail::phi_derivative;
using detail::phi_row;

// The O(S D Dv) backward: a forward scan (prefix states S, z; out, dq) and
// a reverse scan (suffix sums U, w; dk, dv) per (b, KV head), float64
// states. linear_backward.cc.
template <class T>
void linear_backward_scan(const LinearBackwardProblem<T>& p);

// Quadratic float32: per (b, h), A = phi(Q) phi(K)^T (causal: j <= i), out
// = A V / rowsum(A).
template <class T>
void linear_naive(const LinearProblem<T>& p);

// Chunked: see linear.cc. state: null, or B * Hkv blocks of D * Dv + D
// floats (S then z) to continue from and to update (causal only).
template <class T>
void linear_chunked(const LinearProblem<T>& p, Workspace* workspace,
                    float* state = nullptr);

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_LINEAR_H_
