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
#include <new>
#include <type_traits>

#if HWY_ARCH_X86
#include <immintrin.h>
#endif

#include "hwy/highway.h"
#include "src/core/key_range.h"
#include "src/kernels/flash.h"
#include "src/kernels/flash_bf16_dot.h"
#include "src/kernels/key_group.h"
#include "src/kernels/kv_source.h"
#include "src/kernels/micro_gemm-inl.h"
#include "src/kernels/online_softmax-inl.h"
#include "src/kernels/row_ops-inl.h"
#include "src/kernels/tile_walk.h"

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// A 32-bit element from memory that may be only 2-byte aligned (pairs of
// bfloat16 in a row).
HWY_INLINE float load32(const float* p) {
  float x;
  std::memcpy(&x, p, sizeof x);
  return x;
}

// The one switch between targets: the AVX-512 packer and micro-kernel
// below exist on AVX3 targets (kAvx512); elsewhere the packer is the
// element loop and the paths that need the rest (KPath::kRows,
// KPath::kBf16Pairs, VPath::kBf16Pairs) are never chosen (flash_target()).
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
inline constexpr bool kAvx512 = true;

// Packs keys [j_lo, j_hi) of a K tile transposed into kt [dim, kKeyTile]
// (keys become the SIMD axis), 16 keys x 16 elements at a time through an
// in-register 16 x 16 transpose; leftovers go element by element. Elements
// are 32 bits: floats, or pairs of bfloat16 (dim = pairs). row(j) gives key
// j's first element.

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

#pragma GCC diagnostic pop
#else
inline constexpr bool kAvx512 = false;

#if HWY_TARGET != HWY_SCALAR
// Transposes N x N floats in registers, N = 4 or 8 lanes (SSSE3, SSE4,
// AVX2): 32-bit then 64-bit interleaves within 128-bit blocks, then (N 8)
// the blocks' halves exchanged. v[x] is row x in, column x out.
template <class D, class V = hn::Vec<D>>
HWY_INLINE void TransposeSquare(D df, V* v) {
  constexpr size_t N = hn::MaxLanes(D());
  static_assert(N == 4 || N == 8);
  const hn::Repartition<uint64_t, D> d64;
  V t[N];
  for (size_t x = 0; x < N; x += 2) {
    t[x] = hn::InterleaveLower(df, v[x], v[x + 1]);
    t[x + 1] = hn::InterleaveUpper(df, v[x], v[x + 1]);
  }
  // Per 128-bit block, u[4g + c] holds column c of rows 4g .. 4g + 3.
  V u[N];
  for (size_t g = 0; g < N; g += 4) {
    for (size_t h = 0; h < 2; ++h) {
      const auto a = hn::BitCast(d64, t[g + h]);
      const auto b = hn::BitCast(d64, t[g + 2 + h]);
      u[g + 2 * h] = hn::BitCast(df, hn::InterleaveLower(d64, a, b));
      u[g + 2 * h + 1] = hn::BitCast(df, hn::InterleaveUpper(d64, a, b));
    }
  }
  if constexpr (N == 4) {
    for (size_t x = 0; x < N; ++x) v[x] = u[x];
  } else {
    for (size_t c = 0; c < 4; ++c) {
      v[c] = hn::ConcatLowerLower(df, u[4 + c], u[c]);
      v[c + 4] = hn::ConcatUpperUpper(df, u[4 + c], u[c]);
    }
  }
}

#endif  // HWY_TARGET != HWY_SCALAR

// PackKTransposed32 (above) for targets of 4 or 8 float lanes: N keys x N
// elements at a time through TransposeSquare; leftovers (and the scalar
// target) element by element.
template <class RowOf>
HWY_INLINE void PackKTransposed32(RowOf row, int64_t j_lo, int64_t j_hi,
                                  int64_t dim, float* HWY_RESTRICT kt) {
  int64_t j = j_lo;
#if HWY_TARGET != HWY_SCALAR
  {
    const DF df;
    constexpr int64_t N = static_cast<int64_t>(hn::MaxLanes(DF()));
    const int64_t dimN = dim / N * N;
    for (; j + N <= j_hi; j += N) {
      const float* rows[N];
      for (int64_t x = 0; x < N; ++x) rows[x] = row(j + x);
      for (int64_t d = 0; d < dimN; d += N) {
        VF v[N];
        for (int64_t x = 0; x < N; ++x) v[x] = hn::LoadU(df, rows[x] + d);
        TransposeSquare(df, v);
        for (int64_t x = 0; x < N; ++x) {
          hn::StoreU(v[x], df, kt + (d + x) * kKeyTile + j);
        }
      }
      for (int64_t d = dimN; d < dim; ++d) {
        for (int64_t x = 0; x < N; ++x) {
          kt[d * kKeyTile + j + x] = load32(rows[x] + d);
        }
      }
    }
  }
#endif
  for (; j < j_hi; ++j) {
    const float* krow = row(j);
    for (int64_t d = 0; d < dim; ++d) kt[d * kKeyTile + j] = load32(krow + d);
  }
}
#endif

