// attn::attention_backward: validate once, then run the chosen algorithm.
#include "attn/backward.h"

#include <string>

#include "attn/error.h"
#include "src/api/validate.h"
#include "src/kernels/flash_backward.h"
#include "src/kernels/naive.h"
#include "src/reference/backward_reference.h"

namespace attn {
namespace {

template <class T>
Algorithm run_backward(TensorView<const T> q, TensorView<const T> k,
                       TensorView<const T> v, TensorView<const T> out,
                       TensorView<const float> lse, TensorView<const T> dout,
                       TensorView<T> dq, TensorView<T> dk, TensorView<T> dv,
                       const AttentionOptions& options) {
  const detail::BackwardProblem<T> problem =
      detail::validate_backward(q, k, v, out, lse, dout, dq, dk, dv, options);
  switch (problem.params.algorithm) {
    case Algorithm::kReference:
      reference::attention_backward(problem);
      return Algorithm::kReference;
    case Algorithm::kNaive:
      kernels::naive_attention_backward(problem);
      return Algorithm::kNaive;
    case Algorithm::kFlash:
      kernels::flash_attention_backward(problem, options.workspace);
      return Algorithm::kFlash;
    default:
      break;  // validate_backward lets no other through
  }
  throw Error("attn::attention_backward: internal error: no kernel for " +
              std::string(algorithm_name(problem.params.algorithm)));
}

}  // namespace

Algorithm attention_backward(TensorView<const float> q,
                             TensorView<const float> k,
                             TensorView<const float> v,
                             TensorView<const float> out,
                             TensorView<const float> lse,
                             TensorView<const float> dout, TensorView<float> dq,
                             TensorView<float> dk, TensorView<float> dv,
                             const AttentionOptions& options) {
  return run_backward(q, k, v, out, lse, dout, dq, dk, dv, options);
}
Algorithm attention_backward(
    TensorView<const bfloat16> q, TensorView<const bfloat16> k,
    TensorView<const bfloat16> v, TensorView<const bfloat16> out,
    TensorView<const float> lse, TensorView<const bfloat16> dout,
    TensorView<bfloat16> dq, TensorView<bfloat16> dk, TensorView<bfloat16> dv,
    const AttentionOptions& options) {
  return run_backward(q, k, v, out, lse, dout, dq, dk, dv, options);
}
Algorithm attention_backward(
    TensorView<const float16> q, TensorView<const float16> k,
    TensorView<const float16> v, TensorView<const float16> out,
    TensorView<const float> lse, TensorView<const float16> dout,
    TensorView<float16> dq, TensorView<float16> dk, TensorView<float16> dv,
    const AttentionOptions& options) {
  return run_backward(q, k, v, out, lse, dout, dq, dk, dv, options);
}

}  // namespace attn
