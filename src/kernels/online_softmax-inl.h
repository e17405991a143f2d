// Per-target online softmax of the tiled kernels (docs/semantics.md rule 5
// in base 2): per row a running max m and sum l; a tile's scores become
// probabilities 2^(s - m) in place, and the row of O is rescaled when m
// moves. m moves lazily (only when passed by 2^8), so most tiles skip the
// rescale. Included once per Highway target.
#if defined(ATTN_SRC_KERNELS_ONLINE_SOFTMAX_INL_H_) == \
    defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SRC_KERNELS_ONLINE_SOFTMAX_INL_H_
#undef ATTN_SRC_KERNELS_ONLINE_SOFTMAX_INL_H_
#else
#define ATTN_SRC_KERNELS_ONLINE_SOFTMAX_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "hwy/highway.h"
#include "src/kernels/row_ops-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// |m| (log2 units) from which the online softmax rounds each score before
// subtracting m (see SoftmaxRowLog2): half an ulp of 2^20 is 2^-4.
inline constexpr float kFusedLimit = 1048576.0f;

// Online-softmax update of one row of a tile of raw scores S: the scores in
// log2 units are s = score_scale * S (score_scale = scale * log2(e), or 1
// when the scores were finished in scalar code). Keys whose bit in `keep`
// is clear are hidden (keep != 0); P = 2^(s - m') replaces the scores in
// place; m, l and the row of O are updated (l 2^(m - m')). With
// score_scale > 0 the max is taken over S and the exponent's argument is
// one fused S * score_scale - m', rounded relative to |s - m'| rather
// than |s|, which is what keeps large logits accurate. A NaN or +inf score
// of a kept key poisons the row (rule 8 of docs/semantics.md): m becomes
// NaN and stays so, the tile's P is 0, and Finish writes the row as NaN.
HWY_INLINE void SoftmaxRowLog2(DF df, float* HWY_RESTRICT srow, uint64_t keep,
                               float score_scale, bool round_bf16, float& m,
                               float& l, float& lw, float* HWY_RESTRICT orow,
                               int64_t dvp) {
  const size_t N = hn::Lanes(df);
  if (std::isnan(m)) {  // poisoned by an earlier tile: nothing more to add
    std::fill(srow, srow + kKeyTile, 0.0f);
    return;
  }
  const VF neg_inf = hn::Set(df, -std::numeric_limits<float>::infinity());
  const VF inf = hn::Set(df, std::numeric_limits<float>::infinity());
  VF vmax = neg_inf;
  auto bad = hn::FirstN(df, 0);  // lanes with a NaN or +inf score
  // A negative or zero scale does not commute with the max: scale first.
  const bool fold = score_scale > 0.0f;
  if (!fold) {
    const VF vs = hn::Set(df, score_scale);
    for (int64_t j = 0; j < kKeyTile; j += N) {
      hn::Store(hn::Mul(hn::Load(df, srow + j), vs), df, srow + j);
    }
  }
  if (keep != ~uint64_t{0}) {  // boundary or masked tile for this row
    for (int64_t j = 0; j < kKeyTile; j += N) {
      const VF s = hn::IfThenElse(KeepMask(df, keep, j), hn::Load(df, srow + j),
                                  neg_inf);
      hn::Store(s, df, srow + j);
      vmax = hn::Max(vmax, s);
      bad = hn::Or(bad, hn::Not(hn::Lt(s, inf)));
    }
  } else {
    for (int64_t j = 0; j < kKeyTile; j += N) {
      const VF s = hn::Load(df, srow + j);
      vmax = hn::Max(vmax, s);
      bad = hn::Or(bad, hn::Not(hn::Lt(s, inf)));
    }
  }
  // The reference point m only has to keep 2^(s - m) in range, so it moves
  // only when the row max passes it by more than kLazyRescale (P <= 2^8
  // until then): most tiles then skip alpha and the rescaling of O.
  constexpr float kLazyRescale = 8.0f;
  const float tile_max =
      hn::GetLane(hn::MaxOfLanes(df, vmax)) * (fold ? score_scale : 1.0f);
  // Rule 8: a NaN or +inf score (or one the scale takes past float32's
  // range) poisons the row: m = NaN, which Finish writes as a NaN row.
  if (!hn::AllFalse(df, bad) ||
      !(tile_max < std::numeric_limits<float>::infinity())) {
    m = std::numeric_limits<float>::quiet_NaN();
    std::fill(srow, srow + kKeyTile, 0.0f);
    return;
  }
  const float m_new = tile_max > m + kLazyRescale ? tile_max : m;
  // A kept key with a finite score makes m_new finite.
  if (m_new == -std::numeric_limits<float>::infinity()) {
    std::fill(srow, srow + kKeyTile, 0.0f);
    return;
  }
  const VF vscale = hn::Set(df, fold ? score_scale : 1.0f);
  const VF vm = hn::Set(df, m_new);
  // Past kFusedLimit the fused argument's residual S c - round(S_max c)
  // (up to half an ulp of m) could exceed the exponent's range: there the
  // score is rounded first, so the row's maximum gets exactly 2^0.
  const bool fused = !(std::abs(m_new) >= kFusedLimit);
  VF vsum = hn::Zero(df), vsum_w = hn::Zero(df);
  for (int64_t j = 0; j < kKeyTile; j += N) {
    const VF x = hn::Load(df, srow + j);
    const VF e = Exp2(df, fused ? hn::MulSub(x, vscale, vm)
                                : hn::Sub(Rounded(hn::Mul(x, vscale)), vm));
    vsum = hn::Add(vsum, e);
    if (round_bf16) {
      const VF w = RoundToBFloat16(df, e);
      vsum_w = hn::Add(vsum_w, w);
      hn::Store(w, df, srow + j);
    } else {
      hn::Store(e, df, srow + j);
    }
  }
  const float alpha = m_new == m ? 1.0f : std::exp2(m - m_new);  // 0: m = -inf
  l = l * alpha + hn::GetLane(hn::SumOfLanes(df, vsum));
  if (round_bf16) lw = lw * alpha + hn::GetLane(hn::SumOfLanes(df, vsum_w));
  m = m_new;
  if (alpha != 1.0f) {
    const VF va = hn::Set(df, alpha);
    for (int64_t c = 0; c < dvp; c += N) {
      hn::Store(hn::Mul(hn::Load(df, orow + c), va), df, orow + c);
    }
  }
}

