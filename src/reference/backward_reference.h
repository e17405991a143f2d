// The float64 reference of attention_backward: the exact gradient of the
// forward's definition (docs/semantics.md), the oracle the kernels are
// tested against.
#ifndef ATTN_SRC_REFERENCE_BACKWARD_REFERENCE_H_
#define ATTN_SRC_REFERENCE_BACKWARD_REFERENCE_H_

#include <vector>

#include "src/core/problem.h"

namespace attn::reference {

// Contiguous float64 gradients: dq [B, Hq, Sq, D], dk [B, Hkv, Skv, D],
// dv [B, Hkv, Skv, Dv].
struct Grads {
  std::vector<double> dq, dk, dv;
};

// Recomputes S, P and out in float64 from q, k and v (the problem's out and
// lse are not used: this is the gradient of the function itself) and
// differentiates them against dout.
template <class T>
Grads attention_backward_f64(const detail::BackwardProblem<T>& problem);

// The public algorithm kReference: attention_backward_f64 rounded into the
// problem's dq, dk and dv.
template <class T>
void attention_backward(const detail::BackwardProblem<T>& problem);

}  // namespace attn::reference

#endif  // ATTN_SRC_REFERENCE_BACKWARD_REFERENCE_H_
