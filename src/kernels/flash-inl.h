// Per-target SIMD code of the flash forward kernel (included once per
// Highway target by flash.cc through foreach_target.h).
//
// One work item is (b, kv head, block of Br query positions). Its rows are
// the G query heads of the group times the Br positions, M = G * Br rows,
// so the heads of a GQA group share every K/V tile that is packed:
//
//   Q   [M_pad, D]       float, row r = (head g = r / Br, position r % Br)
//   Kt  [D, kKeyTile]    float, K tile transposed: keys are the SIMD axis
//   V   [kKeyTile, Dvp]  float, V tile, Dv padded with zeros
//   S   [M_pad, kKeyTile] scores, then probabilities, of the current tile
//   O   [M_pad, Dvp]     unnormalised output accumulator
//   m, l [M_pad]         running row max and row sum
//
// For each KV tile that some row can see (tiles outside every row's key
// range are never loaded):
//   1. S = Q Kt                         micro-kernel, kRowBlock x kVecs vectors
//   2. per row, in base 2: s = log2(e) * scale * S (or the full score rule
//      times log2(e) when softcap, ALiBi, bias or a mask are on); keys
//      outside the row's key range or hidden by the mask become -inf;
//      m' = max(m, max s) (moved lazily); P = 2^(s - m');
//      l = l 2^(m-m') + sum P; O *= 2^(m-m')
//   3. O += P V                         micro-kernel, kRowBlock x kVecs vectors
// Finally out = O / l and lse = ln 2 * m + ln l; rows that saw no key give
// 0 and -inf.
//
// Memory traffic: each K/V element is read once per work item and shared
// by its G * Br rows; nothing of size Sq x Skv ever exists.

#if defined(ATTN_SRC_KERNELS_FLASH_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SRC_KERNELS_FLASH_INL_H_
#undef ATTN_SRC_KERNELS_FLASH_INL_H_
#else
#define ATTN_SRC_KERNELS_FLASH_INL_H_
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#if HWY_ARCH_X86
#include <immintrin.h>
#endif

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "src/core/key_range.h"
#include "src/kernels/flash.h"
#include "src/kernels/flash_bf16_dot.h"
#include "src/kernels/kv_source.h"
#include "src/kernels/micro_gemm-inl.h"
#include "src/kernels/online_softmax-inl.h"
#include "src/kernels/row_ops-inl.h"
#include "src/kernels/tile_walk.h"

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
// Packs keys [j_lo, j_hi) of a K tile transposed into kt [dim, kKeyTile]
// (keys become the SIMD axis), 16 keys x 16 elements at a time through an
// in-register 16 x 16 transpose; leftovers go element by element. Elements
// are 32 bits: floats, or pairs of bfloat16 (dim = pairs). row(j) gives key
// j's first element.
// A 32-bit element from memory that may be only 2-byte aligned (pairs of
// bfloat16 in a row).
HWY_INLINE float load32(const float* p) {
  float x;
  std::memcpy(&x, p, sizeof x);
  return x;
}

