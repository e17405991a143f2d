// The naive float32 algorithm (Algorithm::kNaive).
#ifndef ATTN_SRC_KERNELS_NAIVE_H_
#define ATTN_SRC_KERNELS_NAIVE_H_

#include <algorithm>
#include <cstdint>

#include "src/core/problem.h"
#include "src/util/parallel.h"

namespace attn::kernels {

// The workers naive runs on, each holding an Sq x Skv score matrix: the
// requested threads, but no more than there are items ((b, head) pairs of
// the forward, (b, KV head) of the backward). Scratch and the memory
// limit (why_not) follow the workers used, not the request.
inline int naive_workers(const detail::Params& p, int64_t items) {
  return static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>(util::resolve_threads(p.num_threads), items)));
}

template <class T>
void naive_attention(const detail::Problem<T>& problem);

// The backward as a framework's materialising math path: per (b, KV head)
// and query head of its group, P and dS as Sq x Skv float32 matrices, then
// dv = P^T dout, dq = dS k, dk = dS^T q in plain loops.
template <class T>
void naive_attention_backward(const detail::BackwardProblem<T>& problem);

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_NAIVE_H_
