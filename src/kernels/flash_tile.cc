// The steps of a flash / decode item that depend on neither the query nor
// the key/value element type (FlashTileCore, flash-inl.h), once per
// Highway target: flash.cc and flash_paged.cc instantiate the item for
// each query and cache type and call these, so the SIMD bulk of the kernel
// (micro-kernels, online softmax, score rules) is compiled once per target
// rather than once per instantiation.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels/flash_tile.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"
#include "src/kernels/flash-inl.h"
#include "src/kernels/flash_int8_dot.h"

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {

template <int R>
HWY_INLINE void FlashTileCore::SoftmaxBlock(int64_t r) {
  if (!path_.fused) return;
  const DF df;
  float* sblock = S_ + r * kKeyTile;
  const bool bf16_pv = rounds_probabilities(path_.v);
  SoftmaxRows<R>(df, sblock, keep_ + r, log2_scale(), bf16_pv, m_ + r, l_ + r,
                 lw_ + r, O_ + r * Dvp_, Dvp_);
  if (kAvx512 && bf16_pv) {
    pack_probability_pairs(sblock, Pp_ + r * (kKeyTile / 2), R);
  }
}

template <int R>
HWY_INLINE void FlashTileCore::QKBlock(int64_t r) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  float* sblock = S_ + r * kKeyTile;
  if (kAvx512 && path_.k == KPath::kBf16Pairs) {
    qk_block_bf16_dot(reinterpret_cast<const uint32_t*>(Q_) + r * pairs_,
                      pairs_, reinterpret_cast<const uint32_t*>(Kt_), sblock);
  } else {
    MicroGemmCols<R>(df, Q_ + r * D_, D_, 1, 0, D_, MatrixB{Kt_, kKeyTile}, 0,
                     kKeyTile / N, sblock, kKeyTile,
                     /*accumulate=*/false, kDotChain);
  }
  SoftmaxBlock<R>(r);
}

template <int R, class B, class E>
HWY_INLINE void FlashTileCore::PVBlock(int64_t r, const FlashTile& t,
                                       const B& b, const E* const* pf) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr bool kRows = !std::is_same_v<B, MatrixB>;
  const int64_t vecs_total = (kRows ? Dv_ : Dvp_) / N;
  const int64_t blocks = (vecs_total + kVecs - 1) / kVecs;  // column blocks
  for (int64_t c = 0; c < vecs_total; c += kVecs) {
    const int vecs = static_cast<int>(std::min<int64_t>(kVecs, vecs_total - c));
    if (pf) {  // this block's share of the keys
      const int64_t at = c / kVecs;
      const int64_t j1 = (at + 1) * kKeyTile / blocks;
      for (int64_t j = at * kKeyTile / blocks; j < j1; ++j) {
        if (pf[j]) PrefetchRow(pf[j], D_);
      }
    }
    if constexpr (!kRows) {
      if (kAvx512 && path_.v == VPath::kBf16Pairs) {
        pv_block_bf16_dot(Pp_ + r * (kKeyTile / 2), (t.bc + 1) / 2,
                          reinterpret_cast<const uint32_t*>(V_) + c * N, Dvp_,
                          vecs, O_ + r * Dvp_ + c * N);
        continue;
      }
    }
    // Value rows: only the keys some row sees exist.
    MicroGemmCols<R>(df, S_ + r * kKeyTile, kKeyTile, 1, kRows ? t.first : 0,
                     t.bc, b, c * N, vecs, O_ + r * Dvp_, Dvp_,
                     /*accumulate=*/true, kOneChain);
  }
}

template <class B, class E>
HWY_INLINE void FlashTileCore::PVTile(const FlashTile& t, const B& b,
                                      const E* const* pf) {
  if (path_.row_block == 4) {
    PVBlock<4>(0, t, b, pf);
  } else {
    for (int64_t r = 0; r < rows_padded_; r += kRowBlock) {
      // The prefetches once, with the first block.
      PVBlock<kRowBlock>(r, t, b, r == 0 ? pf : nullptr);
    }
  }
}

void FlashTileCore::PVPacked(const FlashTile& t) {
  PVTile(t, MatrixB{V_, Dvp_});
}

