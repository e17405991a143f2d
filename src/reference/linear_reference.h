// The float64 reference of linear attention (attn/linear.h).
#ifndef ATTN_SRC_REFERENCE_LINEAR_REFERENCE_H_
#define ATTN_SRC_REFERENCE_LINEAR_REFERENCE_H_

#include <vector>

#include "src/core/linear_problem.h"

namespace attn::reference {

// out, contiguous [B, Hq, Sq, Dv], in float64 from the inputs as stored.
template <class T>
std::vector<double> linear_attention_f64(const detail::LinearProblem<T>& p);

// The public LinearAlgorithm::kReference: the above rounded into p.out.
template <class T>
void linear_attention(const detail::LinearProblem<T>& p);

// The exact float64 gradients, quadratic: dq [B, Hq, Sq, D], dk
// [B, Hkv, Skv, D], dv [B, Hkv, Skv, Dv], contiguous.
struct LinearGrads {
  std::vector<double> dq, dk, dv;
};
template <class T>
LinearGrads linear_backward_f64(const detail::LinearBackwardProblem<T>& p);

// The public kReference backward: the above rounded into p.dq, p.dk, p.dv.
template <class T>
void linear_attention_backward(const detail::LinearBackwardProblem<T>& p);

}  // namespace attn::reference

#endif  // ATTN_SRC_REFERENCE_LINEAR_REFERENCE_H_