// Keys per group of QKRows4: 4 rows x kRowKeys keys of accumulators stay in
// registers (8 vectors, leaving room for the keys' vectors and the query
// rows on 16-register targets). AVX-512 has room for 4 keys, but 2 are
// faster there too: one decode step (16K bfloat16 tokens paged by 16,
// Hq 32 / Hkv 8, six runs of 200 steps each) 2.38 ms median with 4 keys,
// 2.13 with 4 and the prefetches spread over the group, 1.84 with 2;
// float32 and float16 caches alike.
inline constexpr int kRowKeys = 2;
static_assert(kRowKeys == 2, "the K-row kernels reduce 2 rows x 2 keys");

#if HWY_TARGET != HWY_SCALAR
// The lane sums of a, b, c and e, in that order, as one 128-bit vector
// (float or int32 lanes): within each 128-bit block two interleaving steps
// (32-bit, then 64-bit lanes) leave the block's four partial sums side by
// side, then the blocks are added, halving the vector until one block is
// left.
template <class D>
HWY_INLINE hn::Vec<hn::Full128<hn::TFromD<D>>> SumBlocks(D d, hn::Vec<D> v) {
  if constexpr (hn::MaxLanes(D()) <= 4) {
    (void)d;
    return v;
  } else {
    const hn::Half<D> dh;
    return SumBlocks(dh, hn::Add(hn::LowerHalf(dh, v), hn::UpperHalf(dh, v)));
  }
}
template <class D, class V = hn::Vec<D>>
HWY_INLINE hn::Vec<hn::Full128<hn::TFromD<D>>> Sum4(D d, V a, V b, V c, V e) {
  const hn::Repartition<uint64_t, D> d64;
  const V ab =
      hn::Add(hn::InterleaveLower(d, a, b), hn::InterleaveUpper(d, a, b));
  const V ce =
      hn::Add(hn::InterleaveLower(d, c, e), hn::InterleaveUpper(d, c, e));
  const auto ab64 = hn::BitCast(d64, ab), ce64 = hn::BitCast(d64, ce);
  const V sum = hn::Add(hn::BitCast(d, hn::InterleaveLower(d64, ab64, ce64)),
                        hn::BitCast(d, hn::InterleaveUpper(d64, ab64, ce64)));
  return SumBlocks(d, sum);
}
#endif  // HWY_TARGET != HWY_SCALAR

// Rows pf[j, j + K) (n elements each; null ones skipped), if pf is not
// null: the K-row kernels prefetch a tile's rows a key group at a time
// between their products (see QKRows4).
template <int K, class E>
HWY_INLINE void PrefetchGroup(const E* const* pf, int64_t j, int64_t n) {
  if (!pf) return;
  for (int m = 0; m < K; ++m) {
    if (pf[j + m]) PrefetchRow(pf[j + m], n);
  }
}

// Scores of 4 rows against the keys of a tile read straight from their
// stored rows, for items of at most 4 rows (decode): packing K transposed
// costs more than the products when only 4 rows share it (measured on
// AVX-512: a third of a float32 decode step; on AVX2, where the transpose
// is element by element, 44%). For each group of kRowKeys keys the dot
// products q_r . k_m accumulate along D in 4 x kRowKeys vectors (16-bit
// keys widened and int8 keys converted as they are loaded), then Sum4
// reduces them four at a time (2 rows x 2 keys); int8 scores are scaled by
// their key's scale after the sum.
//   q [4, dim] (rows past the item's are zero), krows[j]: key j's row or
//   null (a key no row sees: score 0), kscale[j]: its scale (int8 only),
//   s [4, kKeyTile]; the last dim % Lanes(DF()) elements are added one by
//   one (only the int8 path's fallback has such dims, see flash.h).
// pf (or null): rows of pf_n elements to prefetch meanwhile, a group at a
// time between the products, so the requests are spread over the tile
// rather than issued in one burst that fills the line-fill buffers and
// stalls the loads of this tile. The item passes this tile's V rows (the
// next tile's K rows are prefetched during P V: FlashTileCore::PVRows).
template <class E>
HWY_INLINE void QKRows4(const float* HWY_RESTRICT q, int64_t dim,
                        const E* const* krows, const float* kscale,
                        int64_t keys, float* HWY_RESTRICT s, const E* const* pf,
                        int64_t pf_n) {
  constexpr int K = kRowKeys;
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t dimN = dim / N * N;
  for (int64_t j = 0; j < kKeyTile; j += K) {
    PrefetchGroup<K>(pf, j, pf_n);
    const E* k[K];
    const E* kr[K];
    if (!key_group<K>(krows, keys, j, k, kr, s)) continue;
    VF acc[4][K];
    for (int r = 0; r < 4; ++r) {
      for (int m = 0; m < K; ++m) acc[r][m] = hn::Zero(df);
    }
    for (int64_t d = 0; d < dimN; d += N) {
      VF kv[K];
      for (int m = 0; m < K; ++m) kv[m] = LoadAsFloat(df, kr[m] + d);
      for (int r = 0; r < 4; ++r) {
        const VF qv = hn::LoadU(df, q + r * dim + d);
        for (int m = 0; m < K; ++m)
          acc[r][m] = hn::MulAdd(qv, kv[m], acc[r][m]);
      }
    }
#if HWY_TARGET == HWY_SCALAR  // one lane: the sums are done
    for (int r = 0; r < 4; ++r) {
      for (int m = 0; m < K; ++m) {
        s[r * kKeyTile + j + m] = hn::GetLane(acc[r][m]);
      }
    }
#else
    {  // rows r and r + 1 per Sum4
      const hn::Full64<float> d2;
      for (int r = 0; r < 4; r += 2) {
        const auto v =
            Sum4(df, acc[r][0], acc[r][1], acc[r + 1][0], acc[r + 1][1]);
        hn::StoreU(hn::LowerHalf(d2, v), d2, s + r * kKeyTile + j);
        hn::StoreU(hn::UpperHalf(d2, v), d2, s + (r + 1) * kKeyTile + j);
      }
    }
#endif
    for (int64_t d = dimN; d < dim; ++d) {
      for (int r = 0; r < 4; ++r) {
        for (int m = 0; m < K; ++m) {
          float x;
          if constexpr (std::is_same_v<E, float>) {
            x = kr[m][d];
          } else if constexpr (std::is_same_v<E, int8_t>) {
            x = static_cast<float>(kr[m][d]);
          } else {
            x = to_float(kr[m][d]);
          }
          s[r * kKeyTile + j + m] += q[r * dim + d] * x;
        }
      }
    }
    for (int m = 0; m < K; ++m) {
      if (!k[m]) {
        for (int r = 0; r < 4; ++r) s[r * kKeyTile + j + m] = 0.0f;
      } else if constexpr (std::is_same_v<E, int8_t>) {
        for (int r = 0; r < 4; ++r) s[r * kKeyTile + j + m] *= kscale[j + m];
      }
    }
  }
}

