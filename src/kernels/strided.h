// Rewrite::kStridedClasses: a SparseStrided call as a window plus dense
// attention within residue classes on strided views (strided.cc).
#ifndef ATTN_SRC_KERNELS_STRIDED_H_
#define ATTN_SRC_KERNELS_STRIDED_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "attn/workspace.h"
#include "src/core/problem.h"
#include "src/kernels/flash.h"

namespace attn::kernels {

// How a call splits into parts.
struct StridedPlan {
  int64_t S, stride, local, m;  // m: first class distance outside the window
  bool causal;
  // Residues [r0, r1) whose classes have n members, n > m.
  struct Group {
    int64_t r0, r1, n;
  };
  std::vector<Group> groups;
};

// The plan for a resolved call, or nullopt when the rewrite does not apply:
// not a SparseStrided pattern under flash; Sq != Skv; key lengths, masks,
// biases, ALiBi, windows or dropout of its own; fewer than two class
// members outside the window; Dv over 1024. Validation calls this to set
// Params::rewrite.
std::optional<StridedPlan> plan_strided(const detail::Params& params);

// The tiles and scores the rewrite's flash parts visit (params.rewrite
// must be kStridedClasses).
FlashWork count_strided_work(const detail::Params& params);

// Runs a validated float32 call with params.rewrite == kStridedClasses:
// flash over each part (no re-validation; the parts' results on the
// workspace's rewrite buffer), then the log-sum-exp merge into out, lse.
void strided_attention(const detail::Problem<float>& problem,
                       Workspace* workspace);

}  // namespace attn::kernels

#endif  // ATTN_SRC_KERNELS_STRIDED_H_
