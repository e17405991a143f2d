// Block masks: which KV tiles a pattern leaves empty, full or partial for
// each block of query positions, in the form FlexAttention's BlockMask
// uses (per block, the visited KV blocks, partial and full apart). The
// flash kernel classifies tiles itself, per work item and on the fly
// (docs/patterns.md); a BlockMask is for looking at a pattern's sparsity,
// reusing the classification elsewhere, or budgeting work.
#ifndef ATTN_BLOCK_MASK_H_
#define ATTN_BLOCK_MASK_H_

#include <cstdint>
#include <span>
#include <vector>

#include "attn/options.h"
#include "attn/pattern.h"
#include "attn/tensor.h"
#include "attn/types.h"

namespace attn {

struct BlockMaskShape {
  int64_t batch = 1;  // 1: the pattern does not depend on b
  int64_t heads = 1;  // 1: the pattern does not depend on h
  int64_t q_len = 0, kv_len = 0;
  int64_t q_block = 128, kv_block = 64;  // both >= 1
  // Query row r sits at position r + query_offset (attn/pattern.h):
  // 0 for self-attention, Skv - Sq for bottom-right alignment.
  int64_t query_offset = 0;
};

class BlockMask {
 public:
  const BlockMaskShape& shape() const { return shape_; }
  int64_t q_blocks() const { return q_blocks_; }
  int64_t kv_blocks() const { return kv_blocks_; }
  // The KV blocks query block qb of (b, h) visits, ascending; partial
  // ones need the mask evaluated, full ones do not.
  std::span<const int32_t> partial(int64_t b, int64_t h, int64_t qb) const;
  std::span<const int32_t> full(int64_t b, int64_t h, int64_t qb) const;
  TileKind kind(int64_t b, int64_t h, int64_t qb, int64_t kb) const;
  // Totals over every (b, h, query block).
  int64_t partial_count() const {
    return static_cast<int64_t>(partial_.size());
  }
  int64_t full_count() const { return static_cast<int64_t>(full_.size()); }
  // Visited blocks over all blocks.
  double density() const;

 private:
  friend BlockMask make_block_mask(const Pattern&, const BlockMaskShape&);
  int64_t row(int64_t b, int64_t h, int64_t qb) const;
  BlockMaskShape shape_;
  int64_t q_blocks_ = 0, kv_blocks_ = 0;
  std::vector<int64_t> partial_begin_, full_begin_;  // per row, + 1
  std::vector<int32_t> partial_, full_;
};

// Classifies every (b, h, query block, KV block) with the pattern's
// classifier by bisection (O(visited blocks log) calls). Throws attn::Error
// on a bad shape.
BlockMask make_block_mask(const Pattern& pattern, const BlockMaskShape& shape);

// The work an attention call would do, without doing it: the algorithm
// auto (or options.algorithm) picks and the exact rewrite it runs through
// (attn/options.h), the KV tiles it visits over all work items (all parts
// of a rewrite together), and the (query row, key) scores those tiles hold,
// which is what GFLOP/s over visited tiles counts: 2 * scores * (D + Dv) FLOPs.
struct WorkEstimate {
  Algorithm algorithm = Algorithm::kAuto;
  Rewrite rewrite = Rewrite::kNone;
  int64_t tiles = 0;   // (work item, KV tile) pairs visited
  int64_t scores = 0;  // query rows x keys inside those tiles
};
WorkEstimate estimate_work(TensorView<const float> q, TensorView<const float> k,
                           TensorView<const float> v,
                           const AttentionOptions& options);

}  // namespace attn

#endif  // ATTN_BLOCK_MASK_H_