// QKRows4 for int8 keys on integer dot products (KPath::kInt8Rows): the 4
// query rows were quantised once per item to int8 values held as int16,
// q16[r] with scale qscale[r] (FlashTileCore::QuantizeQ), and each key's
// int8 values are widened to int16 as they are loaded; products of pairs
// are summed into int32 lanes (pmaddwd on x86), lane sums reduced in int32
// (exact: |q . k| <= dim * 127 * 127), the last dim % Lanes(int16) elements
// added one by one, and the score is float(q16 . k) * (qscale[r] *
// kscale[j]).
HWY_INLINE void QKRows4Int8(const int16_t* HWY_RESTRICT q16,
                            const float* qscale, int64_t dim,
                            const int8_t* const* krows, const float* kscale,
                            int64_t keys, float* HWY_RESTRICT s,
                            const int8_t* const* pf, int64_t pf_n) {
  constexpr int K = kRowKeys;
  const hn::ScalableTag<int16_t> d16;
  const hn::RepartitionToWide<decltype(d16)> d32;
  const hn::Rebind<int8_t, decltype(d16)> d8;
  using VI = hn::Vec<decltype(d32)>;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d16));
  const int64_t dimN = dim / N * N;
  for (int64_t j = 0; j < kKeyTile; j += K) {
    PrefetchGroup<K>(pf, j, pf_n);
    const int8_t* k[K];
    const int8_t* kr[K];
    if (!key_group<K>(krows, keys, j, k, kr, s)) continue;
    VI acc[4][K], odd[4][K];  // odd: the second sum some targets keep
    for (int r = 0; r < 4; ++r) {
      for (int m = 0; m < K; ++m) acc[r][m] = odd[r][m] = hn::Zero(d32);
    }
    for (int64_t d = 0; d < dimN; d += N) {
      hn::Vec<decltype(d16)> kv[K];
      for (int m = 0; m < K; ++m)
        kv[m] = hn::PromoteTo(d16, hn::LoadU(d8, kr[m] + d));
      for (int r = 0; r < 4; ++r) {
        const auto qv = hn::LoadU(d16, q16 + r * dim + d);
        for (int m = 0; m < K; ++m) {
          acc[r][m] = hn::ReorderWidenMulAccumulate(d32, qv, kv[m], acc[r][m],
                                                    odd[r][m]);
        }
      }
    }
    for (int r = 0; r < 4; ++r) {
      for (int m = 0; m < K; ++m)
        acc[r][m] = hn::RearrangeToOddPlusEven(acc[r][m], odd[r][m]);
    }
    int32_t dot[4][K];
#if HWY_TARGET == HWY_SCALAR
    for (int r = 0; r < 4; ++r) {
      for (int m = 0; m < K; ++m) dot[r][m] = hn::GetLane(acc[r][m]);
    }
#else
    {  // rows r and r + 1 per Sum4
      alignas(16) int32_t pair[4];
      const hn::Full128<int32_t> d4;
      for (int r = 0; r < 4; r += 2) {
        hn::Store(Sum4(d32, acc[r][0], acc[r][1], acc[r + 1][0], acc[r + 1][1]),
                  d4, pair);
        for (int m = 0; m < 2; ++m) {
          dot[r][m] = pair[m];
          dot[r + 1][m] = pair[2 + m];
        }
      }
    }
#endif
    for (int64_t d = dimN; d < dim; ++d) {
      for (int r = 0; r < 4; ++r) {
        for (int m = 0; m < K; ++m) dot[r][m] += q16[r * dim + d] * kr[m][d];
      }
    }
    for (int r = 0; r < 4; ++r) {
      for (int m = 0; m < K; ++m) {
        s[r * kKeyTile + j + m] =
            k[m] ? static_cast<float>(dot[r][m]) * (qscale[r] * kscale[j + m])
                 : 0.0f;
      }
    }
  }
}

// What this target offers choose_flash_path (flash.h).
inline FlashTarget ThisFlashTarget() {
  return {kAvx512, static_cast<int64_t>(hn::Lanes(DF()))};
}

