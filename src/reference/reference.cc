// The float64 reference: docs/semantics.md as the simplest possible code.
//
// For each (b, h), with kv = h / G:
//   1. S[i, j] = score(scale * q_i . k_j)  if key j is visible to query i,
//               -inf otherwise                       (Sq x Skv, materialised)
//   2. m_i = max_j S[i, j];  l_i = sum_j exp(S[i, j] - m_i)
//   3. P[i, j] = exp(S[i, j] - m_i) / l_i            (Sq x Skv, materialised)
//   4. out_i = sum_j P[i, j] v_j;  lse_i = m_i + log(l_i)
// A row whose every score is -inf has out_i = 0 and lse_i = -inf; a row
// with a NaN or +inf score among its visible keys is NaN throughout, lse
// NaN. Keys of weight 0 (hidden, scored -inf, dropped) contribute nothing,
// whatever v holds there. Scores are held to float32's range (rule 8).
// Single-threaded and unoptimised on purpose: it is the oracle.
#include "src/reference/reference.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "src/reference/widen.h"

namespace attn::reference {
namespace {

// Rule 8: a product or score beyond float32's range is +-inf in every
// algorithm, the reference included, although float64 could hold it.
constexpr double kFloatMax = std::numeric_limits<float>::max();

double float_range(double s) {
  const double inf = std::numeric_limits<double>::infinity();
  return s > kFloatMax ? inf : s < -kFloatMax ? -inf : s;
}

// The dot product as the float32 algorithms carry it into the score: +-inf
// when it, or it times the scale, leaves float32's range.
double float_dot(double dot, float scale) {
  if (std::abs(dot) > kFloatMax ||
      std::abs(static_cast<double>(scale) * dot) > kFloatMax) {
    return std::copysign(std::numeric_limits<double>::infinity(), dot);
  }
  return dot;
}

}  // namespace

template <class T>
Result attention_f64(const detail::Problem<T>& problem) {
  const detail::Params& p = problem.params;
  const detail::Shape& s = p.shape;
  const double kNegInf = -std::numeric_limits<double>::infinity();
  Result r;
  r.out.assign(s.B * s.Hq * s.Sq * s.Dv, 0.0);
  r.lse.assign(s.B * s.Hq * s.Sq, kNegInf);
  std::vector<double> S(s.Sq * s.Skv), P(s.Sq * s.Skv);

  std::vector<double> k, v;  // the KV head of the current group
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.Hq; ++h) {
      const int64_t kv = h / s.group();
      if (h % s.group() == 0) {
        k = widen_head(problem.k, b, kv);
        v = widen_head(problem.v, b, kv);
      }
      const std::vector<double> q = widen_head(problem.q, b, h);
      // 1. Scores.
      for (int64_t i = 0; i < s.Sq; ++i) {
        const double* qi = &q[i * s.D];
        for (int64_t j = 0; j < s.Skv; ++j) {
          S[i * s.Skv + j] = kNegInf;
          if (!p.visible(b, h, i, j)) continue;
          const double* kj = &k[j * s.D];
          double dot = 0.0;
          for (int64_t d = 0; d < s.D; ++d) dot += qi[d] * kj[d];
          S[i * s.Skv + j] =
              float_range(p.score<double>(float_dot(dot, p.scale), b, h, i, j));
        }
      }
      for (int64_t i = 0; i < s.Sq; ++i) {
        const double* Si = S.data() + i * s.Skv;
        double* Pi = P.data() + i * s.Skv;
        // 2. Row maximum and sum.
        // Rule 8: a NaN or +inf score poisons the row.
        double m = kNegInf;
        bool poisoned = false;
        for (int64_t j = 0; j < s.Skv; ++j) {
          poisoned = poisoned || !(Si[j] < -kNegInf);
          m = std::max(m, Si[j]);
        }
        const int64_t row = (b * s.Hq + h) * s.Sq + i;
        if (poisoned) {
          const double nan = std::numeric_limits<double>::quiet_NaN();
          std::fill(&r.out[row * s.Dv], &r.out[row * s.Dv] + s.Dv, nan);
          r.lse[row] = nan;
          continue;
        }
        if (m == kNegInf) continue;  // no visible key: out 0, lse -inf
        double l = 0.0;
        for (int64_t j = 0; j < s.Skv; ++j) {
          Pi[j] = std::exp(Si[j] - m);
          l += Pi[j];
        }
        // 3. Probabilities.
        for (int64_t j = 0; j < s.Skv; ++j) Pi[j] /= l;
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
          const double* vj = &v[j * s.Dv];
          for (int64_t d = 0; d < s.Dv; ++d) out[d] += w * vj[d];
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
