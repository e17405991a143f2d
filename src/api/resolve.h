// Option resolution: every AttentionOptions field except the algorithm,
// checked and turned into the Params an algorithm runs with.
#ifndef ATTN_SRC_API_RESOLVE_H_
#define ATTN_SRC_API_RESOLVE_H_

#include "attn/options.h"
#include "src/core/problem.h"
#include "src/util/check.h"

namespace attn::detail {

// Against the shape already in params: scale, causality and alignment,
// windows, softcap, ALiBi slopes, mask and bias (broadcast to [B, Hq, Sq,
// Skv]), key lengths, pattern, dropout, threads and key splits.
void resolve_options(const util::Check& check, const AttentionOptions& options,
                     Params& params);

}  // namespace attn::detail

#endif  // ATTN_SRC_API_RESOLVE_H_