// SoftmaxRowLog2 for R rows at once when every row sees the whole tile and
// a row is C vectors (C * N == kKeyTile): straight-line code over
// independent rows, so the reductions and exponentials of different rows
// overlap instead of waiting on each other. Same arithmetic, same results.
template <int R, int C>
HWY_INLINE void SoftmaxBlockFull(DF df, float* HWY_RESTRICT p,
                                 float score_scale, bool round_bf16,
                                 float* HWY_RESTRICT m, float* HWY_RESTRICT l,
                                 float* HWY_RESTRICT lw, float* HWY_RESTRICT o,
                                 int64_t dvp) {
  const size_t N = hn::Lanes(df);
  constexpr float kLazyRescale = 8.0f;  // as in SoftmaxRowLog2
  // Raw scores times score_scale (> 0 here, so the max commutes with it):
  // the scale is applied inside the exponent's argument, not in a pass.
  const VF vscale = hn::Set(df, score_scale);
  const VF inf = hn::Set(df, std::numeric_limits<float>::infinity());
  VF vmax[R];
  auto bad = hn::FirstN(df, 0);  // lanes with a NaN or +inf score, any row
  for (int r = 0; r < R; ++r) {
    const float* prow = p + r * kKeyTile;
    vmax[r] = hn::Load(df, prow);
    bad = hn::Or(bad, hn::Not(hn::Lt(vmax[r], inf)));
    for (int c = 1; c < C; ++c) {
      const VF s = hn::Load(df, prow + c * N);
      vmax[r] = hn::Max(vmax[r], s);
      bad = hn::Or(bad, hn::Not(hn::Lt(s, inf)));
    }
  }
  float m_new[R], alpha[R];
  bool rare = !hn::AllFalse(df, bad);  // a row to poison or handle alone
  for (int r = 0; r < R; ++r) {
    const float tile_max =
        hn::GetLane(hn::MaxOfLanes(df, vmax[r])) * score_scale;
    m_new[r] = tile_max > m[r] + kLazyRescale ? tile_max : m[r];
    // NaN m (an earlier tile's poison), a scaled maximum past float32, or
    // one past kFusedLimit.
    rare = rare || !(std::abs(m_new[r]) < kFusedLimit);
  }
  if (rare) {  // rare: row by row, which marks or handles each row
    for (int r = 0; r < R; ++r) {
      SoftmaxRowLog2(df, p + r * kKeyTile, ~uint64_t{0}, score_scale,
                     round_bf16, m[r], l[r], lw[r], o + r * dvp, dvp);
    }
    return;
  }
  VF vsum[R], vsum_w[R];
  for (int r = 0; r < R; ++r) {
    float* prow = p + r * kKeyTile;
    const VF vm = hn::Set(df, m_new[r]);
    vsum[r] = hn::Zero(df);
    vsum_w[r] = hn::Zero(df);
    for (int c = 0; c < C; ++c) {
      const VF e = Exp2(df, hn::MulSub(hn::Load(df, prow + c * N), vscale, vm));
      vsum[r] = hn::Add(vsum[r], e);
      if (round_bf16) {
        const VF w = RoundToBFloat16(df, e);
        vsum_w[r] = hn::Add(vsum_w[r], w);
        hn::Store(w, df, prow + c * N);
      } else {
        hn::Store(e, df, prow + c * N);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    alpha[r] = m_new[r] == m[r] ? 1.0f : std::exp2(m[r] - m_new[r]);
    l[r] = l[r] * alpha[r] + hn::GetLane(hn::SumOfLanes(df, vsum[r]));
    if (round_bf16) {
      lw[r] = lw[r] * alpha[r] + hn::GetLane(hn::SumOfLanes(df, vsum_w[r]));
    }
    m[r] = m_new[r];
    if (alpha[r] != 1.0f) {
      const VF va = hn::Set(df, alpha[r]);
      float* orow = o + r * dvp;
      for (int64_t c = 0; c < dvp; c += N) {
        hn::Store(hn::Mul(hn::Load(df, orow + c), va), df, orow + c);
      }
    }
  }
}

// The online softmax of the R rows of a block whose scores were just
// computed (still in L1). keep: per row, the keys it sees (0 for padding
// rows, which get P = 0).
template <int R>
HWY_INLINE void SoftmaxRows(DF df, float* HWY_RESTRICT p, const uint64_t* keep,
                            float score_scale, bool round_bf16,
                            float* HWY_RESTRICT m, float* HWY_RESTRICT l,
                            float* HWY_RESTRICT lw, float* HWY_RESTRICT o,
                            int64_t dvp) {
  constexpr int C = kKeyTile / (HWY_MAX_BYTES / sizeof(float));
  if (C * hn::Lanes(df) == kKeyTile && score_scale > 0.0f) {
    bool full = true;
    for (int r = 0; r < R; ++r) full = full && keep[r] == ~uint64_t{0};
    // Full rows with finite scores: m stays finite after the first tile.
    if (full) {
      return SoftmaxBlockFull<R, C>(df, p, score_scale, round_bf16, m, l, lw, o,
                                    dvp);
    }
  }
  for (int r = 0; r < R; ++r) {
    float* prow = p + r * kKeyTile;
    if (keep[r] == 0) {
      std::fill(prow, prow + kKeyTile, 0.0f);
      continue;
    }
    SoftmaxRowLog2(df, prow, keep[r], score_scale, round_bf16, m[r], l[r],
                   lw[r], o + r * dvp, dvp);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SRC_KERNELS_ONLINE_SOFTMAX_INL_H_