// The keys of tile `tile` some row of an item can see: [j0 + first, j0 + bc).
struct FlashTile {
  int64_t j0, first, bc;
  TileKind kind;
};

// The steps of an item that depend on neither the query nor the key/value
// element type: the keys each row sees, S = Q Kt on the packed Q and K, the
// score rules and online softmax, dropout and O += P V. They are the SIMD
// bulk of the kernel, so they are defined once per target (flash_tile.cc)
// and shared by every item instantiation (flash.cc: one per query type;
// flash_paged.cc: one per query and cache type) instead of being inlined
// into each. The scratch layout is the plan's (file comment).
class FlashTileCore {
 public:
  HWY_INLINE FlashTileCore(const detail::Params& p, const FlashPlan& plan,
                           int64_t item, std::byte* scratch)
      : p_(p),
        plan_(plan),
        path_(plan.path),
        G_(p.shape.group()),
        D_(p.shape.D),
        Dv_(p.shape.Dv),
        Dvp_(plan.dv_padded),
        ranges_(reinterpret_cast<KeyRange*>(scratch + plan.ranges)),
        Q_(reinterpret_cast<float*>(scratch + plan.q)),
        Kt_(reinterpret_cast<float*>(scratch + plan.kt)),
        Kd_(reinterpret_cast<float*>(scratch + plan.kd)),
        V_(reinterpret_cast<float*>(scratch + plan.v)),
        S_(reinterpret_cast<float*>(scratch + plan.s)),
        O_(reinterpret_cast<float*>(scratch + plan.o)),
        m_(reinterpret_cast<float*>(scratch + plan.m)),
        l_(reinterpret_cast<float*>(scratch + plan.l)),
        lw_(reinterpret_cast<float*>(scratch + plan.lw)),
        keep_(reinterpret_cast<uint64_t*>(scratch + plan.keep)),
        Pp_(reinterpret_cast<uint32_t*>(scratch + plan.pp)) {
    span_ = item_span(p_, plan, item, ranges_);
    rows_ = G_ * span_.br;
    rows_padded_ = (rows_ + kRowBlock - 1) / kRowBlock * kRowBlock;
    // Rows the register blocks compute: 4 on the four-row path.
    block_rows_ = path_.row_block == 4 ? 4 : rows_padded_;
    pos0_ = span_.i0 + p_.offset_of(span_.b);
    pairs_ = (D_ + 1) / 2;
  }

  const ItemSpan& span() const { return span_; }
  int64_t pos0() const { return pos0_; }

  HWY_INLINE FlashTile At(int64_t tile, TileKind kind) const {
    const int64_t j0 = tile * kKeyTile;
    return {j0, std::max(j0, span_.keys_begin) - j0,
            std::min(j0 + kKeyTile, span_.keys_end) - j0, kind};
  }

  // 1c. The keys each row sees: its key range, and on tiles the pattern
  // leaves partial, the pattern's mask; padding rows see none.
  void RowKeys(const FlashTile& t);
  // 2. S = Q Kt per register block; on the fused path each block's online
  // softmax follows at once (Q is not prescaled: scale * log2(e) is applied
  // inside the exponent's argument, fused with the max).
  void QK(const FlashTile& t);
  // The same from K rows read in place (KPath::kRows: items of at most 4
  // rows), krows[j] key j0 + j's row or null, kscale[j] its scale (int8).
  // pf (or null): rows of pf_n elements to prefetch meanwhile (QKRows4).
  template <class E>
  void QKRows(const FlashTile& t, const E* const* krows, const float* kscale,
              const E* const* pf, int64_t pf_n);
  // KPath::kInt8Rows, once per item after Q is packed: each of the 4 rows
  // quantised like the cache quantises keys, q8 = round(q / s) with s =
  // max|q| / 127 (into Kd, unused on this path: int16 copies for the
  // generic kernel, bytes for VNNI). False when a row holds a non-finite
  // value: the item then scores in float (QKRows) so rule 8 holds.
  bool QuantizeQ();
  // 2. on KPath::kInt8Rows: S from int8 key rows on integer dot products
  // (QKRows4Int8 or qk_rows4_int8_vnni), then the fused softmax.
  void QKRowsInt8(const FlashTile& t, const int8_t* const* krows,
                  const float* kscale, const int8_t* const* pf, int64_t pf_n);
  // 3. Off the fused path: the score rules per element (scale first, so a
  // hidden key's -inf is never multiplied), the pattern's score per row,
  // then into base 2 like the fused path; hidden keys are cleared from
  // keep.
  void RowRules(const FlashTile& t);
  // 3b. Dropout (rule 7), after the row sums: dropped keys' P becomes 0,
  // kept ones are scaled by 1 / (1 - p).
  void Dropout(const FlashTile& t);
  // 4. O += P V from the packed V tile (VPath::kPacked, VPath::kBf16Pairs),
  // or (VPath::kRows) straight from the tile's value rows vrows[first, bc)
  // of E (int8: each row's scale already folded into P); pf (or null): the
  // next tile's K rows (D elements), prefetched a few keys per column block
  // of the product.
  void PVPacked(const FlashTile& t);
  template <class E>
  void PVRows(const FlashTile& t, const E* const* vrows, const E* const* pf);
  // VPath::kBf16RowPairs: bfloat16 value rows read in place as key pairs,
  // P as bfloat16 pairs (pv_rows4_bf16_dot); pf as in PVRows.
  void PVRowPairs(const FlashTile& t, const bfloat16* const* vrows,
                  const bfloat16* const* pf);

