// Linear attention in float64, the simplest way: for each (b, h), with kv =
// h / G,
//   1. A[i, j] = phi(q_i) . phi(k_j) for j in keys(i) (all, or j <= i)
//   2. out_i = sum_j A[i, j] v_j / (sum_j A[i, j] + eps), 0 when that is 0
// phi in float64 for the built-in maps (a custom map runs in float).
#include "src/reference/linear_reference.h"

namespace attn::reference {

template <class T>
std::vector<double> linear_attention_f64(const kernels::LinearProblem<T>& p) {
  const detail::Shape& s = p.shape;
  std::vector<double> out(s.B * s.Hq * s.Sq * s.Dv, 0.0);
  std::vector<double> pq(s.D), pk(s.Skv * s.D);
  std::vector<float> row(s.D);
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.Hq; ++h) {
      const int64_t kv = h / s.group();
      for (int64_t j = 0; j < s.Skv; ++j) {
        for (int64_t d = 0; d < s.D; ++d) row[d] = to_float(p.k(b, kv, j, d));
        kernels::phi_row<double>(p, row.data(), &pk[j * s.D], s.D);
      }
      for (int64_t i = 0; i < s.Sq; ++i) {
        for (int64_t d = 0; d < s.D; ++d) row[d] = to_float(p.q(b, h, i, d));
        kernels::phi_row<double>(p, row.data(), pq.data(), s.D);
        double* o = &out[((b * s.Hq + h) * s.Sq + i) * s.Dv];
        double den = 0.0;
        for (int64_t j = 0; j < (p.causal ? i + 1 : s.Skv); ++j) {
          double a = 0.0;
          for (int64_t d = 0; d < s.D; ++d) a += pq[d] * pk[j * s.D + d];
          den += a;
          for (int64_t e = 0; e < s.Dv; ++e) o[e] += a * to_float(p.v(b, kv, j, e));
        }
        den += p.eps;
        for (int64_t e = 0; e < s.Dv; ++e) o[e] = den != 0.0 ? o[e] / den : 0.0;
      }
    }
  }
  return out;
}

template <class T>
void linear_attention(const kernels::LinearProblem<T>& p) {
  const std::vector<double> out = linear_attention_f64(p);
  const detail::Shape& s = p.shape;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.Hq; ++h)
      for (int64_t i = 0; i < s.Sq; ++i)
        for (int64_t e = 0; e < s.Dv; ++e) {
          p.out(b, h, i, e) = from_float<T>(
              static_cast<float>(out[((b * s.Hq + h) * s.Sq + i) * s.Dv + e]));
        }
}

#define ATTN_INSTANTIATE(T)                                                          \
  template std::vector<double> linear_attention_f64(const kernels::LinearProblem<T>&); \
  template void linear_attention(const kernels::LinearProblem<T>&);
ATTN_INSTANTIATE(float)
ATTN_INSTANTIATE(bfloat16)
ATTN_INSTANTIATE(float16)
#undef ATTN_INSTANTIATE

}  // namespace attn::reference