// GCC 12 warns falsely about the intrinsics' internal undefined operands.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
template <class RowOf>
HWY_INLINE void PackKTransposed32(RowOf row, int64_t j_lo, int64_t j_hi,
                                  int64_t dim, float* HWY_RESTRICT kt) {
  int64_t j = j_lo;
  const int64_t dim16 = dim / 16 * 16;
  for (; j + 16 <= j_hi; j += 16) {
    const float* rows[16];
    for (int x = 0; x < 16; ++x) rows[x] = row(j + x);
    for (int64_t d = 0; d < dim16; d += 16) {
      __m512 r[16], t[16];
      for (int x = 0; x < 16; ++x) r[x] = _mm512_loadu_ps(rows[x] + d);
      // Pairs of rows interleaved within each 128-bit lane.
      for (int x = 0; x < 8; ++x) {
        t[2 * x] = _mm512_unpacklo_ps(r[2 * x], r[2 * x + 1]);
        t[2 * x + 1] = _mm512_unpackhi_ps(r[2 * x], r[2 * x + 1]);
      }
      // u[4g + c]: lane q holds column 4q + c of rows 4g .. 4g + 3.
      for (int g = 0; g < 4; ++g) {
        const __m512d a = _mm512_castps_pd(t[4 * g]),
                      bb = _mm512_castps_pd(t[4 * g + 2]);
        const __m512d c = _mm512_castps_pd(t[4 * g + 1]),
                      e = _mm512_castps_pd(t[4 * g + 3]);
        r[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, bb));
        r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, bb));
        r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, e));
        r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, e));
      }
      // Gather lane q of the four row groups: column 4q + c of all 16 rows.
      for (int c = 0; c < 4; ++c) {
        const __m512 x01 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44);
        const __m512 y01 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44);
        const __m512 x23 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
        const __m512 y23 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
        _mm512_storeu_ps(kt + (d + c) * kKeyTile + j,
                         _mm512_shuffle_f32x4(x01, y01, 0x88));
        _mm512_storeu_ps(kt + (d + 4 + c) * kKeyTile + j,
                         _mm512_shuffle_f32x4(x01, y01, 0xDD));
        _mm512_storeu_ps(kt + (d + 8 + c) * kKeyTile + j,
                         _mm512_shuffle_f32x4(x23, y23, 0x88));
        _mm512_storeu_ps(kt + (d + 12 + c) * kKeyTile + j,
                         _mm512_shuffle_f32x4(x23, y23, 0xDD));
      }
    }
    for (int64_t d = dim16; d < dim; ++d) {
      for (int x = 0; x < 16; ++x)
        kt[d * kKeyTile + j + x] = load32(rows[x] + d);
    }
  }
  for (; j < j_hi; ++j) {
    const float* krow = row(j);
    for (int64_t d = 0; d < dim; ++d) kt[d * kKeyTile + j] = load32(krow + d);
  }
}

// Scores of 4 rows against the keys of a tile read straight from their
// rows, for items of at most 4 rows (decode): packing K transposed costs
// more than the products when only 4 rows share it (measured: a third of
// a float32 decode step). For each group of 4 keys, 16 dot products
// acc[4m + r] = q_r . k_m accumulate over D / 16 vectors, then one
// reduction tree (30 shuffles, 15 adds) leaves lane 4r + m = q_r . k_m:
// quarter r of the vector is row r's 4 scores, stored at once.
//   q [4, dim] (rows past the item's are zero), krows[j]: key j's row or
//   null (a key no row sees: score 0), s [4, kKeyTile]; dim % 16 == 0.
HWY_INLINE void QKRowsDirect4(const float* HWY_RESTRICT q, int64_t dim,
                              const float* const* krows, int64_t keys,
                              float* HWY_RESTRICT s) {
  for (int64_t j = 0; j < kKeyTile; j += 4) {
    if (j >= keys ||
        (!krows[j] && !krows[j + 1] && !krows[j + 2] && !krows[j + 3])) {
      for (int r = 0; r < 4; ++r)
        _mm_storeu_ps(s + r * kKeyTile + j, _mm_setzero_ps());
      continue;
    }
    __m512 a[16];
    for (int x = 0; x < 16; ++x) a[x] = _mm512_setzero_ps();
    const float* k[4];
    for (int m = 0; m < 4; ++m) k[m] = j + m < keys ? krows[j + m] : nullptr;
    for (int64_t d = 0; d < dim; d += 16) {
      __m512 kv[4], qv[4];
      for (int m = 0; m < 4; ++m) {
        kv[m] = k[m] ? _mm512_loadu_ps(k[m] + d) : _mm512_setzero_ps();
      }
      for (int r = 0; r < 4; ++r) qv[r] = _mm512_loadu_ps(q + r * dim + d);
      for (int m = 0; m < 4; ++m) {
        for (int r = 0; r < 4; ++r)
          a[4 * m + r] = _mm512_fmadd_ps(qv[r], kv[m], a[4 * m + r]);
      }
    }
    // 16 vectors -> 8: halves of 256 bits.
    __m512 b[8];
    for (int i = 0; i < 8; ++i) {
      b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                           _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
    }
    // 8 -> 4: quarter t of c[i] sums to acc[4i + t].
    __m512 c[4];
    for (int i = 0; i < 4; ++i) {
      c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                           _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
    }
    // Within quarters: 4 lanes of each of c[0..3] -> one lane each.
    const __m512 d0 = _mm512_add_ps(_mm512_unpacklo_ps(c[0], c[1]),
                                    _mm512_unpackhi_ps(c[0], c[1]));
    const __m512 d1 = _mm512_add_ps(_mm512_unpacklo_ps(c[2], c[3]),
                                    _mm512_unpackhi_ps(c[2], c[3]));
    const __m512 e =
        _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(
                          _mm512_castps_pd(d0), _mm512_castps_pd(d1))),
                      _mm512_castpd_ps(_mm512_unpackhi_pd(
                          _mm512_castps_pd(d0), _mm512_castps_pd(d1))));
    _mm_storeu_ps(s + 0 * kKeyTile + j, _mm512_extractf32x4_ps(e, 0));
    _mm_storeu_ps(s + 1 * kKeyTile + j, _mm512_extractf32x4_ps(e, 1));
    _mm_storeu_ps(s + 2 * kKeyTile + j, _mm512_extractf32x4_ps(e, 2));
    _mm_storeu_ps(s + 3 * kKeyTile + j, _mm512_extractf32x4_ps(e, 3));
  }
}
#pragma GCC diagnostic pop
#endif

