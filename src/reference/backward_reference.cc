// The float64 reference backward, straight from the materialised P:
//
// For each (b, h), kv = h / G, with S and P as in reference.cc:
//   out_i   = sum_j P_ij z_ij v_j           (recomputed, float64; z_ij the
//                                            dropout factor, 1 without)
//   Delta_i = dout_i . out_i
//   dP_ij   = (dout_i . v_j) z_ij
//   dS_ij   = P_ij (dP_ij - Delta_i) * scale * (1 - tanh^2(scale q.k / cap))
//             * score_grad (the tanh factor only under softcap, the last
//             only with a pattern's score functor; hidden keys: 0)
//   dq_i += sum_j dS_ij k_j;  dk_j += sum_i dS_ij q_i;  dv_j += sum_i P_ij z_ij
//   dout_i
// dk and dv of a KV head collect every query head of its group.
// Single-threaded and unoptimised on purpose: it is the oracle.
#include "src/reference/backward_reference.h"

#include <cmath>
#include <limits>

#include "src/reference/widen.h"

namespace attn::reference {

template <class T>
Grads attention_backward_f64(const detail::BackwardProblem<T>& pb) {
  const detail::Params& p = pb.params;
  const detail::Shape& s = p.shape;
  const double kNegInf = -std::numeric_limits<double>::infinity();
  Grads g;
  g.dq.assign(s.B * s.Hq * s.Sq * s.D, 0.0);
  g.dk.assign(s.B * s.Hkv * s.Skv * s.D, 0.0);
  g.dv.assign(s.B * s.Hkv * s.Skv * s.Dv, 0.0);
  std::vector<double> S(s.Sq * s.Skv), P(s.Sq * s.Skv), F(s.Sq * s.Skv);
  std::vector<double> o(s.Dv), Z(s.Skv);

  std::vector<double> k, v;  // the KV head of the current group
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.Hq; ++h) {
      const int64_t kv = h / s.group();
      if (h % s.group() == 0) {
        k = widen_head(pb.k, b, kv);
        v = widen_head(pb.v, b, kv);
      }
      const std::vector<double> q = widen_head(pb.q, b, h);
      const std::vector<double> dout = widen_head(pb.dout, b, h);
      // Scores, and the derivative of each score by its dot product.
      for (int64_t i = 0; i < s.Sq; ++i) {
        const double* qi = &q[i * s.D];
        for (int64_t j = 0; j < s.Skv; ++j) {
          S[i * s.Skv + j] = kNegInf;  // hidden keys: no score, no gradient
          F[i * s.Skv + j] = 0.0;
          if (!p.visible(b, h, i, j)) continue;
          const double* kj = &k[j * s.D];
          double dot = 0.0;
          for (int64_t d = 0; d < s.D; ++d) dot += qi[d] * kj[d];
          S[i * s.Skv + j] = p.score<double>(dot, b, h, i, j);
          double f = p.scale;
          if (p.softcap > 0.0f) {
            const double t = std::tanh(p.scale * dot / p.softcap);
            f *= 1.0 - t * t;
          }
          if (p.pattern.has_score()) {
            f *= p.pattern.score_grad(p.score_builtin<double>(dot, b, h, i, j),
                                      b, h, i + p.offset_of(b), j);
          }
          F[i * s.Skv + j] = f;
        }
      }
      for (int64_t i = 0; i < s.Sq; ++i) {
        const double* qi = &q[i * s.D];
        const double* Si = &S[i * s.Skv];
        double* Pi = &P[i * s.Skv];
        double m = kNegInf;
        for (int64_t j = 0; j < s.Skv; ++j) m = std::max(m, Si[j]);
        if (m == kNegInf) {  // no visible key: out 0, no gradient
          for (int64_t j = 0; j < s.Skv; ++j) Pi[j] = 0.0;
          continue;
        }
        double l = 0.0;
        for (int64_t j = 0; j < s.Skv; ++j) {
          Pi[j] = std::exp(Si[j] - m);
          l += Pi[j];
        }
        for (int64_t j = 0; j < s.Skv; ++j) Pi[j] /= l;
        // Dropout factors z_j (1 without dropout), out_i and Delta_i.
        const uint64_t drop_row = p.dropout.row(b, h, i);
        for (int64_t j = 0; j < s.Skv; ++j) {
          Z[j] = p.dropout.on() ? p.dropout.factor(drop_row, j) : 1.0;
        }
        std::fill(o.begin(), o.end(), 0.0);
        for (int64_t j = 0; j < s.Skv; ++j) {
          if (Pi[j] == 0.0) continue;
          const double* vj = &v[j * s.Dv];
          for (int64_t d = 0; d < s.Dv; ++d) o[d] += Pi[j] * Z[j] * vj[d];
        }
        const double* gi = &dout[i * s.Dv];
        double delta = 0.0;
        for (int64_t d = 0; d < s.Dv; ++d) delta += gi[d] * o[d];
        double* dq = &g.dq[((b * s.Hq + h) * s.Sq + i) * s.D];
        for (int64_t j = 0; j < s.Skv; ++j) {
          if (Pi[j] == 0.0) continue;
          const double* kj = &k[j * s.D];
          const double* vj = &v[j * s.Dv];
          double dp = 0.0;
          for (int64_t d = 0; d < s.Dv; ++d) dp += gi[d] * vj[d];
          dp *= Z[j];
          const double ds = Pi[j] * (dp - delta) * F[i * s.Skv + j];
          double* dk = &g.dk[((b * s.Hkv + kv) * s.Skv + j) * s.D];
          double* dv = &g.dv[((b * s.Hkv + kv) * s.Skv + j) * s.Dv];
          for (int64_t d = 0; d < s.D; ++d) {
            dq[d] += ds * kj[d];
            dk[d] += ds * qi[d];
          }
          for (int64_t d = 0; d < s.Dv; ++d) dv[d] += Pi[j] * Z[j] * gi[d];
        }
      }
    }
  }
  return g;
}

template <class T>
void attention_backward(const detail::BackwardProblem<T>& pb) {
  const detail::Shape& s = pb.params.shape;
  const Grads g = attention_backward_f64(pb);
  auto out = [](double x) { return from_float<T>(static_cast<float>(x)); };
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.Hq; ++h) {
      for (int64_t i = 0; i < s.Sq; ++i) {
        for (int64_t d = 0; d < s.D; ++d) {
          pb.dq(b, h, i, d) = out(g.dq[((b * s.Hq + h) * s.Sq + i) * s.D + d]);
        }
      }
    }
    for (int64_t h = 0; h < s.Hkv; ++h) {
      for (int64_t j = 0; j < s.Skv; ++j) {
        for (int64_t d = 0; d < s.D; ++d) {
          pb.dk(b, h, j, d) =
              out(g.dk[((b * s.Hkv + h) * s.Skv + j) * s.D + d]);
        }
        for (int64_t d = 0; d < s.Dv; ++d) {
          pb.dv(b, h, j, d) =
              out(g.dv[((b * s.Hkv + h) * s.Skv + j) * s.Dv + d]);
        }
      }
    }
  }
}

template Grads attention_backward_f64(const detail::BackwardProblem<float>&);
template Grads attention_backward_f64(const detail::BackwardProblem<bfloat16>&);
template Grads attention_backward_f64(const detail::BackwardProblem<float16>&);
template void attention_backward(const detail::BackwardProblem<float>&);
template void attention_backward(const detail::BackwardProblem<bfloat16>&);
template void attention_backward(const detail::BackwardProblem<float16>&);

}  // namespace attn::reference
