// vdpbf16ps micro-kernel: 6 query rows x 64 keys in 24 zmm accumulators;
// each instruction does 16 keys x 2 head-dim elements (32 multiply-adds),
// twice the work of an fp32 FMA.
#include "src/kernels/flash_bf16_dot.h"

#include <immintrin.h>

#include "src/kernels/flash.h"

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
      const __m512bh qv = (__m512bh)_mm512_set1_epi32(
          static_cast<int>(q[r * pairs + p]));
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], qv, k[c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(s + r * kKeyTile + c * 16, acc[r][c]);
}

}  // namespace attn::kernels
