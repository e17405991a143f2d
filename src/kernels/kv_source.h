// Where the tiled kernels read keys and values from. Two sources with one
// interface, so the flash/decode item is one template:
//
//   Element                 the stored type: float, bfloat16, float16, int8_t
//   k_row(b, h, j)          key j of batch entry b, KV head h: D elements
//   v_row(b, h, j)          value j: Dv elements
//   k_scale / v_scale(...)  int8 only: the row's dequantisation scale
//   tile_rows(b, h, j0, first, end, rows)
//                           the same for keys j0 + [first, end) of a tile
//                           at once (TileRows), the page looked up once per
//                           page rather than per key and per use
//
// ViewKV reads a [B, Hkv, Skv, D] view (any strides). PagedKV reads a KV
// cache layer in place: pools of pages [pages, Hkv, P, D] and a block table
// per batch entry mapping its P-token blocks to pages (a contiguous cache is
// the case of one page per sequence), so no key is ever gathered or copied.
#ifndef ATTN_SRC_KERNELS_KV_SOURCE_H_
#define ATTN_SRC_KERNELS_KV_SOURCE_H_

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "attn/tensor.h"
#include "src/core/page_layout.h"

namespace attn::kernels {

// The K and V rows (and int8 scales) of the keys of one KV tile:
// k[j], v[j] for key j0 + j, null for keys outside [first, end). A paged
// int8 source leaves the scales where they are (k_scale_at, v_scale_at)
// and prefetches them, since the tile's rows are fetched a tile ahead and
// reading the scale arrays then would wait on memory; load_scales() copies
// them into k_scale / v_scale when the tile is used.
template <class E, int64_t kTile>
struct TileRows {
  const E* k[kTile];
  const E* v[kTile];
  float k_scale[kTile];  // int8 only
  float v_scale[kTile];
  const float* k_scale_at[kTile];
  const float* v_scale_at[kTile];
  int64_t first = 0, end = 0;
  bool scales_pending = false;

  void clear_outside(int64_t first_, int64_t end_) {
    first = first_;
    end = end_;
    scales_pending = false;
    for (int64_t j = 0; j < kTile; ++j) {
      if (j >= first && j < end) continue;
      k[j] = nullptr;
      v[j] = nullptr;
      k_scale[j] = v_scale[j] = 0.0f;
    }
  }
  void load_scales() {
    if (!scales_pending) return;
    for (int64_t j = first; j < end; ++j) {
      k_scale[j] = *k_scale_at[j];
      v_scale[j] = *v_scale_at[j];
    }
    scales_pending = false;
  }
};

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
  template <int64_t kTile>
  void tile_rows(int64_t b, int64_t h, int64_t j0, int64_t first, int64_t end,
                 TileRows<E, kTile>& rows) const {
    rows.clear_outside(first, end);
    for (int64_t j = first; j < end; ++j) {
      rows.k[j] = k.row(b, h, j0 + j);
      rows.v[j] = v.row(b, h, j0 + j);
      rows.k_scale[j] = rows.v_scale[j] = 1.0f;
    }
  }
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
  // One page lookup per run of keys on the same page.
  template <int64_t kTile>
  void tile_rows(int64_t b, int64_t h, int64_t j0, int64_t first, int64_t end,
                 TileRows<E, kTile>& rows) const {
    rows.clear_outside(first, end);
    const int32_t* table = layout.table_of(tables, sequences[b]);
    for (int64_t j = first; j < end;) {
      int64_t block, within;
      layout.split(j0 + j, block, within);
      const int64_t row0 = layout.row(table[block], h, within);
      // Keys left on this page (a contiguous cache is one page).
      const int64_t n = std::min(end - j, layout.page_size - within);
      for (int64_t m = 0; m < n; ++m) {
        rows.k[j + m] = k + (row0 + m) * D;
        rows.v[j + m] = v + (row0 + m) * Dv;
        if constexpr (std::is_same_v<E, int8_t>) {
          rows.k_scale_at[j + m] = k_scales + row0 + m;
          rows.v_scale_at[j + m] = v_scales + row0 + m;
        } else {
          rows.k_scale[j + m] = rows.v_scale[j + m] = 1.0f;
        }
      }
      if constexpr (std::is_same_v<E, int8_t>) {  // the run's scale lines
        for (const float* at : {k_scales + row0, k_scales + row0 + n - 1,
                                v_scales + row0, v_scales + row0 + n - 1}) {
          __builtin_prefetch(at);
        }
        rows.scales_pending = true;
      }
      j += n;
    }
  }
};

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_KV_SOURCE_H_
