// The key groups of the K-row score kernels (decode: QKRows4 and
// QKRows4Int8 in flash-inl.h, qk_rows4_int8_vnni): the keys of a tile are
// scored K at a time straight from their rows.
#ifndef ATTN_SRC_KERNELS_KEY_GROUP_H_
#define ATTN_SRC_KERNELS_KEY_GROUP_H_

#include <cstdint>

#include "src/kernels/flash.h"

namespace attn::kernels {

// Keys [j, j + K) of a tile of `keys` keys whose rows are krows[]: k[m] is
// key j + m's row or null (a key no row sees, or past the tile), kr[m] the
// row to read for it (the group's first seen row for a null one, never a
// hidden row; its score is cleared after). Returns false, with the group's
// scores in s [4, kKeyTile] zeroed, when no key of the group is seen.
// (The caller prefetches the next tile's rows of the group first: a
// prefetch called through here from a kernel of a wider target was dropped
// by GCC 12, measured 2.5x slower.)
template <int K, class E>
inline bool key_group(const E* const* krows, int64_t keys, int64_t j,
                      const E* (&k)[K], const E* (&kr)[K], float* s) {
  const E* seen = nullptr;
  for (int m = 0; m < K; ++m) {
    k[m] = j + m < keys ? krows[j + m] : nullptr;
    if (!seen) seen = k[m];
  }
  if (!seen) {
    for (int r = 0; r < 4; ++r) {
      for (int m = 0; m < K; ++m) s[r * kKeyTile + j + m] = 0.0f;
    }
    return false;
  }
  for (int m = 0; m < K; ++m) kr[m] = k[m] ? k[m] : seen;
  return true;
}

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_KEY_GROUP_H_