 protected:
  static constexpr float kLog2e = 1.4426950408889634f;

  float log2_scale() const { return p_.scale * kLog2e; }
  int64_t head(int64_t r) const { return span_.kvh * G_ + r / span_.br; }

  template <int R>
  void QKBlock(int64_t r);
  template <int R>
  void SoftmaxBlock(int64_t r);
  template <int R, class B, class E>
  void PVBlock(int64_t r, const FlashTile& t, const B& b, const E* const* pf);
  // Every register block of the item's rows, B the value source; pf as in
  // PVRows.
  template <class B, class E = float>
  void PVTile(const FlashTile& t, const B& b, const E* const* pf = nullptr);

  const detail::Params& p_;
  const FlashPlan& plan_;
  const FlashPath path_;
  const int64_t G_, D_, Dv_, Dvp_;
  KeyRange* const ranges_;
  float* const HWY_RESTRICT Q_;
  float* const HWY_RESTRICT Kt_;
  // K rows widened or dequantised before the transpose (16-bit and int8
  // keys off the bf16 path).
  float* const HWY_RESTRICT Kd_;
  float* const HWY_RESTRICT V_;
  float* const HWY_RESTRICT S_;
  float* const HWY_RESTRICT O_;
  float* const HWY_RESTRICT m_;
  float* const HWY_RESTRICT l_;
  // Sum of the weights PV actually applied: l itself, except on the bf16
  // PV path, where they are l's terms rounded to bfloat16.
  float* const HWY_RESTRICT lw_;
  // Per row, the keys of the current tile it sees (bit j: key j0 + j).
  uint64_t* const HWY_RESTRICT keep_;
  uint32_t* const HWY_RESTRICT Pp_;  // P as bf16 pairs (bf16 PV path)
  // KPath::kInt8Rows: the quantised query rows' scales and 128 * sum(q8).
  float qscale_[4] = {};
  int32_t qbias_[4] = {};
  ItemSpan span_;
  int64_t rows_ = 0, rows_padded_ = 0, block_rows_ = 0, pos0_ = 0, pairs_ = 0;
};

// One work item; see the file comment. Keys and values come from `src`
// (kv_source.h); pb.k and pb.v are not read. `scratch` is this worker's
// slice. With plan.splits > 1 the item covers one split of the keys and
// writes its normalised partial output and lse to `partial` (flash.h)
// instead of out; merge_partials combines them. The steps below are the
// item's pipeline; plan.path (chosen once per call) picks each one's form.
// What depends on T or the source's element type (packing Q, K and V,
// writing out, the exact fallback) is here; the rest is FlashTileCore's.
template <class T, class Src>
class FlashItemSteps : public FlashTileCore {
 public:
  using E = typename Src::Element;
  using Rows = TileRows<E, kKeyTile>;

  HWY_INLINE FlashItemSteps(const detail::Problem<T>& pb, const Src& src,
                            const FlashPlan& plan, int64_t item,
                            std::byte* scratch)
      : FlashTileCore(pb.params, plan, item, scratch), pb_(pb), src_(src) {}

  // Q packed (padding rows zero: floats, or bf16 pairs on the bf16 path);
  // O, m, l cleared.
  HWY_INLINE void PackQ() {
    const bool pairs = path_.k == KPath::kBf16Pairs || path_.bf16_dot;
    uint32_t* HWY_RESTRICT Qp = reinterpret_cast<uint32_t*>(Q_);
    for (int64_t r = 0; r < rows_padded_; ++r) {
      const bool real = r < rows_;
      const T* q = real ? q_row(r) : nullptr;
      if (pairs) {
        uint32_t* dst = Qp + r * pairs_;
        if (real) {
          pack_pairs(q, D_, dst, 1);
        } else {
          std::fill(dst, dst + pairs_, 0u);
        }
      } else {
        float* dst = Q_ + r * D_;
        if (real) {
          widen_row(q, D_, dst);
        } else {
          std::fill(dst, dst + D_, 0.0f);
        }
      }
      m_[r] = -std::numeric_limits<float>::infinity();
      l_[r] = 0.0f;
      lw_[r] = 0.0f;
    }
    std::fill(O_, O_ + rows_padded_ * Dvp_, 0.0f);
    int_qk_ = path_.k == KPath::kInt8Rows && QuantizeQ();
  }

  // The K/V rows of tile `tile` (TileRows, looked up once per page) into
  // the buffer after the current one; Advance makes it current.
  HWY_INLINE void FetchRows(int64_t tile) {
    const FlashTile t = At(tile, TileKind::kFull);
    src_.tile_rows(span_.b, span_.kvh, t.j0, t.first, t.bc,
                   tile_rows_[cur_ ^ 1]);
    next_ready_ = true;
  }
  HWY_INLINE void Advance() {
    cur_ ^= 1;
    next_ready_ = false;
  }