// One work item; see the file comment. Keys and values come from `src`
// (kv_source.h); pb.k and pb.v are not read. `scratch` is this worker's
// slice. With plan.splits > 1 the item covers one split of the keys and
// writes its normalised partial output and lse to `partial` (flash.h)
// instead of out; merge_partials combines them.
template <class T, class Src>
void FlashItem(const detail::Problem<T>& pb, const Src& src,
               const FlashPlan& plan, int64_t item, std::byte* scratch,
               float* partial) {
  using E = typename Src::Element;
  const DF df;
  const size_t N = hn::Lanes(df);
  const detail::Params& p = pb.params;
  const detail::Shape& sh = p.shape;
  const int64_t G = sh.group(), D = sh.D, Dv = sh.Dv, Dvp = plan.dv_padded;
  const float kNegInf = -std::numeric_limits<float>::infinity();

  KeyRange* ranges = reinterpret_cast<KeyRange*>(scratch + plan.ranges);
  const ItemSpan span = item_span(p, plan, item, ranges);
  const int64_t b = span.b, kvh = span.kvh, i0 = span.i0, br = span.br;
  const int64_t keys_begin = span.keys_begin, keys_end = span.keys_end;
  const int64_t rows = G * br;
  const int64_t rows_padded = (rows + kRowBlock - 1) / kRowBlock * kRowBlock;

  float* HWY_RESTRICT Q = reinterpret_cast<float*>(scratch + plan.q);
  float* HWY_RESTRICT Kt = reinterpret_cast<float*>(scratch + plan.kt);
  // K rows widened or dequantised before the transpose (16-bit and int8
  // keys off the bfloat16 dot path).
  float* HWY_RESTRICT Kd = reinterpret_cast<float*>(scratch + plan.kd);
  float* HWY_RESTRICT V = reinterpret_cast<float*>(scratch + plan.v);
  float* HWY_RESTRICT S = reinterpret_cast<float*>(scratch + plan.s);
  float* HWY_RESTRICT O = reinterpret_cast<float*>(scratch + plan.o);
  float* HWY_RESTRICT m = reinterpret_cast<float*>(scratch + plan.m);
  float* HWY_RESTRICT l = reinterpret_cast<float*>(scratch + plan.l);
  // Sum of the weights PV actually applied: l itself, except on the bf16
  // PV path, where they are l's terms rounded to bfloat16.
  float* HWY_RESTRICT lw = reinterpret_cast<float*>(scratch + plan.lw);
  // Per row, the keys of the current tile it sees (bit j: key j0 + j).
  uint64_t* HWY_RESTRICT keep =
      reinterpret_cast<uint64_t*>(scratch + plan.keep);

  const bool score_mods =
      p.softcap > 0.0f || !p.alibi_slopes.empty() || !p.bias.empty();
  const bool has_mask = !p.mask.empty();
  const Pattern& pattern = p.pattern;
  const bool pattern_score = pattern.has_score();
  const int64_t pos0 = i0 + p.offset_of(b);  // position of query row i0
  // Plain scores take the fused path: the softmax of each row block right
  // after its QK block, in base 2, scale * log2(e) folded into the
  // exponent's fused multiply-subtract (Q stays as stored, so its rounding
  // adds nothing to the score's). Scores that need per-element rules are
  // finished in scalar code (scale included, so a -inf from the mask is
  // never multiplied) by the row pass, step 2.
  const bool fused = !score_mods && !has_mask && !pattern_score;
  constexpr float kLog2e = 1.4426950408889634f;
  const float log2_scale = p.scale * kLog2e;
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  const bool dot = std::is_same_v<T, bfloat16> && std::is_same_v<E, bfloat16> &&
                   plan.bf16_dot && D > 1;
#else
  const bool dot = false;
#endif
  // With plain scores the PV product runs on vdpbf16ps too, with P rounded
  // to bfloat16 (row sums taken over the rounded values).
  const bool dot_pv = dot && fused && !p.dropout.on();
  // Items of at most 4 rows (decode with G <= 4) run 4-row register blocks
  // instead of padding to kRowBlock; items of at most 2 blocks read V
  // straight from its rows, since each V row is used by one or two blocks
  // only (needs Dv a multiple of the vector, so no row is over-read).
  const size_t N_lanes = hn::Lanes(df);
  const bool four_rows = rows <= 4 && !dot;
  const bool v_direct = !dot_pv && rows <= 2 * kRowBlock &&
                        Dv % static_cast<int64_t>(N_lanes) == 0;
  const E* vrows[kKeyTile];
  // Float32 K and at most 4 rows: scores straight from the K rows
  // (QKRowsDirect4), no transposed copy of the tile.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  const bool k_direct = std::is_same_v<E, float> && four_rows && D % 16 == 0;
#else
  const bool k_direct = false;
#endif
  [[maybe_unused]] const float* krows[kKeyTile];
  // Plain scores: Q is not prescaled; scale * log2(e) is applied inside the
  // exponent's argument (online_softmax-inl.h), fused with the max.
  const float score_scale = fused ? log2_scale : 1.0f;
  const int64_t pairs = (D + 1) / 2;  // dot path: head dim in bf16 pairs
  uint32_t* HWY_RESTRICT Qp = reinterpret_cast<uint32_t*>(Q);
  uint32_t* HWY_RESTRICT Kp = reinterpret_cast<uint32_t*>(Kt);
  [[maybe_unused]] uint32_t* HWY_RESTRICT Vp = reinterpret_cast<uint32_t*>(V);
  [[maybe_unused]] uint32_t* HWY_RESTRICT Pp =
      reinterpret_cast<uint32_t*>(scratch + plan.pp);

  // Pack Q (padding rows zero), clear O, m, l.
  for (int64_t r = 0; r < rows_padded; ++r) {
    if (dot) {
      uint32_t* dst = Qp + r * pairs;
      if (r < rows) {
        pack_pairs(pb.q.row(b, kvh * G + r / br, i0 + r % br), D, dst, 1);
      } else {
        std::fill(dst, dst + pairs, 0u);
      }
    } else {
      float* dst = Q + r * D;
      if (r < rows) {
        widen_row(pb.q.row(b, kvh * G + r / br, i0 + r % br), D, dst);
      } else {
        std::fill(dst, dst + D, 0.0f);
      }
    }
    m[r] = kNegInf;
    l[r] = 0.0f;
    lw[r] = 0.0f;
  }
  std::fill(O, O + rows_padded * Dvp, 0.0f);

  // The tiles to visit: every tile of [keys_begin, keys_end) that the
  // pattern's mask does not hide from all rows (tile_walk.h).
  TileWalker walk(pattern, b, kvh * G, kvh * G + G, pos0, pos0 + br, keys_begin,
                  keys_end, kKeyTile);
  int64_t tile = 0, next_tile = 0;
  TileKind kind = TileKind::kFull, next_kind = TileKind::kFull;
  for (bool have = walk.next(tile, kind); have;
       tile = next_tile, kind = next_kind) {
    have = walk.next(next_tile, next_kind);
    const int64_t j0 = tile * kKeyTile;
    // Keys of this tile that some row can see: [t_begin, t_end) absolute.
    const int64_t t_begin = std::max(j0, keys_begin);
    const int64_t t_end = std::min(j0 + kKeyTile, keys_end);
    const int64_t bc = t_end - j0;  // keys of the tile that matter, from j0
    // Prefetch the next tile's K and V rows: cache pages hold only a few
    // tokens of one head each, too little for the hardware prefetcher,
    // and few-query (decode) items would otherwise wait on every load.
    if (have) {
      const int64_t next_j0 = next_tile * kKeyTile;
      const int64_t next_end = std::min(next_j0 + kKeyTile, keys_end);
      for (int64_t j = std::max(next_j0, keys_begin); j < next_end; ++j) {
        PrefetchRow(src.k_row(b, kvh, j), D);
        PrefetchRow(src.v_row(b, kvh, j), Dv);
      }
    }

    // Pack K transposed and V; keys no row sees stay zero so garbage there
    // (padding, unfilled cache) cannot turn into NaN.
    if (dot) {  // Kp [pairs, kKeyTile]: bf16 pairs, keys as the SIMD axis
      if (t_begin > j0 || bc < kKeyTile || D % 2) {
        std::fill(Kp, Kp + pairs * kKeyTile, 0u);
      }
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
      if (D % 2 == 0) {  // a row of D bfloat16 is D / 2 pairs in memory
        PackKTransposed32(
            [&](int64_t j) {
              return reinterpret_cast<const float*>(src.k_row(b, kvh, j0 + j));
            },
            t_begin - j0, bc, pairs, reinterpret_cast<float*>(Kp));
      } else
#endif
      {
        for (int64_t j = t_begin - j0; j < bc; ++j) {
          pack_pairs(src.k_row(b, kvh, j0 + j), D, Kp + j, kKeyTile);
        }
      }
    } else if (k_direct) {
      if constexpr (std::is_same_v<E, float>) {
        for (int64_t j = 0; j < kKeyTile; ++j) {
          krows[j] =
              j >= t_begin - j0 && j < bc ? src.k_row(b, kvh, j0 + j) : nullptr;
        }
      }
    } else {
      if (t_begin > j0 || bc < kKeyTile) std::fill(Kt, Kt + D * kKeyTile, 0.0f);
      if constexpr (!std::is_same_v<E, float>) {
        for (int64_t j = t_begin - j0; j < bc; ++j) {
          dequant_row(src.k_row(b, kvh, j0 + j), D, src.k_scale(b, kvh, j0 + j),
                      Kd + j * D);
        }
      }
      [[maybe_unused]] auto krow = [&](int64_t j) -> const float* {
        if constexpr (std::is_same_v<E, float>) {
          return src.k_row(b, kvh, j0 + j);
        } else {
          return Kd + j * D;
        }
      };
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
      PackKTransposed32(krow, t_begin - j0, bc, D, Kt);
#else
      for (int64_t j = t_begin - j0; j < bc; ++j) {
        const float* row = krow(j);
        for (int64_t d = 0; d < D; ++d) Kt[d * kKeyTile + j] = row[d];
      }
#endif
    }
    if (dot_pv) {  // Vp [ceil(bc / 2), Dvp]: bf16 pairs of keys 2p, 2p + 1
      // Keys outside [t_begin - j0, bc) read as zeros.
      const int64_t first = t_begin - j0;
      [[maybe_unused]] auto vrow = [&](int64_t j) -> const uint16_t* {
        return j >= first && j < bc ? reinterpret_cast<const uint16_t*>(
                                          src.v_row(b, kvh, j0 + j))
                                    : nullptr;
      };
      for (int64_t pr = 0; pr < (bc + 1) / 2; ++pr) {
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
        pack_value_pairs(vrow(2 * pr), vrow(2 * pr + 1), Dv, Dvp,
                         Vp + pr * Dvp);
#endif
      }
    } else if (v_direct) {
      for (int64_t j = t_begin - j0; j < bc; ++j)
        vrows[j] = src.v_row(b, kvh, j0 + j);
    } else {
      for (int64_t j = 0; j < bc; ++j) {
        float* dst = V + j * Dvp;
        if (j >= t_begin - j0) {
          dequant_row(src.v_row(b, kvh, j0 + j), Dv,
                      src.v_scale(b, kvh, j0 + j), dst);
        } else {
          std::fill(dst, dst + Dv, 0.0f);
        }
        std::fill(dst + Dv, dst + Dvp, 0.0f);
      }
    }

    // The keys each row sees: its key range, and on tiles the pattern
    // leaves partial, the pattern's mask; padding rows see none.
    for (int64_t r = 0, ii = 0; r < rows_padded; ++r) {
      if (r >= rows) {
        keep[r] = 0;
        continue;
      }
      // ii = r % br, without a division per row and tile.
      const KeyRange& kr = ranges[ii];
      if (++ii == br) ii = 0;
      keep[r] = key_bits(kr.begin - j0, std::min(kr.end - j0, bc));
      if (kind == TileKind::kPartial && keep[r] != 0) {
        keep[r] &= pattern.mask_bits(b, kvh * G + r / br, pos0 + r % br, j0,
                                     static_cast<int>(bc));
      }
    }

    // 1. S = Q Kt; on the fused path each block's softmax follows at once.
    const auto qk_block = [&]<int R>(int64_t r) {
      float* sblock = S + r * kKeyTile;
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
      if (dot) {
        qk_block_bf16_dot(Qp + r * pairs, pairs, Kp, sblock);
      } else if (k_direct) {
        QKRowsDirect4(Q + r * D, D, krows, bc, sblock);
      } else
#endif
      {
        MicroGemmCols<R>(df, Q + r * D, D, 1, 0, D, MatrixB{Kt, kKeyTile}, 0,
                         kKeyTile / static_cast<int64_t>(N), sblock, kKeyTile,
                         /*accumulate=*/false, kDotChain);
      }
      if (!fused) return;
      SoftmaxRows<R>(df, sblock, keep + r, score_scale, dot_pv, m + r, l + r,
                     lw + r, O + r * Dvp, Dvp);
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
      if (dot_pv) pack_probability_pairs(sblock, Pp + r * (kKeyTile / 2));
#endif
    };
    if (four_rows) {
      qk_block.template operator()<4>(0);
    } else {
      for (int64_t r = 0; r < rows_padded; r += kRowBlock) {
        qk_block.template operator()<kRowBlock>(r);
      }
    }

    // 2. Scores, visibility and the online softmax, row by row: the score
    // rules per element (scale first, so a hidden key's -inf is never
    // multiplied), the pattern's score per row, then into base 2 like the
    // fused path; hidden keys are cleared from keep.
    for (int64_t r = 0; r < (four_rows ? 4 : rows_padded) && !fused; ++r) {
      float* HWY_RESTRICT srow = S + r * kKeyTile;
      uint64_t row_keep = keep[r];
      if (row_keep == 0) {  // padding, or this row sees nothing in this tile
        std::fill(srow, srow + kKeyTile, 0.0f);
        continue;
      }
      const int64_t ii = r % br, h = kvh * G + r / br, i = i0 + ii;
      const int64_t lo = std::countr_zero(row_keep);
      const int64_t hi = kKeyTile - std::countl_zero(row_keep);
      if (score_mods || pattern_score) {
        for (int64_t j = lo; j < hi; ++j) {
          srow[j] = p.score_builtin<float>(srow[j], b, h, i, j0 + j);
        }
        pattern.score_row(srow + lo, b, h, pos0 + ii, j0 + lo, hi - lo);
        for (int64_t j = lo; j < hi; ++j) srow[j] *= kLog2e;
      } else {
        for (int64_t j = lo; j < hi; ++j) srow[j] *= log2_scale;
      }
      if (has_mask) {
        for (int64_t j = lo; j < hi; ++j) {
          if (!p.mask(b, h, i, j0 + j)) row_keep &= ~(uint64_t{1} << j);
        }
        if (row_keep == 0) {
          std::fill(srow, srow + kKeyTile, 0.0f);
          continue;
        }
      }
      SoftmaxRowLog2(df, srow, row_keep, 1.0f, false, m[r], l[r], lw[r],
                     O + r * Dvp, Dvp);
    }

    // 2b. Dropout (rule 7), after the row sums: dropped keys' P becomes 0,
    // kept ones are scaled by 1 / (1 - p).
    if (p.dropout.on()) {
      for (int64_t r = 0; r < rows; ++r) {
        const uint64_t bits = DropoutKeepBits(
            p.dropout, p.dropout.row(b, kvh * G + r / br, i0 + r % br), j0,
            static_cast<int>(bc));
        float* HWY_RESTRICT srow = S + r * kKeyTile;
        const VF keep_scale = hn::Set(df, p.dropout.keep_scale);
        for (int64_t c = 0; c < kKeyTile; c += static_cast<int64_t>(N)) {
          hn::Store(
              hn::IfThenElseZero(KeepMask(df, bits, c),
                                 hn::Mul(hn::Load(df, srow + c), keep_scale)),
              df, srow + c);
        }
      }
    }

    // 3. O += P V.
    const int64_t first = t_begin - j0;
    if constexpr (std::is_same_v<E, int8_t>) {
      if (v_direct) {  // fold each value row's scale into its probabilities
        float vscale[kKeyTile];
        for (int64_t j = first; j < bc; ++j)
          vscale[j] = src.v_scale(b, kvh, j0 + j);
        for (int64_t r = 0; r < (four_rows ? 4 : rows_padded); ++r) {
          for (int64_t j = first; j < bc; ++j) S[r * kKeyTile + j] *= vscale[j];
        }
      }
    }
    const int64_t vecs_total = (v_direct ? Dv : Dvp) / static_cast<int64_t>(N);
    const auto pv_block = [&]<int R>(int64_t r) {
      for (int64_t c = 0; c < vecs_total; c += kVecs) {
        const int vecs =
            static_cast<int>(std::min<int64_t>(kVecs, vecs_total - c));
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
        if (dot_pv) {
          pv_block_bf16_dot(Pp + r * (kKeyTile / 2), (bc + 1) / 2, Vp + c * N,
                            Dvp, vecs, O + r * Dvp + c * N);
          continue;
        }
#endif
        const int64_t col = c * static_cast<int64_t>(N);
        if (v_direct) {
          MicroGemmCols<R>(df, S + r * kKeyTile, kKeyTile, 1, first, bc,
                           RowsB<E>{vrows}, col, vecs, O + r * Dvp, Dvp,
                           /*accumulate=*/true, kOneChain);
        } else {
          MicroGemmCols<R>(df, S + r * kKeyTile, kKeyTile, 1, 0, bc,
                           MatrixB{V, Dvp}, col, vecs, O + r * Dvp, Dvp,
                           /*accumulate=*/true, kOneChain);
        }
      }
    };
    if (four_rows) {
      pv_block.template operator()<4>(0);
    } else {
      for (int64_t r = 0; r < rows_padded; r += kRowBlock) {
        pv_block.template operator()<kRowBlock>(r);
      }
    }
  }

  // Normalise once and write out (or the partial); lse = m + log l.
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t h = kvh * G + r / br, i = i0 + r % br;
    const bool any = m[r] != kNegInf && l[r] > 0.0f;
    const float inv = any ? 1.0f / (dot_pv ? lw[r] : l[r]) : 0.0f;
    // m is in log2 units: lse = ln 2 * m + ln l, in double and rounded
    // once (two float roundings at |lse| ~ 30 cost an ulp, 1.9e-6).
    const float row_lse =
        any ? static_cast<float>(static_cast<double>(m[r]) *
                                     0.6931471805599453 +
                                 std::log(static_cast<double>(l[r])))
            : kNegInf;
    const float* orow = O + r * Dvp;
    if (plan.splits > 1) {
      float* po = partial + plan.partial_out(item) + r * Dv;
      for (int64_t d = 0; d < Dv; ++d) po[d] = orow[d] * inv;
      partial[plan.partial_lse(item) + r] = row_lse;
      continue;
    }
    T* out = pb.out.row(b, h, i);
    for (int64_t d = 0; d < Dv; ++d) out[d] = from_float<T>(orow[d] * inv);
    if (!pb.lse.empty()) pb.lse(b, h, i, 0) = row_lse;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SRC_KERNELS_FLASH_INL_H_
