// Linear attention in float64, the simplest way: for each (b, h), with kv =
// h / G,
//   1. A[i, j] = phi(q_i) . phi(k_j) for j in keys(i) (all, or j <= i)
//   2. out_i = sum_j A[i, j] v_j / (sum_j A[i, j] + eps), 0 when that is 0
// phi in float64 for the built-in maps (a custom map runs in float).
#include "src/reference/linear_reference.h"

#include <algorithm>

namespace attn::reference {

template <class T>
std::vector<double> linear_attention_f64(const detail::LinearProblem<T>& p) {
  const detail::Shape& s = p.shape;
  std::vector<double> out(s.B * s.Hq * s.Sq * s.Dv, 0.0);
  std::vector<double> pq(s.D), pk(s.Skv * s.D);
  std::vector<float> row(s.D);
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.Hq; ++h) {
      const int64_t kv = h / s.group();
      for (int64_t j = 0; j < s.Skv; ++j) {
        for (int64_t d = 0; d < s.D; ++d) row[d] = to_float(p.k(b, kv, j, d));
        detail::phi_row<double>(p, row.data(), &pk[j * s.D], s.D);
      }
      for (int64_t i = 0; i < s.Sq; ++i) {
        for (int64_t d = 0; d < s.D; ++d) row[d] = to_float(p.q(b, h, i, d));
        detail::phi_row<double>(p, row.data(), pq.data(), s.D);
        double* o = &out[((b * s.Hq + h) * s.Sq + i) * s.Dv];
        double den = 0.0;
        for (int64_t j = 0; j < (p.causal ? i + 1 : s.Skv); ++j) {
          double a = 0.0;
          for (int64_t d = 0; d < s.D; ++d) a += pq[d] * pk[j * s.D + d];
          den += a;
          for (int64_t e = 0; e < s.Dv; ++e)
            o[e] += a * to_float(p.v(b, kv, j, e));
        }
        den += p.eps;
        for (int64_t e = 0; e < s.Dv; ++e) o[e] = den != 0.0 ? o[e] / den : 0.0;
      }
    }
  }
  return out;
}