  // Prefetches the fetched (next) tile's K rows (values = false) or V rows
  // (true): cache pages hold only a few tokens of one head each, too little
  // for the hardware prefetcher, and few-query (decode) items would
  // otherwise wait on every load. K and V are requested at different steps
  // of the tile before, so the requests do not all wait for line-fill
  // buffers at once.
  // (On the K-row paths QK and PV spread these requests over their key
  // groups, and only V rows that are packed come here, in one burst.)
  HWY_INLINE void Prefetch(bool values) const {
    if (path_.k == KPath::kRows || path_.k == KPath::kInt8Rows) {
      if (!values || values_in_place(path_.v)) return;
    }
    const Rows& next = tile_rows_[cur_ ^ 1];
    for (int64_t j = next.first; j < next.end; ++j) {
      if (values) {
        PrefetchRow(next.v[j], Dv_);
      } else {
        PrefetchRow(next.k[j], D_);
      }
    }
  }

  // 1a. K: keys no row sees stay zero, so garbage there (padding, unfilled
  // cache) cannot turn into NaN.
  HWY_INLINE void PackK(const FlashTile& t) {
    Rows& rows = tile_rows_[cur_];
    rows.load_scales();  // int8 pages: fetched a tile ago, now in cache
    switch (path_.k) {
      case KPath::kBf16Pairs: {  // [pairs, kKeyTile]: keys as the SIMD axis
        uint32_t* HWY_RESTRICT Kp = reinterpret_cast<uint32_t*>(Kt_);
        if (t.first > 0 || t.bc < kKeyTile || D_ % 2) {
          std::fill(Kp, Kp + pairs_ * kKeyTile, 0u);
        }
        if (D_ % 2 == 0) {  // a row of D bfloat16 is D / 2 pairs in memory
          PackKTransposed32(
              [&](int64_t j) {
                return reinterpret_cast<const float*>(rows.k[j]);
              },
              t.first, t.bc, pairs_, reinterpret_cast<float*>(Kp));
        } else {
          for (int64_t j = t.first; j < t.bc; ++j) {
            pack_pairs(rows.k[j], D_, Kp + j, kKeyTile);
          }
        }
        return;
      }
      case KPath::kRows:  // read in place by QK
      case KPath::kInt8Rows:
        return;
      case KPath::kTransposed:
        break;
    }
    if (t.first > 0 || t.bc < kKeyTile) {
      std::fill(Kt_, Kt_ + D_ * kKeyTile, 0.0f);
    }
    if constexpr (std::is_same_v<E, float>) {
      PackKTransposed32([&](int64_t j) { return rows.k[j]; }, t.first, t.bc, D_,
                        Kt_);
    } else {  // widened or dequantised rows first
      for (int64_t j = t.first; j < t.bc; ++j) {
        dequant_row(rows.k[j], D_, rows.k_scale[j], Kd_ + j * D_);
      }
      PackKTransposed32([&](int64_t j) { return Kd_ + j * D_; }, t.first, t.bc,
                        D_, Kt_);
    }
  }

  // 1b. V.
  HWY_INLINE void PackV(const FlashTile& t) {
    const Rows& rows = tile_rows_[cur_];
    switch (path_.v) {
      case VPath::kBf16Pairs: {  // [ceil(bc / 2), Dvp]: keys 2p, 2p + 1
        if constexpr (kAvx512) {
          uint32_t* HWY_RESTRICT Vp = reinterpret_cast<uint32_t*>(V_);
          // Keys outside [first, bc) (null rows) read as zeros.
          const auto vrow = [&](int64_t j) {
            return reinterpret_cast<const uint16_t*>(rows.v[j]);
          };
          for (int64_t pr = 0; pr < (t.bc + 1) / 2; ++pr) {
            pack_value_pairs(vrow(2 * pr), vrow(2 * pr + 1), Dv_, Dvp_,
                             Vp + pr * Dvp_);
          }
        }
        return;
      }
      case VPath::kRows:  // read in place by PV
      case VPath::kBf16RowPairs:
        return;
      case VPath::kPacked:
        break;
    }
    for (int64_t j = 0; j < t.bc; ++j) {
      float* dst = V_ + j * Dvp_;
      if (j >= t.first) {
        dequant_row(rows.v[j], Dv_, rows.v_scale[j], dst);
      } else {
        std::fill(dst, dst + Dv_, 0.0f);
      }
      std::fill(dst + Dv_, dst + Dvp_, 0.0f);
    }
  }

  // 2. S = Q K^T (then, fused, the online softmax): from the K rows in
  // place (KPath::kRows; kInt8Rows on integers once the rows are
  // quantised), else from the packed tile.
  HWY_INLINE void QK(const FlashTile& t) {
    if (path_.k == KPath::kRows || path_.k == KPath::kInt8Rows) {
      const Rows& rows = tile_rows_[cur_];
      const Rows& next = tile_rows_[cur_ ^ 1];
      // The rows QK prefetches: this tile's V rows when P V reads them in
      // place (P V then prefetches the next tile's K rows), else the next
      // tile's K rows (its V rows follow in one burst, Prefetch).
      const bool values = values_in_place(path_.v);
      const E* const* pf = values ? rows.v : next_ready_ ? next.k : nullptr;
      const int64_t pf_n = values ? Dv_ : D_;
      if constexpr (std::is_same_v<E, int8_t>) {
        if (int_qk_) {
          QKRowsInt8(t, rows.k, rows.k_scale, pf, pf_n);
          return;
        }
      }
      QKRows<E>(t, rows.k, rows.k_scale, pf, pf_n);
    } else {
      FlashTileCore::QK(t);
    }
  }

