// Naive float32 attention: the unfused "math" path that speed-ups are quoted
// against, like a framework's materialising fallback.
//
// Per (b, h) -- one work item, kv = h / G -- with S an Sq x Skv float32
// buffer owned by the worker:
//   1. S[i, j] = score(scale * q_i . k_j) if visible, else -inf bhqd,bhkd->bhqk
//   2. per row: m = max_j S, P = exp(S - m) in place, l = sum_j P
//   3. out_i = (sum_j P[i, j] v_j) / l;  lse_i = m + log(l) bhqk,bhkd->bhqd
// A row with no visible key (m = -inf) gives out 0 and lse -inf; a NaN or
// +inf score among its visible keys makes it NaN, lse NaN (rule 8).
// Memory: Sq * Skv floats per worker, allocated once per call before the
// parallel loop. Summation order is fixed (dot8 below, then j ascending), so
// results do not depend on the thread count.
#include "src/kernels/naive.h"

#include <cmath>
#include <limits>
#include <vector>

#include "src/util/parallel.h"

namespace attn::kernels {
namespace {

// Dot product with 8 interleaved partial sums combined pairwise: a fixed
// order the compiler can vectorise without -ffast-math.
float dot8(const float* a, const float* b, int64_t n) {
  float acc[8] = {};
  int64_t d = 0;
  for (; d + 8 <= n; d += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += a[d + l] * b[d + l];
  }
  for (int l = 0; d < n; ++d, ++l) acc[l] += a[d] * b[d];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) +
         ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// Copies a row of n elements of T into float.
template <class T>
void widen(const T* src, int64_t n, float* dst) {
  for (int64_t d = 0; d < n; ++d) dst[d] = to_float(src[d]);
}

}  // namespace

template <class T>
void naive_attention(const detail::Problem<T>& problem) {
  const detail::Params& p = problem.params;
  const detail::Shape& s = p.shape;
  const float kNegInf = -std::numeric_limits<float>::infinity();
  const int threads = naive_workers(p, s.B * s.Hq);

  // Per-worker scratch: S, K and V of one head widened to float, one q row,
  // one output row.
  struct Scratch {
    std::vector<float> S, K, V, q, acc;
  };
  std::vector<Scratch> scratch(threads);
  for (Scratch& w : scratch) {
    w.S.resize(s.Sq * s.Skv);
    w.K.resize(s.Skv * s.D);
    w.V.resize(s.Skv * s.Dv);
    w.q.resize(s.D);
    w.acc.resize(s.Dv);
  }

  util::ParallelFor(s.B * s.Hq, threads, [&](int64_t item, int worker) {
    Scratch& w = scratch[worker];
    const int64_t b = item / s.Hq, h = item % s.Hq, kv = h / s.group();
    for (int64_t j = 0; j < s.Skv; ++j) {
      widen(problem.k.row(b, kv, j), s.D, &w.K[j * s.D]);
      widen(problem.v.row(b, kv, j), s.Dv, &w.V[j * s.Dv]);
    }
    // 1. Scores.
    for (int64_t i = 0; i < s.Sq; ++i) {
      widen(problem.q.row(b, h, i), s.D, w.q.data());
      float* Si = w.S.data() + i * s.Skv;
      for (int64_t j = 0; j < s.Skv; ++j) {
        Si[j] = p.visible(b, h, i, j)
                    ? p.score<float>(dot8(w.q.data(), &w.K[j * s.D], s.D), b, h,
                                     i, j)
                    : kNegInf;
      }
    }
    for (int64_t i = 0; i < s.Sq; ++i) {
      float* Si = w.S.data() + i * s.Skv;
      T* out = problem.out.row(b, h, i);
      // 2. Softmax numerator in place; a NaN or +inf score poisons the row.
      float m = kNegInf;
      bool poisoned = false;
      for (int64_t j = 0; j < s.Skv; ++j) {
        poisoned = poisoned || !(Si[j] < -kNegInf);
        m = std::max(m, Si[j]);
      }
      if (poisoned) {
        const float nan = std::numeric_limits<float>::quiet_NaN();
        for (int64_t d = 0; d < s.Dv; ++d) out[d] = from_float<T>(nan);
        if (!problem.lse.empty()) problem.lse(b, h, i, 0) = nan;
        continue;
      }
      float l = 0.0f;
      if (m != kNegInf) {
        for (int64_t j = 0; j < s.Skv; ++j) {
          Si[j] = std::exp(Si[j] - m);
          l += Si[j];
        }
      }
      // 3. Weighted sum of values, normalised once.
      std::fill(w.acc.begin(), w.acc.end(), 0.0f);
      if (m != kNegInf) {
        const uint64_t drop_row = p.dropout.row(b, h, i);
        for (int64_t j = 0; j < s.Skv; ++j) {
          const float pj =
              p.dropout.on() ? Si[j] * p.dropout.factor(drop_row, j) : Si[j];
          if (pj == 0.0f) continue;
          const float* vj = &w.V[j * s.Dv];
          for (int64_t d = 0; d < s.Dv; ++d) w.acc[d] += pj * vj[d];
        }
      }
      const float inv_l = m != kNegInf ? 1.0f / l : 0.0f;
      for (int64_t d = 0; d < s.Dv; ++d)
        out[d] = from_float<T>(w.acc[d] * inv_l);
      if (!problem.lse.empty()) {
        problem.lse(b, h, i, 0) = m != kNegInf ? m + std::log(l) : kNegInf;
      }
    }
  });
}

template <class T>
void naive_attention_backward(const detail::BackwardProblem<T>& pb) {
  const detail::Params& p = pb.params;
  const detail::Shape& s = p.shape;
  const int threads = naive_workers(p, s.B * s.Hkv);
  const int64_t G = s.group();
  const float kNegInf = -std::numeric_limits<float>::infinity();

  // Per worker: P, dS (and the softcap factor) of one head, that head's q
  // and dout rows, the group's K and V, and float dk, dv accumulators.
  struct Scratch {
    std::vector<float> P, dS, F, Q, dO, K, V, dK, dV, dq;
  };
  std::vector<Scratch> scratch(threads);
  for (Scratch& w : scratch) {
    w.P.resize(s.Sq * s.Skv);
    w.dS.resize(s.Sq * s.Skv);
    if (p.softcap > 0.0f || p.pattern.has_score()) w.F.resize(s.Sq * s.Skv);
    w.Q.resize(s.Sq * s.D);
    w.dO.resize(s.Sq * s.Dv);
    w.K.resize(s.Skv * s.D);
    w.V.resize(s.Skv * s.Dv);
    w.dK.resize(s.Skv * s.D);
    w.dV.resize(s.Skv * s.Dv);
    w.dq.resize(s.D);
  }

  util::ParallelFor(s.B * s.Hkv, threads, [&](int64_t item, int worker) {
    Scratch& w = scratch[worker];
    const int64_t b = item / s.Hkv, kv = item % s.Hkv;
    for (int64_t j = 0; j < s.Skv; ++j) {
      widen(pb.k.row(b, kv, j), s.D, &w.K[j * s.D]);
      widen(pb.v.row(b, kv, j), s.Dv, &w.V[j * s.Dv]);
    }
    std::fill(w.dK.begin(), w.dK.end(), 0.0f);
    std::fill(w.dV.begin(), w.dV.end(), 0.0f);
    for (int64_t g = 0; g < G; ++g) {
      const int64_t h = kv * G + g;
      // P = exp(S - lse) and dS = P (dout v^T - Delta) * ds/d(q.k).
      for (int64_t i = 0; i < s.Sq; ++i) {
        float* q = &w.Q[i * s.D];
        float* dout = &w.dO[i * s.Dv];
        widen(pb.q.row(b, h, i), s.D, q);
        widen(pb.dout.row(b, h, i), s.Dv, dout);
        const float lse = pb.lse(b, h, i, 0);
        float* Pi = &w.P[i * s.Skv];
        float* dSi = &w.dS[i * s.Skv];
        if (lse == kNegInf) {  // no visible key: no gradient from this row
          std::fill(Pi, Pi + s.Skv, 0.0f);
          std::fill(dSi, dSi + s.Skv, 0.0f);
          continue;
        }
        const T* out = pb.out.row(b, h, i);
        float delta = 0.0f;
        for (int64_t d = 0; d < s.Dv; ++d) delta += dout[d] * to_float(out[d]);
        for (int64_t j = 0; j < s.Skv; ++j) {
          if (!p.visible(b, h, i, j)) {
            Pi[j] = 0.0f;
            if (!w.F.empty()) w.F[i * s.Skv + j] = 0.0f;
            continue;
          }
          const float dot = dot8(q, &w.K[j * s.D], s.D);
          Pi[j] = std::exp(p.score<float>(dot, b, h, i, j) - lse);
          if (!w.F.empty()) {  // d s / d(q.k): softcap, pattern score
            float f = p.scale;
            if (p.softcap > 0.0f) {
              const float t = std::tanh(p.scale * dot / p.softcap);
              f *= 1.0f - t * t;
            }
            if (p.pattern.has_score()) {
              f *= p.pattern.score_grad(p.score_builtin<float>(dot, b, h, i, j),
                                        b, h, i + p.offset_of(b), j);
            }
            w.F[i * s.Skv + j] = f;
          }
        }
        const uint64_t drop_row = p.dropout.row(b, h, i);
        for (int64_t j = 0; j < s.Skv; ++j) {
          float dp = dot8(dout, &w.V[j * s.Dv], s.Dv);
          // Dropout: dP through the kept weights, dv from P z (P kept for dS).
          float z = 1.0f;
          if (p.dropout.on()) {
            z = p.dropout.factor(drop_row, j);
            dp *= z;
          }
          const float f = w.F.empty() ? p.scale : w.F[i * s.Skv + j];
          dSi[j] = Pi[j] * (dp - delta) * f;
          if (p.dropout.on()) Pi[j] *= z;
        }
      }
      // dq = dS k.
      for (int64_t i = 0; i < s.Sq; ++i) {
        const float* dSi = &w.dS[i * s.Skv];
        std::fill(w.dq.begin(), w.dq.end(), 0.0f);
        for (int64_t j = 0; j < s.Skv; ++j) {
          const float* kj = &w.K[j * s.D];
          for (int64_t d = 0; d < s.D; ++d) w.dq[d] += dSi[j] * kj[d];
        }
        T* dq = pb.dq.row(b, h, i);
        for (int64_t d = 0; d < s.D; ++d) dq[d] = from_float<T>(w.dq[d]);
      }
      // dk += dS^T q, dv += P^T dout.
      for (int64_t i = 0; i < s.Sq; ++i) {
        const float* q = &w.Q[i * s.D];
        const float* dout = &w.dO[i * s.Dv];
        for (int64_t j = 0; j < s.Skv; ++j) {
          const float ds = w.dS[i * s.Skv + j], pij = w.P[i * s.Skv + j];
          float* dk = &w.dK[j * s.D];
          float* dv = &w.dV[j * s.Dv];
          for (int64_t d = 0; d < s.D; ++d) dk[d] += ds * q[d];
          for (int64_t d = 0; d < s.Dv; ++d) dv[d] += pij * dout[d];
        }
      }
    }
    for (int64_t j = 0; j < s.Skv; ++j) {
      T* dk = pb.dk.row(b, kv, j);
      T* dv = pb.dv.row(b, kv, j);
      for (int64_t d = 0; d < s.D; ++d)
        dk[d] = from_float<T>(w.dK[j * s.D + d]);
      for (int64_t d = 0; d < s.Dv; ++d)
        dv[d] = from_float<T>(w.dV[j * s.Dv + d]);
    }
  });
}

template void naive_attention(const detail::Problem<float>&);
template void naive_attention(const detail::Problem<bfloat16>&);
template void naive_attention(const detail::Problem<float16>&);
template void naive_attention_backward(const detail::BackwardProblem<float>&);
template void naive_attention_backward(
    const detail::BackwardProblem<bfloat16>&);
template void naive_attention_backward(const detail::BackwardProblem<float16>&);

}  // namespace attn::kernels
