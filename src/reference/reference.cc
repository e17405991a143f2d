// The float64 reference: docs/semantics.md as the simplest possible code.
//
// For each (b, h), with kv = h / G:
//   1. S[i, j] = score(scale * q_i . k_j)  if key j is visible to query i,
//               -inf otherwise                       (Sq x Skv, materialised)
//   2. m_i = max_j S[i, j];  l_i = sum_j exp(S[i, j] - m_i)
//   3. P[i, j] = exp(S[i, j] - m_i) / l_i            (Sq x Skv, materialised)
//   4. out_i = sum_j P[i, j] v_j;  lse_i = m_i + log(l_i)
// A row whose every score is -inf has out_i = 0 and lse_i = -inf. Hidden
// keys (score -inf) contribute nothing, whatever v holds there.
// Single-threaded and unoptimised on purpose: it is the oracle.
#include "src/reference/reference.h"

#include <cmath>
#include <limits>

namespace attn::reference {

template <class T>
Result attention_f64(const detail::Problem<T>& problem) {
  const detail::Params& p = problem.params;
  const detail::Shape& s = p.shape;
  const double kNegInf = -std::numeric_limits<double>::infinity();
  Result r;
  r.out.assign(s.B * s.Hq * s.Sq * s.Dv, 0.0);
  r.lse.assign(s.B * s.Hq * s.Sq, kNegInf);
  std::vector<double> S(s.Sq * s.Skv), P(s.Sq * s.Skv);

  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.Hq; ++h) {
      const int64_t kv = h / s.group();
      // 1. Scores.
      for (int64_t i = 0; i < s.Sq; ++i) {
        for (int64_t j = 0; j < s.Skv; ++j) {
          double dot = 0.0;
          for (int64_t d = 0; d < s.D; ++d) {
            dot += static_cast<double>(to_float(problem.q(b, h, i, d))) *
                   static_cast<double>(to_float(problem.k(b, kv, j, d)));
          }
          S[i * s.Skv + j] = p.visible(b, h, i, j)
                                 ? p.score<double>(dot, b, h, i, j)
                                 : kNegInf;
        }
      }
      for (int64_t i = 0; i < s.Sq; ++i) {
        const double* Si = S.data() + i * s.Skv;
        double* Pi = P.data() + i * s.Skv;
        // 2. Row maximum and sum.
        double m = kNegInf;
        for (int64_t j = 0; j < s.Skv; ++j) m = std::max(m, Si[j]);
        const int64_t row = (b * s.Hq + h) * s.Sq + i;
        if (m == kNegInf) continue;  // no visible key: out 0, lse -inf
        double l = 0.0;
        for (int64_t j = 0; j < s.Skv; ++j) l += std::exp(Si[j] - m);
        // 3. Probabilities.
        for (int64_t j = 0; j < s.Skv; ++j) Pi[j] = std::exp(Si[j] - m) / l;
        // 4. Output and log-sum-exp.
        double* out = &r.out[row * s.Dv];
        const uint64_t drop_row = p.dropout.row(b, h, i);
        for (int64_t j = 0; j < s.Skv; ++j) {
          if (Si[j] == kNegInf) continue;  // hidden keys' values are never read
          // Rule 7: dropped keys contribute nothing, kept ones / (1 - p).
          const double w =
              p.dropout.on()
                  ? Pi[j] * static_cast<double>(p.dropout.factor(drop_row, j))
                  : Pi[j];
          if (w == 0.0) continue;
          for (int64_t d = 0; d < s.Dv; ++d) {
            out[d] += w * static_cast<double>(to_float(problem.v(b, kv, j, d)));
          }
        }
        r.lse[row] = m + std::log(l);
      }
    }
  }
  return r;
}

template <class T>
void attention(const detail::Problem<T>& problem) {
  const detail::Shape& s = problem.params.shape;
  const Result r = attention_f64(problem);
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.Hq; ++h) {
      for (int64_t i = 0; i < s.Sq; ++i) {
        const int64_t row = (b * s.Hq + h) * s.Sq + i;
        for (int64_t d = 0; d < s.Dv; ++d) {
          problem.out(b, h, i, d) =
              from_float<T>(static_cast<float>(r.out[row * s.Dv + d]));
        }
        if (!problem.lse.empty()) {
          problem.lse(b, h, i, 0) = static_cast<float>(r.lse[row]);
        }
      }
    }
  }
}

template Result attention_f64(const detail::Problem<float>&);
template Result attention_f64(const detail::Problem<bfloat16>&);
template Result attention_f64(const detail::Problem<float16>&);
template void attention(const detail::Problem<float>&);
template void attention(const detail::Problem<bfloat16>&);
template void attention(const detail::Problem<float16>&);

}  // namespace attn::reference
