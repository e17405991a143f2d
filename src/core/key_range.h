// The keys a query row may see by position alone: key length, causal and
// window rules (rule 4 of docs/semantics.md without the boolean mask). They
// always form one interval, which is what lets tiled kernels skip whole KV
// tiles and clip the rest with two comparisons.
#ifndef ATTN_SRC_CORE_KEY_RANGE_H_
#define ATTN_SRC_CORE_KEY_RANGE_H_

#include <algorithm>
#include <cstdint>

#include "src/core/problem.h"

namespace attn::detail {

// Keys [begin, end) are visible by position; begin == end when none are.
struct KeyRange {
  int64_t begin = 0, end = 0;
  bool empty() const { return begin >= end; }
};

// For batch b and query row i. Monotone in i: begin and end never decrease
// as i grows, so a block of consecutive rows sees one interval of keys.
inline KeyRange key_range(const Params& p, int64_t b, int64_t i) {
  const int64_t pos = i + p.offset_of(b);      // within [-Sq, Skv + Sq]
  const int64_t n = p.shape.Skv + p.shape.Sq;  // wider than any distance
  int64_t begin = 0, end = p.key_length(b);
  if (p.causal) end = std::min(end, pos + 1);
  if (p.window_right >= 0)
    end = std::min(end, pos + std::min(p.window_right, n) + 1);
  if (p.window_left >= 0)
    begin = std::max(begin, pos - std::min(p.window_left, n));
  return {begin, std::max(begin, end)};
}

}  // namespace attn::detail

#endif  // ATTN_SRC_CORE_KEY_RANGE_H_
