// Where the tiled kernels read keys and values from. Two sources with one
// interface, so the flash/decode item is one template:
//
//   Element                 the stored type: float, bfloat16, float16, int8_t
//   k_row(b, h, j)          key j of batch entry b, KV head h: D elements
//   v_row(b, h, j)          value j: Dv elements
//   k_scale / v_scale(...)  int8 only: the row's dequantisation scale
//
// ViewKV reads a [B, Hkv, Skv, D] view (any strides). PagedKV reads a KV
// cache layer in place: pools of pages [pages, Hkv, P, D] and a block table
// per batch entry mapping its P-token blocks to pages (a contiguous cache is
// the case of one page per sequence), so no key is ever gathered or copied.
#ifndef ATTN_SRC_KERNELS_KV_SOURCE_H_
#define ATTN_SRC_KERNELS_KV_SOURCE_H_

#include <cstdint>
#include <type_traits>

#include "attn/tensor.h"
#include "src/core/page_layout.h"

namespace attn::kernels {

template <class E>
struct ViewKV {
  using Element = E;
  TensorView<const E> k, v;

  const E* k_row(int64_t b, int64_t h, int64_t j) const {
    return k.row(b, h, j);
  }
  const E* v_row(int64_t b, int64_t h, int64_t j) const {
    return v.row(b, h, j);
  }
  float k_scale(int64_t, int64_t, int64_t) const { return 1.0f; }
  float v_scale(int64_t, int64_t, int64_t) const { return 1.0f; }
};

template <class E>
struct PagedKV {
  using Element = E;
  const E* k = nullptr;             // [pages, Hkv, P, D]
  const E* v = nullptr;             // [pages, Hkv, P, Dv]
  const float* k_scales = nullptr;  // [pages, Hkv, P], int8 only
  const float* v_scales = nullptr;
  // The cache's block tables [sequences, table_width] (page numbers), the
  // sequence id of each batch entry, and the address formula.
  const int32_t* tables = nullptr;
  const int64_t* sequences = nullptr;  // [B]
  detail::PageLayout layout;
  int64_t D = 0, Dv = 0;

  // Row index of (b, h, j) in the [pages * Hkv * P] rows of a pool.
  int64_t slot(int64_t b, int64_t h, int64_t j) const {
    return layout.token_row(layout.table_of(tables, sequences[b]), h, j);
  }
  const E* k_row(int64_t b, int64_t h, int64_t j) const {
    return k + slot(b, h, j) * D;
  }
  const E* v_row(int64_t b, int64_t h, int64_t j) const {
    return v + slot(b, h, j) * Dv;
  }
  // 1 for every type but int8 (whose scale arrays exist only then).
  float k_scale(int64_t b, int64_t h, int64_t j) const {
    if constexpr (std::is_same_v<E, int8_t>) return k_scales[slot(b, h, j)];
    return 1.0f;
  }
  float v_scale(int64_t b, int64_t h, int64_t j) const {
    if constexpr (std::is_same_v<E, int8_t>) return v_scales[slot(b, h, j)];
    return 1.0f;
  }
};

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_KV_SOURCE_H_
