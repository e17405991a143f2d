// vpdpbusd q . k for int8 caches: 4 query rows x 2 keys of int32
// accumulators (as QKRows4, flash-inl.h: measured faster than 4 keys),
// each instruction 64 byte products (4 per lane) summed into 16 lanes; a
// transpose-and-add tree then reduces two rows' two keys at a time.
#include "src/kernels/flash_int8_dot.h"

#include <immintrin.h>

#include "src/kernels/key_group.h"

// GCC 12 warns falsely about the intrinsics' internal undefined operands.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace attn::kernels {

namespace {

#define ATTN_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

// The lane sums of a, b, c, e as the four lanes of one 128-bit vector.
ATTN_VNNI inline __m128i sum4(__m512i a, __m512i b, __m512i c, __m512i e) {
  const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b),
                                      _mm512_unpackhi_epi32(a, b));
  const __m512i ce = _mm512_add_epi32(_mm512_unpacklo_epi32(c, e),
                                      _mm512_unpackhi_epi32(c, e));
  const __m512i x = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, ce),
                                     _mm512_unpackhi_epi64(ab, ce));
  const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(x),
                                     _mm512_extracti64x4_epi64(x, 1));
  return _mm_add_epi32(_mm256_castsi256_si128(h),
                       _mm256_extracti128_si256(h, 1));
}

// Into L2, as PrefetchRow (row_ops-inl.h) and for the same reason.
ATTN_VNNI inline void prefetch_row(const int8_t* row, int64_t bytes) {
  for (int64_t d = 0; d < bytes; d += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(row + d), _MM_HINT_T1);
  }
}

}  // namespace

ATTN_VNNI void qk_rows4_int8_vnni(const int8_t* q8, const int32_t* qbias,
                                  const float* qscale, int64_t dim,
                                  const int8_t* const* krows,
                                  const float* kscale, int64_t keys, float* s,
                                  const int8_t* const* pf, int64_t pf_bytes) {
  static_assert(kKeyTile % 2 == 0, "key groups of 2");
  constexpr int K = 2;
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t j = 0; j < kKeyTile; j += K) {
    if (pf) {
      for (int m = 0; m < K; ++m) {
        if (pf[j + m]) prefetch_row(pf[j + m], pf_bytes);
      }
    }
    const int8_t* k[K];
    const int8_t* kr[K];
    if (!key_group<K>(krows, keys, j, k, kr, s)) continue;
    __m512i acc[4][K];
    for (int r = 0; r < 4; ++r) {
      for (int m = 0; m < K; ++m) acc[r][m] = _mm512_setzero_si512();
    }
    // 64 bytes at a time; the last dim % 64 through masked loads (query
    // bytes past the row read as 0, so their keys' 128 adds nothing).
    for (int64_t d = 0; d < dim; d += 64) {
      const __mmask64 mask =
          dim - d >= 64 ? ~__mmask64{0} : (__mmask64{1} << (dim - d)) - 1;
      __m512i kv[K];
      for (int m = 0; m < K; ++m) {
        kv[m] =
            _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, kr[m] + d), flip);
      }
      for (int r = 0; r < 4; ++r) {
        const __m512i qv = _mm512_maskz_loadu_epi8(mask, q8 + r * dim + d);
        for (int m = 0; m < K; ++m) {
          acc[r][m] = _mm512_dpbusd_epi32(acc[r][m], kv[m], qv);
        }
      }
    }
    // Exact int32 sums minus the bias, then the scales per key (the same
    // float operations as QKRows4Int8, so both give the same bits): lanes
    // (r, j), (r, j + 1), (r + 1, j), (r + 1, j + 1).
    for (int r = 0; r < 4; r += 2) {
      const __m128i bias =
          _mm_setr_epi32(qbias[r], qbias[r], qbias[r + 1], qbias[r + 1]);
      const __m128i dot = _mm_sub_epi32(
          sum4(acc[r][0], acc[r][1], acc[r + 1][0], acc[r + 1][1]), bias);
      const __m128 scale = _mm_mul_ps(
          _mm_setr_ps(qscale[r], qscale[r], qscale[r + 1], qscale[r + 1]),
          _mm_setr_ps(kscale[j], kscale[j + 1], kscale[j], kscale[j + 1]));
      float out[4];
      _mm_storeu_ps(out, _mm_mul_ps(_mm_cvtepi32_ps(dot), scale));
      for (int m = 0; m < K; ++m) {
        s[r * kKeyTile + j + m] = k[m] ? out[m] : 0.0f;
        s[(r + 1) * kKeyTile + j + m] = k[m] ? out[2 + m] : 0.0f;
      }
    }
  }
}

}  // namespace attn::kernels

#pragma GCC diagnostic pop