template <class E>
void FlashTileCore::PVRows(const FlashTile& t, const E* const* vrows,
                           const E* const* pf) {
  PVTile(t, RowsB<E>{vrows}, pf);
}
// bfloat16 rows as the intrinsics kernels take them.
HWY_INLINE const uint16_t* const* AsU16(const bfloat16* const* rows) {
  return reinterpret_cast<const uint16_t* const*>(rows);
}

void FlashTileCore::PVRowPairs(const FlashTile& t, const bfloat16* const* vrows,
                               const bfloat16* const* pf) {
  if constexpr (kAvx512) {
    pv_rows4_bf16_dot(Pp_, t.first, t.bc, AsU16(vrows), Dv_, O_, Dvp_,
                      AsU16(pf), D_);
  }
}
template <class E>
void FlashTileCore::QKRows(const FlashTile& t, const E* const* krows,
                           const float* kscale, const E* const* pf,
                           int64_t pf_n) {
  if constexpr (kAvx512 && std::is_same_v<E, bfloat16>) {
    if (path_.bf16_dot) {  // Q_ holds the rows as bfloat16 (PackQ)
      qk_rows4_bf16_dot(reinterpret_cast<const uint16_t*>(Q_), D_, AsU16(krows),
                        t.bc, S_, AsU16(pf), pf_n);
      SoftmaxBlock<4>(0);
      return;
    }
  }
  QKRows4(Q_, D_, krows, kscale, t.bc, S_, pf, pf_n);
  SoftmaxBlock<4>(0);
}

bool FlashTileCore::QuantizeQ() {
  int16_t* HWY_RESTRICT q16 = reinterpret_cast<int16_t*>(Kd_);
  int8_t* HWY_RESTRICT q8 = reinterpret_cast<int8_t*>(q16 + 4 * D_);
  const DF df;
  const hn::RebindToSigned<DF> di;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t DN = D_ / N * N;
  for (int64_t r = 0; r < 4; ++r) {
    const float* q = Q_ + r * D_;
    // max |q|, and whether every value is finite.
    auto vmax = hn::Zero(df);
    auto finite = hn::IsFinite(vmax);
    for (int64_t d = 0; d < DN; d += N) {
      const auto v = hn::LoadU(df, q + d);
      finite = hn::And(finite, hn::IsFinite(v));
      vmax = hn::Max(vmax, hn::Abs(v));
    }
    if (!hn::AllTrue(df, finite)) return false;
    float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    for (int64_t d = DN; d < D_; ++d) {
      if (!std::isfinite(q[d])) return false;
      amax = std::max(amax, std::fabs(q[d]));
    }
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    qscale_[r] = amax / 127.0f;
    // Round to nearest, ties to even (the default mode; NearestInt as
    // std::nearbyint); |q * inv| <= 127 (1 + 2^-23) rounds to at most 127.
    auto vsum = hn::Zero(di);
    const auto vinv = hn::Set(df, inv);
    alignas(64) int32_t lanes[HWY_MAX_BYTES / 4];
    for (int64_t d = 0; d < DN; d += N) {
      const auto v = hn::NearestInt(hn::Mul(hn::LoadU(df, q + d), vinv));
      vsum = hn::Add(vsum, v);
      hn::Store(v, di, lanes);
      for (int64_t x = 0; x < N; ++x) {
        q16[r * D_ + d + x] = static_cast<int16_t>(lanes[x]);
        q8[r * D_ + d + x] = static_cast<int8_t>(lanes[x]);
      }
    }
    int32_t sum = hn::GetLane(hn::SumOfLanes(di, vsum));
    for (int64_t d = DN; d < D_; ++d) {
      const auto v = static_cast<int8_t>(
          std::clamp(std::nearbyint(q[d] * inv), -127.0f, 127.0f));
      q16[r * D_ + d] = v;
      q8[r * D_ + d] = v;
      sum += v;
    }
    qbias_[r] = 128 * sum;
  }
  return true;
}

void FlashTileCore::QKRowsInt8(const FlashTile& t, const int8_t* const* krows,
                               const float* kscale, const int8_t* const* pf,
                               int64_t pf_n) {
  const int16_t* q16 = reinterpret_cast<const int16_t*>(Kd_);
  if (kAvx512 && path_.vnni) {
    qk_rows4_int8_vnni(reinterpret_cast<const int8_t*>(q16 + 4 * D_), qbias_,
                       qscale_, D_, krows, kscale, t.bc, S_, pf, pf_n);
  } else {
    QKRows4Int8(q16, qscale_, D_, krows, kscale, t.bc, S_, pf, pf_n);
  }
  SoftmaxBlock<4>(0);
}

