// Which KV tiles a block of query rows must visit under a pattern's mask,
// found by bisection with the pattern's classifier: a range of tiles the
// classifier calls empty is skipped whole, one it calls full is visited
// without evaluating the mask, and a partial one is split in two until it
// is a single tile. A band or a handful of global columns thus costs
// O(visited tiles * log(tiles)) classifier calls, not O(tiles).
//
// Used by the flash kernel per work item (rows of every head of a GQA
// group) and by make_block_mask (src/api/block_mask.cc), so both see the
// same tiles.
#ifndef ATTN_SRC_KERNELS_TILE_WALK_H_
#define ATTN_SRC_KERNELS_TILE_WALK_H_

#include <algorithm>
#include <cstdint>

#include "attn/pattern.h"

namespace attn::kernels {

class TileWalker {
 public:
  // Rows: heads [h_begin, h_end) at query positions [pos_begin, pos_end) of
  // batch entry b. Keys [key_begin, key_end), cut into tiles of `tile` keys
  // aligned to multiples of `tile`.
  TileWalker(const Pattern& pattern, int64_t b, int64_t h_begin, int64_t h_end,
             int64_t pos_begin, int64_t pos_end, int64_t key_begin,
             int64_t key_end, int64_t tile)
      : pattern_(pattern),
        b_(b),
        h_begin_(h_begin),
        h_end_(h_end),
        pos_begin_(pos_begin),
        pos_end_(pos_end),
        key_begin_(key_begin),
        key_end_(key_end),
        tile_(tile) {
    if (key_begin < key_end && pos_begin < pos_end) {
      const int64_t t0 = key_begin / tile, t1 = (key_end + tile - 1) / tile;
      if (!pattern.has_mask()) {  // every tile, no mask to evaluate
        run_ = t0;
        run_end_ = t1;
      } else {
        stack_[top_++] = {t0, t1};
      }
    }
  }

  // The next tile to visit (increasing order) and what the mask is over it;
  // false when there is none.
  bool next(int64_t& t, TileKind& kind) {
    for (;;) {
      if (run_ < run_end_) {
        t = run_++;
        kind = TileKind::kFull;
        return true;
      }
      if (top_ == 0) return false;
      const Range r = stack_[--top_];
      const TileKind k = classify(r.t0, r.t1);
      if (k == TileKind::kEmpty) continue;
      if (k == TileKind::kFull) {
        run_ = r.t0;
        run_end_ = r.t1;
        continue;
      }
      if (r.t1 - r.t0 == 1) {
        t = r.t0;
        kind = TileKind::kPartial;
        return true;
      }
      const int64_t mid = r.t0 + (r.t1 - r.t0) / 2;
      stack_[top_++] = {mid, r.t1};  // right half after the left one
      stack_[top_++] = {r.t0, mid};
    }
  }

 private:
  struct Range {
    int64_t t0, t1;
  };

  // Tiles [t0, t1) over every head of the rows.
  TileKind classify(int64_t t0, int64_t t1) const {
    const int64_t j0 = std::max(t0 * tile_, key_begin_);
    const int64_t j1 = std::min(t1 * tile_, key_end_);
    TileKind kind =
        pattern_.classify(b_, h_begin_, pos_begin_, pos_end_, j0, j1);
    for (int64_t h = h_begin_ + 1; h < h_end_ && kind != TileKind::kPartial;
         ++h) {
      kind =
          combine(kind, pattern_.classify(b_, h, pos_begin_, pos_end_, j0, j1));
    }
    return kind;
  }

  const Pattern& pattern_;
  int64_t b_, h_begin_, h_end_, pos_begin_, pos_end_, key_begin_, key_end_,
      tile_;
  // Bisection of n tiles needs at most log2(n) + 1 pending ranges; 2^40
  // keys are at most 2^34 tiles.
  Range stack_[64];
  int top_ = 0;
  int64_t run_ = 0, run_end_ = 0;  // tiles of a full range still to emit
};

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_TILE_WALK_H_