  // 4. O += P V (int8 value rows read in place: their scales into P first).
  HWY_INLINE void PV(const FlashTile& t) {
    const bool krows = path_.k == KPath::kRows || path_.k == KPath::kInt8Rows;
    const Rows& rows = tile_rows_[cur_];
    const Rows& next = tile_rows_[cur_ ^ 1];
    if constexpr (std::is_same_v<E, bfloat16>) {
      if (path_.v == VPath::kBf16RowPairs) {
        PVRowPairs(t, rows.v, krows && next_ready_ ? next.k : nullptr);
        return;
      }
    }
    if (path_.v != VPath::kRows) {
      PVPacked(t);
      return;
    }
    if constexpr (std::is_same_v<E, int8_t>) {
      for (int64_t r = 0; r < block_rows_; ++r) {
        for (int64_t j = t.first; j < t.bc; ++j) {
          S_[r * kKeyTile + j] *= rows.v_scale[j];
        }
      }
    }
    // On the K-row paths, the next tile's K rows are prefetched meanwhile
    // (see QK).
    PVRows<E>(t, rows.v, krows && next_ready_ ? next.k : nullptr);
  }

  // Normalise once and write out (or the partial); lse = m + log l. A row
  // poisoned by a NaN or +inf score (m = NaN) is NaN, lse NaN (rule 8).
  HWY_INLINE void Finish(int64_t item, float* partial) {
    const float neg_inf = -std::numeric_limits<float>::infinity();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (int64_t r = 0; r < rows_; ++r) {
      const int64_t h = head(r), i = span_.i0 + r % span_.br;
      float* orow = O_ + r * Dvp_;
      double row_lse = nan;
      if (std::isnan(m_[r])) {
        std::fill(orow, orow + Dv_, nan);
      } else {
        const bool any = m_[r] != neg_inf && l_[r] > 0.0f;
        const float weights = rounds_probabilities(path_.v) ? lw_[r] : l_[r];
        const float inv = any ? 1.0f / weights : 0.0f;
        // m is in log2 units: lse = ln 2 * m + ln l, in double, rounded
        // once for the output (two float roundings at |lse| ~ 30 cost an
        // ulp, 1.9e-6) and kept in double for a split's merge.
        row_lse = any ? static_cast<double>(m_[r]) * 0.6931471805599453 +
                            std::log(static_cast<double>(l_[r]))
                      : neg_inf;
        bool finite = true;
        for (int64_t d = 0; d < Dv_; ++d) {
          orow[d] *= inv;
          finite = finite && std::isfinite(orow[d]);
        }
        if (!finite) ExactRow(r, orow);
      }
      if (plan_.splits > 1) {
        float* po = partial + plan_.partial_out(item) + r * Dv_;
        std::copy(orow, orow + Dv_, po);
        plan_.partial_lse(partial, item)[r] = row_lse;
        continue;
      }
      T* out = pb_.out.row(span_.b, h, i);
      for (int64_t d = 0; d < Dv_; ++d) out[d] = from_float<T>(orow[d]);
      if (!pb_.lse.empty()) {
        pb_.lse(span_.b, h, i, 0) = static_cast<float>(row_lse);
      }
    }
  }

 private:
  const T* q_row(int64_t r) const {
    return pb_.q.row(span_.b, head(r), span_.i0 + r % span_.br);
  }

  // Rule 5 when the tiles could not keep it. A tile's P V product reads
  // every value row of the tile for all its rows, a key hidden from row r
  // (causal diagonal, mask, bias -inf, dropped) with weight 0: a NaN or
  // infinity in that value row turns 0 * v into NaN there. So a row that is
  // not poisoned but came out non-finite (or whose unnormalised sum
  // overflowed) is computed again here, exactly by the rules: one key at a
  // time over the item's keys, scores as naive computes them, and only keys
  // of non-zero weight read. Rare (non-finite values or overflow in the
  // input), so plain scalar code; out = the row, normalised.
  HWY_NOINLINE void ExactRow(int64_t r, float* HWY_RESTRICT orow) const {
    const int64_t b = span_.b, kvh = span_.kvh, h = head(r);
    const int64_t i = span_.i0 + r % span_.br;
    const T* q = q_row(r);
    const auto element = [](E x) -> float {
      if constexpr (std::is_same_v<E, int8_t>) {
        return static_cast<float>(x);
      } else {
        return to_float(x);
      }
    };
    const auto score = [&](int64_t j) {
      const E* k = src_.k_row(b, kvh, j);
      const float ks = src_.k_scale(b, kvh, j);
      float dot = 0.0f;
      for (int64_t d = 0; d < D_; ++d)
        dot += to_float(q[d]) * (element(k[d]) * ks);
      return p_.score<float>(dot, b, h, i, j);
    };
    const float inf = std::numeric_limits<float>::infinity();
    float m = -inf;
    for (int64_t j = span_.keys_begin; j < span_.keys_end; ++j) {
      if (!p_.visible(b, h, i, j)) continue;
      const float sj = score(j);
      if (!(sj < inf)) {  // rounding found a poisoning score the tiles missed
        std::fill(orow, orow + Dv_, std::numeric_limits<float>::quiet_NaN());
        return;
      }
      m = std::max(m, sj);
    }
    std::fill(orow, orow + Dv_, 0.0f);
    if (m == -inf) return;
    float l = 0.0f;
    const uint64_t drop_row = p_.dropout.row(b, h, i);
    for (int64_t j = span_.keys_begin; j < span_.keys_end; ++j) {
      if (!p_.visible(b, h, i, j)) continue;
      const float w = std::exp(score(j) - m);
      l += w;
      const float wd = p_.dropout.on() ? w * p_.dropout.factor(drop_row, j) : w;
      if (wd == 0.0f) continue;  // a key of weight 0 is never read
      const E* v = src_.v_row(b, kvh, j);
      const float vs = src_.v_scale(b, kvh, j);
      for (int64_t d = 0; d < Dv_; ++d) orow[d] += wd * (element(v[d]) * vs);
    }
    for (int64_t d = 0; d < Dv_; ++d) orow[d] /= l;
  }