#define ATTN_INSTANTIATE(E)                                                    \
  template void FlashTileCore::QKRows(const FlashTile&, const E* const*,       \
                                      const float*, const E* const*, int64_t); \
  template void FlashTileCore::PVRows(const FlashTile&, const E* const*,       \
                                      const E* const*);
ATTN_INSTANTIATE(float)
ATTN_INSTANTIATE(bfloat16)
ATTN_INSTANTIATE(float16)
ATTN_INSTANTIATE(int8_t)
#undef ATTN_INSTANTIATE

void FlashTileCore::RowKeys(const FlashTile& t) {
  const Pattern& pattern = p_.pattern;
  for (int64_t r = 0, ii = 0; r < rows_padded_; ++r) {
    if (r >= rows_) {
      keep_[r] = 0;
      continue;
    }
    // ii = r % br, without a division per row and tile.
    const KeyRange& kr = ranges_[ii];
    if (++ii == span_.br) ii = 0;
    keep_[r] = key_bits(kr.begin - t.j0, std::min(kr.end - t.j0, t.bc));
    if (t.kind == TileKind::kPartial && keep_[r] != 0) {
      keep_[r] &= pattern.mask_bits(span_.b, head(r), pos0_ + r % span_.br,
                                    t.j0, static_cast<int>(t.bc));
    }
  }
}

void FlashTileCore::QK(const FlashTile& t) {
  if (path_.row_block == 4) {
    QKBlock<4>(0);
  } else {
    for (int64_t r = 0; r < rows_padded_; r += kRowBlock) {
      QKBlock<kRowBlock>(r);
    }
  }
}

void FlashTileCore::RowRules(const FlashTile& t) {
  const DF df;
  const bool score_mods =
      p_.softcap > 0.0f || !p_.alibi_slopes.empty() || !p_.bias.empty();
  const bool pattern_score = p_.pattern.has_score();
  const int64_t b = span_.b;
  for (int64_t r = 0; r < block_rows_; ++r) {
    float* HWY_RESTRICT srow = S_ + r * kKeyTile;
    uint64_t row_keep = keep_[r];
    if (row_keep == 0) {  // padding, or this row sees nothing in this tile
      std::fill(srow, srow + kKeyTile, 0.0f);
      continue;
    }
    const int64_t ii = r % span_.br, h = head(r), i = span_.i0 + ii;
    const int64_t lo = std::countr_zero(row_keep);
    const int64_t hi = kKeyTile - std::countl_zero(row_keep);
    if (score_mods || pattern_score) {
      for (int64_t j = lo; j < hi; ++j) {
        srow[j] = p_.score_builtin<float>(srow[j], b, h, i, t.j0 + j);
      }
      p_.pattern.score_row(srow + lo, b, h, pos0_ + ii, t.j0 + lo, hi - lo);
      for (int64_t j = lo; j < hi; ++j) srow[j] *= kLog2e;
    } else {
      for (int64_t j = lo; j < hi; ++j) srow[j] *= log2_scale();
    }
    if (!p_.mask.empty()) {
      for (int64_t j = lo; j < hi; ++j) {
        if (!p_.mask(b, h, i, t.j0 + j)) row_keep &= ~(uint64_t{1} << j);
      }
      if (row_keep == 0) {
        std::fill(srow, srow + kKeyTile, 0.0f);
        continue;
      }
    }
    SoftmaxRowLog2(df, srow, row_keep, 1.0f, false, m_[r], l_[r], lw_[r],
                   O_ + r * Dvp_, Dvp_);
  }
}

void FlashTileCore::Dropout(const FlashTile& t) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const VF keep_scale = hn::Set(df, p_.dropout.keep_scale);
  for (int64_t r = 0; r < rows_; ++r) {
    const uint64_t bits = DropoutKeepBits(
        p_.dropout, p_.dropout.row(span_.b, head(r), span_.i0 + r % span_.br),
        t.j0, static_cast<int>(t.bc));
    float* HWY_RESTRICT srow = S_ + r * kKeyTile;
    for (int64_t c = 0; c < kKeyTile; c += N) {
      hn::Store(hn::IfThenElseZero(KeepMask(df, bits, c),
                                   hn::Mul(hn::Load(df, srow + c), keep_scale)),
                df, srow + c);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();
