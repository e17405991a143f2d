// The contract of a linear attention call (attn/linear.h) after
// validation, shared by the float64 oracle (src/reference) and the kernels
// (src/kernels): the resolved problem and the feature maps phi.
#ifndef ATTN_SRC_CORE_LINEAR_PROBLEM_H_
#define ATTN_SRC_CORE_LINEAR_PROBLEM_H_

#include <cmath>
#include <cstdint>

#include "attn/linear.h"
#include "attn/tensor.h"
#include "src/core/problem.h"

namespace attn::detail {

// A validated linear attention call. Causal calls have Sq == Skv, or
// continue a LinearState (then query i and key i are the same new token).
template <class T>
struct LinearProblem {
  Shape shape;
  bool causal = false;
  FeatureMap map = FeatureMap::kEluPlusOne;
  FeatureFn custom = nullptr;
  const void* custom_context = nullptr;
  float eps = 0.0f;
  int num_threads = 0;
  TensorView<const T> q, k, v;
  TensorView<T> out;
};

// The problem for options and a shape (views still to be set).
template <class T>
LinearProblem<T> make_linear_problem(const LinearOptions& o, const Shape& s) {
  LinearProblem<T> p;
  p.shape = s;
  p.causal = o.causal;
  p.map = o.feature_map;
  p.custom = o.custom;
  p.custom_context = o.custom_context;
  p.eps = o.eps;
  p.num_threads = o.num_threads;
  return p;
}

// phi on one row in the precision of F: the reference's double version of
// the built-in maps (custom maps run in float and are widened).
template <class F, class T>
void phi_row(const LinearProblem<T>& p, const float* x, F* y, int64_t n) {
  switch (p.map) {
    case FeatureMap::kEluPlusOne:
      for (int64_t d = 0; d < n; ++d) {
        const F v = static_cast<F>(x[d]);
        y[d] = v > 0 ? v + 1 : std::exp(v);
      }
      return;
    case FeatureMap::kRelu:
      for (int64_t d = 0; d < n; ++d)
        y[d] = x[d] > 0 ? static_cast<F>(x[d]) : F(0);
      return;
    case FeatureMap::kCustom: {
      float tmp[1024];  // validation bounds D to 1024
      p.custom(x, tmp, n, p.custom_context);
      for (int64_t d = 0; d < n; ++d) y[d] = static_cast<F>(tmp[d]);
      return;
    }
  }
}

// phi'(x) for the built-in maps, in the precision of F.
template <class F>
F phi_derivative(FeatureMap map, float x) {
  if (x > 0) return F(1);
  return map == FeatureMap::kEluPlusOne ? std::exp(static_cast<F>(x)) : F(0);
}

// A validated linear_attention_backward call (p.out unused).
template <class T>
struct LinearBackwardProblem {
  LinearProblem<T> forward;
  TensorView<const T> dout;
  TensorView<T> dq, dk, dv;
};

}  // namespace attn::detail

#endif  // ATTN_SRC_CORE_LINEAR_PROBLEM_H_
