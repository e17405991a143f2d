// The math-path baseline (math_path.h): BLAS products, Highway softmax.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/support/math_path.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace attn::bench {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Row i of P [S, S] in place: softmax of scale * row over its first n
// entries (the rest, hidden by causality, 0).
void SoftmaxRow(float* row, int64_t S, int64_t n, float scale) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto vscale = hn::Set(df, scale);
  auto vmax = hn::Set(df, -std::numeric_limits<float>::infinity());
  int64_t j = 0;
  for (; j + N <= n; j += N) {
    vmax = hn::Max(vmax, hn::Mul(hn::LoadU(df, row + j), vscale));
  }
  float m = hn::GetLane(hn::MaxOfLanes(df, vmax));
  for (int64_t t = j; t < n; ++t) m = std::max(m, row[t] * scale);
  const auto vm = hn::Set(df, m);
  auto vsum = hn::Zero(df);
  j = 0;
  for (; j + N <= n; j += N) {
    const auto e =
        hn::Exp(df, hn::Sub(hn::Mul(hn::LoadU(df, row + j), vscale), vm));
    hn::StoreU(e, df, row + j);
    vsum = hn::Add(vsum, e);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, vsum));
  for (int64_t t = j; t < n; ++t) {
    row[t] = std::exp(row[t] * scale - m);
    sum += row[t];
  }
  const auto inv = hn::Set(df, 1.0f / sum);
  j = 0;
  for (; j + N <= n; j += N) {
    hn::StoreU(hn::Mul(hn::LoadU(df, row + j), inv), df, row + j);
  }
  for (int64_t t = j; t < n; ++t) row[t] *= 1.0f / sum;
  for (int64_t t = n; t < S; ++t) row[t] = 0.0f;
}

// dS = P * (dP - delta) over a row of n, in place in dp.
void DsRow(const float* p, float* dp, int64_t n, float delta) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto vd = hn::Set(df, delta);
  int64_t j = 0;
  for (; j + N <= n; j += N) {
    hn::StoreU(
        hn::Mul(hn::LoadU(df, p + j), hn::Sub(hn::LoadU(df, dp + j), vd)), df,
        dp + j);
  }
  for (; j < n; ++j) dp[j] = p[j] * (dp[j] - delta);
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::bench
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "bench/support/math_path.h"
#include "src/nn/rows.h"

namespace attn::bench {

HWY_EXPORT(SoftmaxRow);
HWY_EXPORT(DsRow);

MathPathAttention::MathPathAttention(int64_t B, int64_t Hq, int64_t Hkv,
                                     int64_t S, int64_t D, bool causal,
                                     int threads)
    : B_(B),
      Hq_(Hq),
      Hkv_(Hkv),
      S_(S),
      D_(D),
      causal_(causal),
      threads_(threads > 0 ? threads : omp_get_max_threads()),
      scale_(1.0f / std::sqrt(static_cast<float>(D))),
      p_(static_cast<size_t>(B * Hq * S * S)),
      dp_(static_cast<size_t>(S * S)) {}

void MathPathAttention::forward(const float* q, const float* k, const float* v,
                                float* out) {
  using attn::nn::detail::sgemm;
  const int64_t S = S_, D = D_, G = Hq_ / Hkv_;
  const auto softmax = HWY_DYNAMIC_DISPATCH(SoftmaxRow);
  for (int64_t b = 0; b < B_; ++b) {
    for (int64_t h = 0; h < Hq_; ++h) {
      const int64_t kvh = b * Hkv_ + h / G, qh = b * Hq_ + h;
      float* P = p_.data() + qh * S * S;
      sgemm(false, true, S, S, D, q + qh * S * D, D, k + kvh * S * D, D, 0.0f,
            P, S);
#pragma omp parallel for num_threads(threads_) schedule(static)
      for (int64_t i = 0; i < S; ++i) {
        softmax(P + i * S, S, causal_ ? i + 1 : S, scale_);
      }
      sgemm(false, false, S, D, S, P, S, v + kvh * S * D, D, 0.0f,
            out + qh * S * D, D);
    }
  }
}

void MathPathAttention::backward(const float* q, const float* k, const float* v,
                                 const float* out, const float* dout, float* dq,
                                 float* dk, float* dv) {
  using attn::nn::detail::sgemm;
  const int64_t S = S_, D = D_, G = Hq_ / Hkv_;
  const auto ds_row = HWY_DYNAMIC_DISPATCH(DsRow);
  std::fill(dk, dk + B_ * Hkv_ * S * D, 0.0f);
  std::fill(dv, dv + B_ * Hkv_ * S * D, 0.0f);
  for (int64_t b = 0; b < B_; ++b) {
    for (int64_t h = 0; h < Hq_; ++h) {
      const int64_t kvh = b * Hkv_ + h / G, qh = b * Hq_ + h;
      const float* P = p_.data() + qh * S * S;
      const float *qr = q + qh * S * D, *o = out + qh * S * D,
                  *g = dout + qh * S * D;
      // dV += P^T dO; dP = dO V^T.
      sgemm(true, false, S, D, S, P, S, g, D, 1.0f, dv + kvh * S * D, D);
      sgemm(false, true, S, S, D, g, D, v + kvh * S * D, D, 0.0f, dp_.data(),
            S);
#pragma omp parallel for num_threads(threads_) schedule(static)
      for (int64_t i = 0; i < S; ++i) {
        float delta = 0.0f;
        for (int64_t d = 0; d < D; ++d) delta += g[i * D + d] * o[i * D + d];
        ds_row(P + i * S, dp_.data() + i * S, S, delta);
      }
      // dQ = scale dS K; dK += scale dS^T Q (scale folded in after).
      sgemm(false, false, S, D, S, dp_.data(), S, k + kvh * S * D, D, 0.0f,
            dq + qh * S * D, D);
      for (int64_t x = 0; x < S * D; ++x) dq[qh * S * D + x] *= scale_;
      std::vector<float> dkh(static_cast<size_t>(S * D));
      sgemm(true, false, S, D, S, dp_.data(), S, qr, D, 0.0f, dkh.data(), D);
      float* dkk = dk + kvh * S * D;
      for (int64_t x = 0; x < S * D; ++x) dkk[x] += scale_ * dkh[x];
    }
  }
}

}  // namespace attn::bench
#endif  // HWY_ONCE
