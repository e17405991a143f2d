// The tiled forward kernel (Algorithm::kFlash). See flash.cc.
#ifndef ATTN_SRC_KERNELS_FLASH_H_
#define ATTN_SRC_KERNELS_FLASH_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <type_traits>

#include "attn/workspace.h"
#include "src/core/key_range.h"
#include "src/core/problem.h"
#include "src/kernels/kv_source.h"

namespace attn::kernels {

using detail::Dropout;
using detail::key_range;
using detail::KeyRange;

// Keys per KV tile: a multiple of every target's key-vector group.
inline constexpr int64_t kKeyTile = 64;
// Query rows per register block of the micro-kernels.
inline constexpr int64_t kRowBlock = 6;
// Query rows (all heads of a GQA group together) a work item aims for.
inline constexpr int64_t kTargetRows = 384;
// Padding of Dv so every target's vectors divide it.
inline constexpr int64_t kDvAlign = 16;

// How every work item of a call packs and multiplies its tiles, chosen once
// per call (choose_flash_path), flash-attention style: the item is one
// pipeline (pack K, pack V, QK, softmax, PV) and the path picks each
// step's form.
enum class KPath : uint8_t {
  kTransposed,  // K tile widened / dequantised and packed transposed (Kt)
  kRows,        // items of <= 4 rows, D a multiple of the target's vector:
                // scores straight from the K rows of any type, no packed
                // copy (decode)
  kInt8Rows,    // items of <= 4 rows against int8 keys, any D: the query
                // rows quantised to int8 once per item, q . k on integer
                // dot products (vpdpbusd with AVX-512 VNNI, else int16 pair
                // products) from the K rows in place
  kBf16Pairs,   // AVX-512 BF16, items of more than 4 rows: K packed
                // transposed as bf16 pairs, QK on vdpbf16ps
};
enum class VPath : uint8_t {
  kPacked,        // V tile widened / dequantised into V [kKeyTile, Dvp]
  kRows,          // V read straight from its rows (items of <= 2 row blocks,
                  // Dv a multiple of the target's vector)
  kBf16Pairs,     // AVX-512 BF16, plain scores, no dropout: V as bf16 key
                  // pairs, P rounded to bfloat16, PV on vdpbf16ps
  kBf16RowPairs,  // as kBf16Pairs for decode-sized items (FlashPath::
                  // bf16_dot): two value rows read in place and
                  // interleaved into key pairs in registers
};
// V paths that read the value rows in place (no packed V tile).
inline bool values_in_place(VPath v) {
  return v == VPath::kRows || v == VPath::kBf16RowPairs;
}
// V paths that round P to bfloat16 (the output then normalised by the
// rounded weights' sum, lw).
inline bool rounds_probabilities(VPath v) {
  return v == VPath::kBf16Pairs || v == VPath::kBf16RowPairs;
}

struct FlashPath {
  KPath k = KPath::kTransposed;
  VPath v = VPath::kPacked;
  // Plain scores (no softcap, ALiBi, bias, mask view or pattern score):
  // each row block's softmax right after its QK block, scale * log2(e)
  // folded into the exponent. Otherwise the per-element rules run row by
  // row after the products.
  bool fused = true;
  // Rows per register block: 4 for items of at most 4 rows (decode with
  // G <= 4), else kRowBlock.
  int row_block = 6;
  // KPath::kInt8Rows on vpdpbusd (AVX-512 VNNI).
  bool vnni = false;
  // KPath::kRows with bfloat16 queries and keys on vdpbf16ps (AVX-512
  // BF16): the query rows packed as bfloat16 (exact), q . k from the K rows
  // as stored (qk_rows4_bf16_dot).
  bool bf16_dot = false;
};

// How a call is cut into work items and how each worker's scratch is laid
// out. Computed once per call, before the parallel loop.
struct FlashPlan {
  int64_t block_positions = 0;  // Br: query positions per work item
  int64_t blocks_per_head = 0;  // ceil(Sq / Br)
  int64_t rows_padded = 0;      // round_up(G * Br, kRowBlock)
  int64_t dv_padded = 0;        // round_up(Dv, kDvAlign)
  // Byte offsets into a worker's scratch slice.
  std::size_t q = 0, kt = 0, kd = 0, v = 0, s = 0, o = 0, m = 0, l = 0, lw = 0,
              ranges = 0, pp = 0, keep = 0;
  std::size_t bytes = 0;  // total per worker
  // Split-KV (the decode algorithm): the keys are cut into `splits` chunks
  // of split_keys keys (a multiple of kKeyTile); each (b, kv head, query
  // block, split) is an item writing a normalised partial result, merged by
  // log-sum-exp after the loop. splits = 1: items write out directly.
  int64_t splits = 1;
  int64_t split_keys = 0;
  int64_t items = 0;  // B * Hkv * blocks_per_head * splits
  // Work units: head_group items of consecutive KV heads (same b, query
  // block and split) that one worker computes side by side, a tile of each
  // in turn (FlashItemGroup); set from head_group() below, else 1.
  int64_t head_group = 1;
  int64_t units() const { return items / head_group; }
  // Unit u's items: first, first + stride, ... (the return value of them).
  int64_t unit_items(int64_t u, int64_t& first, int64_t& stride) const {
    const int64_t per_head = blocks_per_head * splits;  // items per KV head
    const int64_t within = u % per_head, heads = u / per_head;
    first = heads * head_group * per_head + within;
    stride = per_head;
    return head_group;
  }
  // Partial results, in one buffer shared by all workers: per item
  // rows_padded lse values in double (as 2 floats each: a float lse of
  // magnitude L is off by up to L * 6e-8, and the merge weights exp(lse_s -
  // M) inherit that), then per item rows_padded x Dv outputs.
  double* partial_lse(float* partial, int64_t item) const {
    return reinterpret_cast<double*>(partial) + item * rows_padded;
  }
  const double* partial_lse(const float* partial, int64_t item) const {
    return reinterpret_cast<const double*>(partial) + item * rows_padded;
  }
  std::size_t partial_out(int64_t item) const {
    return static_cast<std::size_t>(items * rows_padded) * 2 +
           static_cast<std::size_t>(item * rows_padded) * dv;
  }
  std::size_t partial_floats() const {
    return splits > 1 ? static_cast<std::size_t>(items * rows_padded) * (dv + 2)
                      : 0;
  }
  int64_t dv = 0;
  FlashPath path;  // set by choose_flash_path
};

// The most KV heads a work unit interleaves (FlashPlan::head_group).
inline constexpr int64_t kMaxHeadGroup = 4;

// Key splits the decode algorithm uses when the caller asks for none
// (requested = 0): enough items to spread over many cores (about
// kSplitTargetItems in all), no split under kMinSplitKeys keys. A function
// of the shape only, so results do not depend on the thread count.
inline constexpr int64_t kSplitTargetItems = 64;
inline constexpr int64_t kMinSplitKeys = 512;

// Which keys a call's rows see, for sizing work items: all of them
// (kNone); a band along the diagonal (causal, or a window wider than a
// quarter of the queries); or a narrow band or a sparse pattern (kNarrow),
// where smaller items visit fewer keys each.
enum class Band { kNone, kWide, kNarrow };
inline Band band(const detail::Params& p) {
  const bool narrow_window =
      p.window_left >= 0 && p.window_left <= p.shape.Sq / 4;
  if (narrow_window || p.pattern.has_mask()) return Band::kNarrow;
  const bool wide = p.causal || p.window_left >= 0 || p.window_right >= 0;
  return wide ? Band::kWide : Band::kNone;
}

// Rows per work item for narrow bands on long sequences: a band of w keys
// costs about (rows + w + 64) keys per row, so smaller items waste less,
// while items under 64 rows lose on the tiles they do compute (measured at
// S 16K, window 512: 384 rows 9.1x faster than full causal, 128 rows
// 12.0x, 64 rows 12.8x). Windows get about w / 4 rows, patterns 128.
inline constexpr int64_t kNarrowRows = 128;
inline int64_t narrow_rows(const detail::Params& p) {
  if (p.window_left < 0) return kNarrowRows;
  return std::clamp<int64_t>(p.window_left / 4 / 32 * 32, 64, kNarrowRows);
}

// band: as above. splits: 1 for the flash algorithm, 0 (automatic) or a
// count for decode. narrow: rows per item for Band::kNarrow.
FlashPlan make_flash_plan(const detail::Shape& shape, Band band = Band::kNone,
                          int64_t splits = 1, int64_t narrow = kNarrowRows);
inline FlashPlan make_flash_plan(const detail::Params& p, int64_t splits) {
  return make_flash_plan(p.shape, band(p), splits, narrow_rows(p));
}

// What the chosen Highway target offers the flash item: AVX-512 packers and
// micro-kernels, its float32 vector length, and (AVX-512 targets on a CPU
// that has it) VNNI's vpdpbusd.
struct FlashTarget {
  bool avx512 = false;
  int64_t lanes = 1;
  bool vnni = false;
};
FlashTarget flash_target();

// The path for queries of type T against keys and values of type E (the
// cache's element type, or T), on `target`; bfloat16 pairs also need a CPU
// with AVX-512 BF16.
template <class T, class E>
FlashPath choose_flash_path(const detail::Params& p, const FlashPlan& plan,
                            const FlashTarget& target, bool cpu_bf16) {
  const detail::Shape& sh = p.shape;
  const int64_t rows = sh.group() * plan.block_positions;  // most per item
  FlashPath path;
  path.fused = !(p.softcap > 0.0f) && p.alibi_slopes.empty() &&
               p.bias.empty() && p.mask.empty() && !p.pattern.has_score();
  // Items of at most 4 rows (decode) read K and V from their rows on every
  // target (bf16 pairs would transpose each K tile for 4 rows: one decode
  // step at 16K bfloat16 tokens, bfloat16 queries, 3.8 ms on pairs against
  // 1.9 from the rows).
  const bool four_rows = rows <= 4;
  const bool pairs = target.avx512 && cpu_bf16 && std::is_same_v<T, bfloat16> &&
                     std::is_same_v<E, bfloat16> && sh.D > 1 && !four_rows;
  path.row_block = four_rows ? 4 : static_cast<int>(kRowBlock);
  if (pairs) {
    path.k = KPath::kBf16Pairs;
  } else if (four_rows && std::is_same_v<E, int8_t>) {
    path.k = KPath::kInt8Rows;
    path.vnni = target.vnni;
  } else if (four_rows && sh.D % target.lanes == 0) {
    path.k = KPath::kRows;
    path.bf16_dot = target.avx512 && cpu_bf16 && std::is_same_v<T, bfloat16> &&
                    std::is_same_v<E, bfloat16>;
  }
  if (pairs && path.fused && !p.dropout.on()) {
    path.v = VPath::kBf16Pairs;
  } else if (path.bf16_dot && path.fused && !p.dropout.on() &&
             sh.Dv % 16 == 0) {
    path.v = VPath::kBf16RowPairs;
  } else if (rows <= 2 * kRowBlock && sh.Dv % target.lanes == 0) {
    path.v = VPath::kRows;
  }
  return path;
}

// Work units for a cache of `page_size`-token pages: on the K-row paths
// (decode-sized items) with pages shorter than a key tile, items of up to
// kMaxHeadGroup consecutive KV heads run side by side (the largest such
// count dividing Hkv), so the unit reads each page's heads one after the
// other where a lone item would read one head's few KiB per page and skip
// the rest. Measured on an AVX2 machine (one decode step, Hq 32 / Hkv 8,
// 16K bfloat16 tokens paged by 16, calls alternating in one process):
// 7.3 ms with one head per unit, 6.2 / 6.1 / 6.2 with 2 / 4 / 8; with one
// contiguous page per sequence 8 heads were slower (5.8 ms against 5.2), so
// long pages keep one head per unit.
inline int64_t head_group(const FlashPlan& plan, int64_t Hkv,
                          int64_t page_size) {
  const bool krows =
      plan.path.k == KPath::kRows || plan.path.k == KPath::kInt8Rows;
  if (!krows || page_size >= kKeyTile) return 1;
  int64_t g = std::min(kMaxHeadGroup, Hkv);
  while (Hkv % g) --g;
  return g;
}

// What one work item covers: batch entry b, KV head kvh, query positions
// [i0, i0 + br) of the G heads of the group, and the keys [keys_begin,
// keys_end) some row may see (its split's share with splits); ranges gets
// each position's key range (key_range.h).
struct ItemSpan {
  int64_t b = 0, kvh = 0, i0 = 0, br = 0, keys_begin = 0, keys_end = 0;
};
inline ItemSpan item_span(const detail::Params& p, const FlashPlan& plan,
                          int64_t item, KeyRange* ranges) {
  const detail::Shape& sh = p.shape;
  ItemSpan s;
  const int64_t split = item % plan.splits;
  const int64_t base = item / plan.splits;
  s.kvh = (base / plan.blocks_per_head) % sh.Hkv;
  s.b = base / (plan.blocks_per_head * sh.Hkv);
  s.i0 = (base % plan.blocks_per_head) * plan.block_positions;
  s.br = std::min(plan.block_positions, sh.Sq - s.i0);
  // Key ranges per position; their union is one interval (key_range.h).
  s.keys_begin = sh.Skv;
  s.keys_end = 0;
  for (int64_t ii = 0; ii < s.br; ++ii) {
    ranges[ii] = key_range(p, s.b, s.i0 + ii);
    if (ranges[ii].empty()) continue;
    s.keys_begin = std::min(s.keys_begin, ranges[ii].begin);
    s.keys_end = std::max(s.keys_end, ranges[ii].end);
  }
  if (plan.splits > 1) {  // this item's split; split_keys is tile aligned,
    // so every tile lies in one split and rows' ranges need no extra clip
    s.keys_begin = std::max(s.keys_begin, split * plan.split_keys);
    s.keys_end = std::min(s.keys_end, (split + 1) * plan.split_keys);
  }
  return s;
}

// The tiles the items of a call visit and the scores those tiles hold
// (rows x keys of the tile some row may see), without computing them.
struct FlashWork {
  int64_t tiles = 0, scores = 0;
};
FlashWork count_flash_work(const detail::Params& p, int64_t splits);

// Runs one work item: (item, this worker's scratch, shared partials).
using FlashItemFn = std::function<void(int64_t, std::byte*, float*)>;
// The parallel loop over plan.items, then the merge of split partials.
template <class T>
void run_flash_items(const detail::Problem<T>& problem, const FlashPlan& plan,
                     const FlashItemFn& fn, Workspace* workspace);

// Keys and values from the views of `problem`. splits as in make_flash_plan.
template <class T>
void flash_attention(const detail::Problem<T>& problem, Workspace* workspace,
                     int64_t splits = 1);

// Keys and values from a KV-cache layer read in place; T is float or E.
template <class T, class E>
void flash_attention_paged(const detail::Problem<T>& problem,
                           const PagedKV<E>& kv, Workspace* workspace,
                           int64_t splits);

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_FLASH_H_
