// The O(S D Dv) backward of linear attention (attn/linear.h), one work item
// per (b, KV head):
//
//   forward scan, per query head of the group, i = 0, 1, ...:
//     (causal: fold key i into S = sum phi(k_j) v_j^T, z = sum phi(k_j)
//      first; otherwise S, z are the totals over every key)
//     num = S^T phi(q_i), den = phi(q_i) . z + eps, out = num / den
//     dnum_i = dout_i / den, dden_i = -(dout_i . out) / den   (kept)
//     dq_i = (S dnum_i + dden_i z) * phi'(q_i)
//   reverse scan over keys, j = Skv - 1, ..., 0, for the whole group:
//     (causal: fold every query head's row j into U = sum phi(q_i) dnum_i^T
//      and w = sum dden_i phi(q_i) first; otherwise the totals)
//     dv_j = U^T phi(k_j),  dk_j = (U v_j + w) * phi'(k_j)
//
// States in float64 (the sums run over the whole sequence); memory per
// worker: S and U (D x Dv doubles), z, w, and dnum, dden of the group's
// rows (G Sq (Dv + 1) doubles). Items are independent and each sums in a
// fixed order, so results do not depend on the thread count.
#include <algorithm>
#include <vector>

#include "src/kernels/linear.h"
#include "src/util/parallel.h"

