// The float64 reference: the specification of attn::attention as code.
#ifndef ATTN_SRC_REFERENCE_REFERENCE_H_
#define ATTN_SRC_REFERENCE_REFERENCE_H_

#include <vector>

#include "src/core/problem.h"

namespace attn::reference {

// Result in float64: out is contiguous [B, Hq, Sq, Dv], lse [B, Hq, Sq].
struct Result {
  std::vector<double> out;
  std::vector<double> lse;
};

// Computes every (b, h) of the problem in float64 from the inputs as stored
// (bfloat16 / float16 inputs are widened exactly).
template <class T>
Result attention_f64(const detail::Problem<T>& problem);

// The public algorithm kReference: attention_f64, rounded into p.out / p.lse.
template <class T>
void attention(const detail::Problem<T>& problem);

}  // namespace attn::reference

#endif  // ATTN_SRC_REFERENCE_REFERENCE_H_
