// bfloat16 QK^T micro-kernel on vdpbf16ps (AVX-512 BF16), which Highway
// 1.0.3 lacks. Compiled in its own file with the instruction enabled; call
// only when cpu_has_avx512_bf16() (attn/machine.h).
#ifndef ATTN_SRC_KERNELS_FLASH_BF16_DOT_H_
#define ATTN_SRC_KERNELS_FLASH_BF16_DOT_H_

#include <cstdint>

namespace attn::kernels {

// S[r, 0 .. kKeyTile) = sum_p dot(Q[r, p], Kp[p, j]) for r < kRowBlock,
// where Q[r, p] and Kp[p, j] each hold two bfloat16 values (elements 2p and
// 2p + 1 of the head dim, low half first). Products are exact and summed in
// float32 by the instruction, pair by pair.
//   q:  [kRowBlock, pairs] uint32     kp: [pairs, kKeyTile] uint32
//   s:  [kRowBlock, kKeyTile] float
void qk_block_bf16_dot(const uint32_t* q, int64_t pairs, const uint32_t* kp,
                       float* s);

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_FLASH_BF16_DOT_H_