namespace attn::kernels {

template <class T>
void linear_backward_scan(const LinearBackwardProblem<T>& pb) {
  const LinearProblem<T>& p = pb.forward;
  const detail::Shape& s = p.shape;
  const int64_t D = s.D, Dv = s.Dv, G = s.group();
  const int threads = util::resolve_threads(p.num_threads);
  struct Scratch {
    std::vector<double> S, z, U, w, dnum, dden, num, acc;
    std::vector<float> x, phi;
  };
  std::vector<Scratch> scratch(threads);
  for (Scratch& w : scratch) {
    w.S.resize(D * Dv);
    w.z.resize(D);
    w.U.resize(D * Dv);
    w.w.resize(D);
    w.dnum.resize(G * s.Sq * Dv);
    w.dden.resize(G * s.Sq);
    w.num.resize(Dv);
    w.acc.resize(std::max(D, Dv));
    w.x.resize(D);
    w.phi.resize(D);
  }
  // phi of a stored row, in float (as the forward kernels compute it).
  auto phi_of = [&](const T* src, Scratch& w) {
    for (int64_t d = 0; d < D; ++d) w.x[d] = to_float(src[d]);
    phi_row<float>(p, w.x.data(), w.phi.data(), D);
  };
  // Folds phi (D) times row (n) into M (D x n) and phi into m.
  auto fold = [](const float* phi, const double* row, int64_t D_, int64_t n,
                 double* M, double* m, double scale_m) {
    for (int64_t d = 0; d < D_; ++d) {
      const double f = phi[d];
      double* Mr = M + d * n;
      for (int64_t e = 0; e < n; ++e) Mr[e] += f * row[e];
      m[d] += f * scale_m;
    }
  };

  util::ParallelFor(s.B * s.Hkv, threads, [&](int64_t item, int worker) {
    Scratch& w = scratch[worker];
    const int64_t b = item / s.Hkv, kv = item % s.Hkv;
    std::vector<double> vrow(Dv);
    auto fold_key = [&](int64_t j) {
      phi_of(p.k.row(b, kv, j), w);
      for (int64_t e = 0; e < Dv; ++e) vrow[e] = to_float(p.v(b, kv, j, e));
      fold(w.phi.data(), vrow.data(), D, Dv, w.S.data(), w.z.data(), 1.0);
    };
    // Forward scan.
    for (int64_t g = 0; g < G; ++g) {
      const int64_t h = kv * G + g;
      std::fill(w.S.begin(), w.S.end(), 0.0);
      std::fill(w.z.begin(), w.z.end(), 0.0);
      if (!p.causal) {
        for (int64_t j = 0; j < s.Skv; ++j) fold_key(j);
      }
      for (int64_t i = 0; i < s.Sq; ++i) {
        if (p.causal) fold_key(i);
        phi_of(p.q.row(b, h, i), w);
        double den = p.eps;
        for (int64_t d = 0; d < D; ++d) den += double(w.phi[d]) * w.z[d];
        double* dnum = &w.dnum[(g * s.Sq + i) * Dv];
        double& dden = w.dden[g * s.Sq + i];
        T* dq = pb.dq.row(b, h, i);
        if (den == 0.0) {  // out 0: no gradient
          std::fill(dnum, dnum + Dv, 0.0);
          dden = 0.0;
          for (int64_t d = 0; d < D; ++d) dq[d] = from_float<T>(0.0f);
          continue;
        }
        std::fill(w.num.begin(), w.num.end(), 0.0);
        for (int64_t d = 0; d < D; ++d) {
          const double f = w.phi[d];
          const double* Sr = &w.S[d * Dv];
          for (int64_t e = 0; e < Dv; ++e) w.num[e] += f * Sr[e];
        }
        dden = 0.0;
        for (int64_t e = 0; e < Dv; ++e) {
          const double go = to_float(pb.dout(b, h, i, e));
          dnum[e] = go / den;
          dden -= go * (w.num[e] / den) / den;
        }
        for (int64_t d = 0; d < D; ++d) {
          const double* Sr = &w.S[d * Dv];
          double acc = dden * w.z[d];
          for (int64_t e = 0; e < Dv; ++e) acc += Sr[e] * dnum[e];
          dq[d] = from_float<T>(
              static_cast<float>(acc * phi_derivative<double>(p.map, w.x[d])));
        }
      }
    }
    // Reverse scan over keys, the group's rows folded into U and w.
    std::fill(w.U.begin(), w.U.end(), 0.0);
    std::fill(w.w.begin(), w.w.end(), 0.0);
    auto fold_row = [&](int64_t i) {
      for (int64_t g = 0; g < G; ++g) {
        phi_of(p.q.row(b, kv * G + g, i), w);
        fold(w.phi.data(), &w.dnum[(g * s.Sq + i) * Dv], D, Dv, w.U.data(),
             w.w.data(), w.dden[g * s.Sq + i]);
      }
    };
    if (!p.causal) {
      for (int64_t i = 0; i < s.Sq; ++i) fold_row(i);
    }
    for (int64_t j = s.Skv - 1; j >= 0; --j) {
      if (p.causal) fold_row(j);
      phi_of(p.k.row(b, kv, j), w);
      T* dv = pb.dv.row(b, kv, j);
      T* dk = pb.dk.row(b, kv, j);
      std::fill(w.acc.begin(), w.acc.end(), 0.0);
      for (int64_t d = 0; d < D; ++d) {
        const double f = w.phi[d];
        const double* Ur = &w.U[d * Dv];
        for (int64_t e = 0; e < Dv; ++e) w.acc[e] += f * Ur[e];
      }
      for (int64_t e = 0; e < Dv; ++e)
        dv[e] = from_float<T>(static_cast<float>(w.acc[e]));
      for (int64_t e = 0; e < Dv; ++e) vrow[e] = to_float(p.v(b, kv, j, e));
      for (int64_t d = 0; d < D; ++d) {
        const double* Ur = &w.U[d * Dv];
        double acc = w.w[d];
        for (int64_t e = 0; e < Dv; ++e) acc += Ur[e] * vrow[e];
        dk[d] = from_float<T>(
            static_cast<float>(acc * phi_derivative<double>(p.map, w.x[d])));
      }
    }
  });
}

template void linear_backward_scan(const LinearBackwardProblem<float>&);
template void linear_backward_scan(const LinearBackwardProblem<bfloat16>&);
template void linear_backward_scan(const LinearBackwardProblem<float16>&);

}  // namespace attn::kernels
