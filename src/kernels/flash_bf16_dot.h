// bfloat16 QK^T micro-kernel on vdpbf16ps (AVX-512 BF16), which Highway
// 1.0.3 lacks. Compiled in its own file with the instruction enabled; call
// only when cpu_has_avx512_bf16() (src/util/cpu.h).
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

// Packs `rows` rows of kKeyTile probabilities, already rounded to
// bfloat16 values, as bfloat16 pairs along the keys: pp[r, p] holds keys
// 2p (low half) and 2p + 1.   p: [rows, kKeyTile]   pp: [rows,
// kKeyTile / 2]
void pack_probability_pairs(const float* p, uint32_t* pp, int rows);

// O[r, 0 .. vecs * 16) += sum_p dot(pp[r, p], vp[p, :]) for r < kRowBlock,
// over `pairs` key pairs; vp[p, c] holds V[2p, c] (low half) and
// V[2p + 1, c] as bfloat16. vecs in [1, 4].
//   pp: [kRowBlock, kKeyTile / 2]   vp: [pairs, dvp]   o: [kRowBlock, dvp]
void pv_block_bf16_dot(const uint32_t* pp, int64_t pairs, const uint32_t* vp,
                       int64_t dvp, int vecs, float* o);

// Interleaves two rows of n bfloat16 values (keys 2p and 2p + 1 of a V
// tile; null reads as zeros) into dst[0 .. dvp) as pairs, low half from a;
// dst[n .. dvp) becomes 0.
void pack_value_pairs(const uint16_t* a, const uint16_t* b, int64_t n,
                      int64_t dvp, uint32_t* dst);

// O[r, 0 .. dv) += sum_j P[r, j] V[j, :] for r < 4 and the keys j in
// [first, bc) (the others, and null rows, add nothing), for decode-sized
// items (VPath::kBf16RowPairs): the value rows vrows[j] (bfloat16, dv a
// multiple of 16) are read in place and interleaved in registers into key
// pairs, 16 columns per vector, and multiplied by pp's probability pairs
// (pack_probability_pairs) on vdpbf16ps. The rows pf[j] (pf_n elements
// each), when pf is not null, are prefetched a share per column block of
// 64 (the item passes the next tile's K rows, as PVRows does).
//   pp [4, kKeyTile / 2]   vrows / pf [64]   o [4, dvp]
void pv_rows4_bf16_dot(const uint32_t* pp, int64_t first, int64_t bc,
                       const uint16_t* const* vrows, int64_t dv, float* o,
                       int64_t dvp, const uint16_t* const* pf, int64_t pf_n);

// Scores of 4 bfloat16 query rows against bfloat16 key rows read in place
// (decode-sized items, KPath::kRows with FlashPath::bf16_dot): s[r, j] =
// q[r] . k_j for keys j < keys with a row, 0 for the others (null
// krows[j], or j >= keys). A row of bfloat16 values is already a row of
// pairs along the head dim, so each vdpbf16ps multiplies 32 elements of a
// query row by 32 of a key row (exact products) and adds them into 16
// float32 lanes, which are then summed. The rows pf[j] (pf_n elements
// each), when pf is not null, are prefetched between the key groups (the
// item passes the tile's V rows, as QKRows4 does). Any dim (the last
// dim % 32 elements through masked loads).
//   q [4, dim]   krows / pf [64]   s [4, 64]
void qk_rows4_bf16_dot(const uint16_t* q, int64_t dim,
                       const uint16_t* const* krows, int64_t keys, float* s,
                       const uint16_t* const* pf, int64_t pf_n);

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_FLASH_BF16_DOT_H_