template <class T>
void linear_attention(const detail::LinearProblem<T>& p) {
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

// The backward straight from A: with dnum_i = dout_i / den_i and
// dden_i = -(dout_i . out_i) / den_i, dA_ij = dnum_i . v_j + dden_i;
// dphi(q_i) = sum_j dA_ij phi(k_j), dphi(k_j) += dA_ij phi(q_i),
// dv_j += A_ij dnum_i; then through phi'.
template <class T>
LinearGrads linear_backward_f64(const detail::LinearBackwardProblem<T>& pb) {
  const detail::LinearProblem<T>& p = pb.forward;
  const detail::Shape& s = p.shape;
  LinearGrads g;
  g.dq.assign(s.B * s.Hq * s.Sq * s.D, 0.0);
  g.dk.assign(s.B * s.Hkv * s.Skv * s.D, 0.0);
  g.dv.assign(s.B * s.Hkv * s.Skv * s.Dv, 0.0);
  std::vector<double> pq(s.D), pk(s.Skv * s.D), A(s.Skv), num(s.Dv), dnum(s.Dv),
      dphik(s.Skv * s.D), dphiq(s.D);
  std::vector<float> row(s.D);
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t kv = 0; kv < s.Hkv; ++kv) {
      for (int64_t j = 0; j < s.Skv; ++j) {
        for (int64_t d = 0; d < s.D; ++d) row[d] = to_float(p.k(b, kv, j, d));
        detail::phi_row<double>(p, row.data(), &pk[j * s.D], s.D);
      }
      std::fill(dphik.begin(), dphik.end(), 0.0);
      for (int64_t h = kv * s.group(); h < (kv + 1) * s.group(); ++h) {
        for (int64_t i = 0; i < s.Sq; ++i) {
          for (int64_t d = 0; d < s.D; ++d) row[d] = to_float(p.q(b, h, i, d));
          detail::phi_row<double>(p, row.data(), pq.data(), s.D);
          const int64_t keys = p.causal ? i + 1 : s.Skv;
          double den = p.eps;
          std::fill(num.begin(), num.end(), 0.0);
          for (int64_t j = 0; j < keys; ++j) {
            double a = 0.0;
            for (int64_t d = 0; d < s.D; ++d) a += pq[d] * pk[j * s.D + d];
            A[j] = a;
            den += a;
            for (int64_t e = 0; e < s.Dv; ++e)
              num[e] += a * to_float(p.v(b, kv, j, e));
          }
          if (den == 0.0) continue;  // out 0: no gradient
          double dden = 0.0;
          for (int64_t e = 0; e < s.Dv; ++e) {
            const double go = to_float(pb.dout(b, h, i, e));
            dnum[e] = go / den;
            dden -= go * (num[e] / den) / den;
          }
          std::fill(dphiq.begin(), dphiq.end(), 0.0);
          double* dv = &g.dv[(b * s.Hkv + kv) * s.Skv * s.Dv];
          for (int64_t j = 0; j < keys; ++j) {
            double da = dden;
            for (int64_t e = 0; e < s.Dv; ++e) {
              const double vj = to_float(p.v(b, kv, j, e));
              da += dnum[e] * vj;
              dv[j * s.Dv + e] += A[j] * dnum[e];
            }
            for (int64_t d = 0; d < s.D; ++d) {
              dphiq[d] += da * pk[j * s.D + d];
              dphik[j * s.D + d] += da * pq[d];
            }
          }
          double* dq = &g.dq[((b * s.Hq + h) * s.Sq + i) * s.D];
          for (int64_t d = 0; d < s.D; ++d) {
            dq[d] = dphiq[d] * detail::phi_derivative<double>(p.map, row[d]);
          }
        }
      }
      for (int64_t j = 0; j < s.Skv; ++j) {
        double* dk = &g.dk[((b * s.Hkv + kv) * s.Skv + j) * s.D];
        for (int64_t d = 0; d < s.D; ++d) {
          dk[d] = dphik[j * s.D + d] * detail::phi_derivative<double>(
                                           p.map, to_float(p.k(b, kv, j, d)));
        }
      }
    }
  }
  return g;
}

template <class T>
void linear_attention_backward(const detail::LinearBackwardProblem<T>& pb) {
  const LinearGrads g = linear_backward_f64(pb);
  const detail::Shape& s = pb.forward.shape;
  auto out = [](double x) { return from_float<T>(static_cast<float>(x)); };
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.Hq; ++h)
      for (int64_t i = 0; i < s.Sq; ++i)
        for (int64_t d = 0; d < s.D; ++d)
          pb.dq(b, h, i, d) = out(g.dq[((b * s.Hq + h) * s.Sq + i) * s.D + d]);
    for (int64_t h = 0; h < s.Hkv; ++h)
      for (int64_t j = 0; j < s.Skv; ++j) {
        for (int64_t d = 0; d < s.D; ++d)
          pb.dk(b, h, j, d) =
              out(g.dk[((b * s.Hkv + h) * s.Skv + j) * s.D + d]);
        for (int64_t e = 0; e < s.Dv; ++e)
          pb.dv(b, h, j, e) =
              out(g.dv[((b * s.Hkv + h) * s.Skv + j) * s.Dv + e]);
      }
  }
}

#define ATTN_INSTANTIATE(T)                                        \
  template std::vector<double> linear_attention_f64(               \
      const detail::LinearProblem<T>&);                            \
  template void linear_attention(const detail::LinearProblem<T>&); \
  template LinearGrads linear_backward_f64(                        \
      const detail::LinearBackwardProblem<T>&);                    \
  template void linear_attention_backward(                         \
      const detail::LinearBackwardProblem<T>&);
ATTN_INSTANTIATE(float)
ATTN_INSTANTIATE(bfloat16)
ATTN_INSTANTIATE(float16)
#undef ATTN_INSTANTIATE

}  // namespace attn::reference
