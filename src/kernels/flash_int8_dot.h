// int8 q . k for decode on vpdpbusd (AVX-512 VNNI), which Highway 1.0.3
// lacks. Compiled in its own file with the instruction enabled; call only
// when cpu_has_avx512_vnni() (src/util/cpu.h).
#ifndef ATTN_SRC_KERNELS_FLASH_INT8_DOT_H_
#define ATTN_SRC_KERNELS_FLASH_INT8_DOT_H_

#include <cstdint>

namespace attn::kernels {

// Scores of 4 quantised query rows against int8 key rows (the
// KPath::kInt8Rows step on VNNI): s[r, j] = float(q8[r] . k_j) *
// (qscale[r] * kscale[j]) for keys j < keys with a row, 0 for the others
// (null krows[j], or j >= keys). vpdpbusd multiplies unsigned by signed
// bytes, so the keys enter as k + 128 (k ^ 0x80) and qbias[r] =
// 128 * sum(q8[r]) is taken off the exact int32 sum. The rows pf[j]
// (pf_bytes each), when pf is not null, are prefetched between the key
// groups (the item passes the tile's V rows, as QKRows4 does). Any dim (the
// last dim % 64 bytes through masked loads).
//   q8 [4, dim]   krows / pf [64]   s [4, 64]
void qk_rows4_int8_vnni(const int8_t* q8, const int32_t* qbias,
                        const float* qscale, int64_t dim,
                        const int8_t* const* krows, const float* kscale,
                        int64_t keys, float* s, const int8_t* const* pf,
                        int64_t pf_bytes);

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_FLASH_INT8_DOT_H_