  const detail::Problem<T>& pb_;
  const Src& src_;
  // The current tile's K/V rows and the next one's (fetched a tile ahead so
  // they can be prefetched).
  Rows tile_rows_[2];
  int cur_ = 0;
  bool next_ready_ = false;
  bool int_qk_ = false;  // KPath::kInt8Rows with the query rows quantised
};

// One item's tile loop, a tile per Next(): FlashItem runs one item to the
// end; FlashItemGroup runs the items of consecutive KV heads side by side.
template <class T, class Src>
class FlashItemLoop {
 public:
  HWY_INLINE FlashItemLoop(const detail::Problem<T>& pb, const Src& src,
                           const FlashPlan& plan, int64_t item,
                           std::byte* scratch)
      : step_(pb, src, plan, item, scratch),
        walk_(Walker(pb.params, step_.span(), step_.pos0())),
        fused_(plan.path.fused),
        dropout_(pb.params.dropout.on()) {
    step_.PackQ();
    have_ = walk_.next(tile_, kind_);
    if (have_) {
      step_.FetchRows(tile_);
      step_.Advance();
    }
  }

  // Computes the next tile; false once there is none left.
  HWY_INLINE bool Next() {
    if (!have_) return false;
    int64_t next_tile = 0;
    TileKind next_kind = TileKind::kFull;
    const bool more = walk_.next(next_tile, next_kind);
    if (more) {
      step_.FetchRows(next_tile);
      step_.Prefetch(/*values=*/false);
    }
    const auto t = step_.At(tile_, kind_);
    step_.PackK(t);
    step_.PackV(t);
    step_.RowKeys(t);
    step_.QK(t);
    if (more) step_.Prefetch(/*values=*/true);
    if (!fused_) step_.RowRules(t);
    if (dropout_) step_.Dropout(t);
    step_.PV(t);
    tile_ = next_tile;
    kind_ = next_kind;
    have_ = more;
    step_.Advance();
    return have_;
  }

  HWY_INLINE void Finish(int64_t item, float* partial) {
    step_.Finish(item, partial);
  }

 private:
  // The tiles to visit: every tile of the item's keys that the pattern's
  // mask does not hide from all rows (tile_walk.h).
  static TileWalker Walker(const detail::Params& p, const ItemSpan& s,
                           int64_t pos0) {
    const int64_t G = p.shape.group();
    return TileWalker(p.pattern, s.b, s.kvh * G, s.kvh * G + G, pos0,
                      pos0 + s.br, s.keys_begin, s.keys_end, kKeyTile);
  }

  FlashItemSteps<T, Src> step_;
  TileWalker walk_;
  const bool fused_, dropout_;
  int64_t tile_ = 0;
  TileKind kind_ = TileKind::kFull;
  bool have_ = false;
};

// The items of work unit `unit` (FlashPlan::unit_items): one item, or the
// items of plan.head_group consecutive KV heads that share a batch entry,
// query block and split, computed a tile of each in turn. Each item's
// arithmetic is the same either way; only the order of memory reads
// changes: a cache page holds its P tokens of every KV head one after the
// other, so the group reads whole pages rather than one head's few KiB of
// each (file comment of kv_source.h). `scratch` holds plan.bytes per item.
template <class T, class Src>
void FlashItemGroup(const detail::Problem<T>& pb, const Src& src,
                    const FlashPlan& plan, int64_t unit, std::byte* scratch,
                    float* partial) {
  int64_t first = 0, stride = 0;
  const int64_t n = plan.unit_items(unit, first, stride);
  if (n == 1) {
    FlashItemLoop<T, Src> loop(pb, src, plan, first, scratch);
    while (loop.Next()) {
    }
    loop.Finish(first, partial);
    return;
  }
  using Loop = FlashItemLoop<T, Src>;
  // Constructed in place here (not through std::optional, whose default-
  // target code may not call this target's inline functions).
  alignas(Loop) unsigned char storage[kMaxHeadGroup][sizeof(Loop)];
  Loop* loops[kMaxHeadGroup];
  bool active[kMaxHeadGroup];
  for (int64_t g = 0; g < n; ++g) {
    loops[g] = new (storage[g])
        Loop(pb, src, plan, first + g * stride, scratch + g * plan.bytes);
    active[g] = true;
  }
  for (bool any = true; any;) {
    any = false;
    for (int64_t g = 0; g < n; ++g) {
      if (!active[g]) continue;
      active[g] = loops[g]->Next();
      any = any || active[g];
    }
  }
  for (int64_t g = 0; g < n; ++g) {
    loops[g]->Finish(first + g * stride, partial);
    loops[g]->~Loop();
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SRC_KERNELS_FLASH_INL_H_
