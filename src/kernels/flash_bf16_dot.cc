// vdpbf16ps micro-kernels: for prefill, 6 query rows x 64 keys in 24 zmm
// accumulators, each instruction 16 keys x 2 head-dim elements (32
// multiply-adds, twice the work of an fp32 FMA); for decode, 4 query rows x
// 2 keys read from their rows, each instruction 32 head-dim elements of one
// row and one key, the lanes summed after.
#include "src/kernels/flash_bf16_dot.h"

#include <immintrin.h>

#include <algorithm>

#include "src/kernels/flash.h"
#include "src/kernels/key_group.h"

namespace attn::kernels {

__attribute__((target("avx512f,avx512bf16"))) void qk_block_bf16_dot(
    const uint32_t* q, int64_t pairs, const uint32_t* kp, float* s) {
  static_assert(kKeyTile == 64 && kRowBlock == 6, "tile shape of this kernel");
  constexpr int R = 6, C = 4;
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh k[C];
    for (int c = 0; c < C; ++c) {
      k[c] = (__m512bh)_mm512_loadu_si512(kp + p * kKeyTile + c * 16);
    }
    for (int r = 0; r < R; ++r) {
      const __m512bh qv =
          (__m512bh)_mm512_set1_epi32(static_cast<int>(q[r * pairs + p]));
      for (int c = 0; c < C; ++c)
        acc[r][c] = _mm512_dpbf16_ps(acc[r][c], qv, k[c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c)
      _mm512_storeu_ps(s + r * kKeyTile + c * 16, acc[r][c]);
}

__attribute__((target("avx512f,avx512bf16"))) void pack_probability_pairs(
    const float* p, uint32_t* pp, int rows) {
  for (int r = 0; r < rows; ++r) {
    for (int j = 0; j < kKeyTile; j += 32) {
      const __m512 lo = _mm512_loadu_ps(p + r * kKeyTile + j);
      const __m512 hi = _mm512_loadu_ps(p + r * kKeyTile + j + 16);
      // Exact: the values are bfloat16 already.
      _mm512_storeu_si512(pp + r * (kKeyTile / 2) + j / 2,
                          (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
  }
}

__attribute__((target("avx512f,avx512bw"))) void pack_value_pairs(
    const uint16_t* a, const uint16_t* b, int64_t n, int64_t dvp,
    uint32_t* dst) {
  // Word indices into (a | b): a0 b0 a1 b1 ... for the first 16 pairs and
  // a16 b16 ... for the next 16 (b's words are numbered from 32).
  alignas(64) static const uint16_t kLo[32] = {
      0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
      8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static const uint16_t kHi[32] = {
      16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
      24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  const __m512i lo_idx = _mm512_load_si512(kLo),
                hi_idx = _mm512_load_si512(kHi);
  int64_t d = 0;
  for (; d + 32 <= n; d += 32) {
    const __m512i va = a ? _mm512_loadu_si512(a + d) : _mm512_setzero_si512();
    const __m512i vb = b ? _mm512_loadu_si512(b + d) : _mm512_setzero_si512();
    _mm512_storeu_si512(dst + d, _mm512_permutex2var_epi16(va, lo_idx, vb));
    _mm512_storeu_si512(dst + d + 16,
                        _mm512_permutex2var_epi16(va, hi_idx, vb));
  }
  for (; d < n; ++d) {
    dst[d] = (a ? a[d] : 0u) | (static_cast<uint32_t>(b ? b[d] : 0u) << 16);
  }
  for (; d < dvp; ++d) dst[d] = 0;
}

namespace {

template <int C>
__attribute__((target("avx512f,avx512bf16"))) inline void pv_block(
    const uint32_t* pp, int64_t pairs, const uint32_t* vp, int64_t dvp,
    float* o) {
  constexpr int R = kRowBlock;
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c)
      acc[r][c] = _mm512_loadu_ps(o + r * dvp + c * 16);
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh v[C];
    for (int c = 0; c < C; ++c) {
      v[c] = (__m512bh)_mm512_loadu_si512(vp + p * dvp + c * 16);
    }
    for (int r = 0; r < R; ++r) {
      const __m512bh pv = (__m512bh)_mm512_set1_epi32(
          static_cast<int>(pp[r * (kKeyTile / 2) + p]));
      for (int c = 0; c < C; ++c)
        acc[r][c] = _mm512_dpbf16_ps(acc[r][c], pv, v[c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c)
      _mm512_storeu_ps(o + r * dvp + c * 16, acc[r][c]);
}

// GCC 12 warns falsely about the intrinsics' internal undefined operands.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define ATTN_BF16_ROWS __attribute__((target("avx512f,avx512bw,avx512bf16")))

// The lane sums of a, b, c, e as the four lanes of one 128-bit vector.
ATTN_BF16_ROWS inline __m128 sum4(__m512 a, __m512 b, __m512 c, __m512 e) {
  const __m512 ab =
      _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  const __m512 ce =
      _mm512_add_ps(_mm512_unpacklo_ps(c, e), _mm512_unpackhi_ps(c, e));
  const __m512d abd = _mm512_castps_pd(ab), ced = _mm512_castps_pd(ce);
  const __m512 x =
      _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(abd, ced)),
                    _mm512_castpd_ps(_mm512_unpackhi_pd(abd, ced)));
  const __m256 h = _mm256_add_ps(
      _mm512_castps512_ps256(x),
      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// Into L2, as PrefetchRow (row_ops-inl.h) and for the same reason.
ATTN_BF16_ROWS inline void prefetch_row(const uint16_t* row, int64_t n) {
  for (int64_t d = 0; d < n; d += 32) {
    _mm_prefetch(reinterpret_cast<const char*>(row + d), _MM_HINT_T1);
  }
}

// Columns [col, col + 16 C) of O's 4 rows += the key pairs [p0, p1).
template <int C>
ATTN_BF16_ROWS inline void pv_rows4_block(const uint32_t* pp, int64_t p0,
                                          int64_t p1, int64_t first, int64_t bc,
                                          const uint16_t* const* vrows,
                                          int64_t col, float* o, int64_t dvp) {
  // Word 2i of the result is word i of a (the low 256 bits), word 2i + 1
  // word i of b (the high 256 bits).
  alignas(64) static const uint16_t kInterleave[32] = {
      0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i idx = _mm512_load_si512(kInterleave);
  __m512 acc[4][C];
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < C; ++c)
      acc[r][c] = _mm512_loadu_ps(o + r * dvp + col + c * 16);
  const auto row = [&](int64_t j) -> const uint16_t* {
    return j >= first && j < bc ? vrows[j] : nullptr;
  };
  for (int64_t p = p0; p < p1; ++p) {
    const uint16_t* a = row(2 * p);
    const uint16_t* b = row(2 * p + 1);
    __m512bh v[C];
    for (int c = 0; c < C; ++c) {
      const int64_t at = col + c * 16;
      const __m256i va =
          a ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + at))
            : _mm256_setzero_si256();
      const __m256i vb =
          b ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + at))
            : _mm256_setzero_si256();
      v[c] = (__m512bh)_mm512_permutexvar_epi16(
          idx, _mm512_inserti64x4(_mm512_castsi256_si512(va), vb, 1));
    }
    for (int r = 0; r < 4; ++r) {
      const __m512bh pv = (__m512bh)_mm512_set1_epi32(
          static_cast<int>(pp[r * (kKeyTile / 2) + p]));
      for (int c = 0; c < C; ++c)
        acc[r][c] = _mm512_dpbf16_ps(acc[r][c], pv, v[c]);
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < C; ++c)
      _mm512_storeu_ps(o + r * dvp + col + c * 16, acc[r][c]);
}

}  // namespace

ATTN_BF16_ROWS void pv_rows4_bf16_dot(const uint32_t* pp, int64_t first,
                                      int64_t bc, const uint16_t* const* vrows,
                                      int64_t dv, float* o, int64_t dvp,
                                      const uint16_t* const* pf, int64_t pf_n) {
  const int64_t vecs_total = dv / 16;
  const int64_t blocks = (vecs_total + 3) / 4;  // column blocks of 64
  const int64_t p0 = first / 2, p1 = (bc + 1) / 2;
  for (int64_t c = 0; c < vecs_total; c += 4) {
    if (pf) {  // this block's share of the keys
      const int64_t at = c / 4;
      const int64_t j1 = (at + 1) * kKeyTile / blocks;
      for (int64_t j = at * kKeyTile / blocks; j < j1; ++j) {
        if (pf[j]) prefetch_row(pf[j], pf_n);
      }
    }
    switch (std::min<int64_t>(4, vecs_total - c)) {
      case 1:
        pv_rows4_block<1>(pp, p0, p1, first, bc, vrows, c * 16, o, dvp);
        break;
      case 2:
        pv_rows4_block<2>(pp, p0, p1, first, bc, vrows, c * 16, o, dvp);
        break;
      case 3:
        pv_rows4_block<3>(pp, p0, p1, first, bc, vrows, c * 16, o, dvp);
        break;
      default:
        pv_rows4_block<4>(pp, p0, p1, first, bc, vrows, c * 16, o, dvp);
    }
  }
}

ATTN_BF16_ROWS void qk_rows4_bf16_dot(const uint16_t* q, int64_t dim,
                                      const uint16_t* const* krows,
                                      int64_t keys, float* s,
                                      const uint16_t* const* pf, int64_t pf_n) {
  static_assert(kKeyTile % 2 == 0, "key groups of 2");
  constexpr int K = 2;
  for (int64_t j = 0; j < kKeyTile; j += K) {
    if (pf) {
      for (int m = 0; m < K; ++m) {
        if (pf[j + m]) prefetch_row(pf[j + m], pf_n);
      }
    }
    const uint16_t* k[K];
    const uint16_t* kr[K];
    if (!key_group<K>(krows, keys, j, k, kr, s)) continue;
    __m512 acc[4][K];
    for (int r = 0; r < 4; ++r) {
      for (int m = 0; m < K; ++m) acc[r][m] = _mm512_setzero_ps();
    }
    // 32 elements at a time; the last dim % 32 through masked loads (zeros
    // past the row on both sides add nothing).
    for (int64_t d = 0; d < dim; d += 32) {
      const __mmask32 mask =
          dim - d >= 32 ? ~__mmask32{0} : (__mmask32{1} << (dim - d)) - 1;
      __m512bh kv[K];
      for (int m = 0; m < K; ++m) {
        kv[m] = (__m512bh)_mm512_maskz_loadu_epi16(mask, kr[m] + d);
      }
      for (int r = 0; r < 4; ++r) {
        const __m512bh qv =
            (__m512bh)_mm512_maskz_loadu_epi16(mask, q + r * dim + d);
        for (int m = 0; m < K; ++m) {
          acc[r][m] = _mm512_dpbf16_ps(acc[r][m], qv, kv[m]);
        }
      }
    }
    // Lanes (r, j), (r, j + 1), (r + 1, j), (r + 1, j + 1).
    for (int r = 0; r < 4; r += 2) {
      float out[4];
      _mm_storeu_ps(out,
                    sum4(acc[r][0], acc[r][1], acc[r + 1][0], acc[r + 1][1]));
      for (int m = 0; m < K; ++m) {
        s[r * kKeyTile + j + m] = k[m] ? out[m] : 0.0f;
        s[(r + 1) * kKeyTile + j + m] = k[m] ? out[2 + m] : 0.0f;
      }
    }
  }
}

#pragma GCC diagnostic pop

void pv_block_bf16_dot(const uint32_t* pp, int64_t pairs, const uint32_t* vp,
                       int64_t dvp, int vecs, float* o) {
  switch (vecs) {
    case 1:
      return pv_block<1>(pp, pairs, vp, dvp, o);
    case 2:
      return pv_block<2>(pp, pairs, vp, dvp, o);
    case 3:
      return pv_block<3>(pp, pairs, vp, dvp, o);
    default:
      return pv_block<4>(pp, pairs, vp, dvp, o);
  }
}

}  // namespace attn::kernels
