// Merging partial attention results by log-sum-exp.
//
// n partial results of one query row, each over a disjoint set of keys,
// each normalised over its own keys (o_s) with its log-sum-exp (lse_s),
// combine into the result over all the keys:
//   M = max_s lse_s,  w_s = exp(lse_s - M)
//   out = sum_s w_s o_s / sum_s w_s,   lse = M + log sum_s w_s
// Parts with lse_s = -inf (no visible key) weigh 0 and their o_s is never
// read (nor that of a part whose weight underflows to 0); when every part
// has -inf the row is 0 with lse -inf (rule 6 of docs/semantics.md). A part
// with lse_s NaN or +inf (a row poisoned by a NaN or +inf score, rule 8)
// makes the merged row NaN with lse NaN. The parts are summed in index
// order, so the result does not depend on who computed which part.
#ifndef ATTN_SRC_KERNELS_MERGE_H_
#define ATTN_SRC_KERNELS_MERGE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace attn::kernels {

// part(s) -> const float* to dv values, lse_of(s) -> float or double (the
// weights and the returned lse are computed in that type). Writes the
// merged row to acc[0, dv) and returns its lse.
template <class Part, class LseOf>
float merge_row(int64_t n, int64_t dv, Part part, LseOf lse_of, float* acc) {
  using L = decltype(lse_of(int64_t{0}));
  static_assert(std::is_same_v<L, float> || std::is_same_v<L, double>);
  const L neg_inf = -std::numeric_limits<L>::infinity();
  const L inf = std::numeric_limits<L>::infinity();
  L M = neg_inf;
  for (int64_t s = 0; s < n; ++s) {
    const L ls = lse_of(s);
    if (!(ls < inf)) {  // NaN or +inf: the merged row is poisoned
      const float nan = std::numeric_limits<float>::quiet_NaN();
      std::fill(acc, acc + dv, nan);
      return nan;
    }
    M = std::max(M, ls);
  }
  std::fill(acc, acc + dv, 0.0f);
  if (M == neg_inf) return -std::numeric_limits<float>::infinity();
  L sum = 0;
  for (int64_t s = 0; s < n; ++s) {
    const L ls = lse_of(s);
    if (ls == neg_inf) continue;
    const L wl = std::exp(ls - M);
    if (wl == 0) continue;
    sum += wl;
    const float w = static_cast<float>(wl);
    const float* o = part(s);
    for (int64_t d = 0; d < dv; ++d) acc[d] += w * o[d];
  }
  // sum >= 1: the part at M has weight 1.
  const float inv = static_cast<float>(1 / sum);
  for (int64_t d = 0; d < dv; ++d) acc[d] *= inv;
  return static_cast<float>(M + std::log(sum));
}

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_MERGE_H_
