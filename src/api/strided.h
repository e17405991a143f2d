// SparseStrided as a window plus attention within residue classes on
// strided views (strided.cc).
#ifndef ATTN_SRC_API_STRIDED_H_
#define ATTN_SRC_API_STRIDED_H_

#include "attn/options.h"
#include "src/core/problem.h"
#include "src/kernels/flash.h"

namespace attn::detail {

// Runs a validated float32 call whose pattern is a SparseStrided this way
// and returns true, or returns false without doing anything when the call
// does not allow it (not flash; Sq != Skv; key lengths, masks, biases,
// ALiBi or windows of its own; fewer than two class members), so the tile
// walk runs it instead.
bool strided_attention(const Problem<float>& problem,
                       const AttentionOptions& options);

// The tiles and scores strided_attention's flash calls visit for params,
// or {-1, -1} when it would not take the call.
kernels::FlashWork strided_work(const Params& params);

}  // namespace attn::detail

#endif  // ATTN_SRC_API_STRIDED_H_
