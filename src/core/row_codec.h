// How a KV-cache row of n floats is stored in each cache element type: the
// one definition of the stored formats, encoded by the cache (src/cache) on
// append and decoded by its readers; the kernels' vector decoders
// (DequantRow in src/kernels/flash-inl.h) compute exactly `decode`.
//
//   float32             the floats
//   bfloat16, float16   each float rounded to nearest (ties to even)
//   int8                q_d = clamp(round(x_d * 127 / amax), -127, 127) with
//                       amax = max_d |x_d|, stored with the row's scale
//                       amax / 127 (0 for an all-zero row); x_d ~ q_d * scale
//
// int8 rows need finite values (a scale cannot hold inf or NaN): the cache
// refuses others before encoding.
#ifndef ATTN_SRC_CORE_ROW_CODEC_H_
#define ATTN_SRC_CORE_ROW_CODEC_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "attn/types.h"

namespace attn::detail {

// Stores n floats as E; returns the row's scale (1 for every type but int8).
template <class E>
float encode_row(const float* x, int64_t n, E* dst) {
  if constexpr (std::is_same_v<E, int8_t>) {
    float amax = 0.0f;
    for (int64_t d = 0; d < n; ++d) amax = std::max(amax, std::fabs(x[d]));
    const float scale = amax / 127.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int64_t d = 0; d < n; ++d) {
      dst[d] = static_cast<int8_t>(
          std::clamp(std::nearbyint(x[d] * inv), -127.0f, 127.0f));
    }
    return scale;
  } else {
    for (int64_t d = 0; d < n; ++d) dst[d] = from_float<E>(x[d]);
    return 1.0f;
  }
}

// The floats a stored row of n elements stands for.
template <class E>
void decode_row(const E* src, int64_t n, float scale, float* x) {
  if constexpr (std::is_same_v<E, int8_t>) {
    for (int64_t d = 0; d < n; ++d) x[d] = static_cast<float>(src[d]) * scale;
  } else {
    for (int64_t d = 0; d < n; ++d) x[d] = to_float(src[d]);
  }
}

}  // namespace attn::detail

#endif  // ATTN_SRC_CORE_ROW_CODEC_H_
