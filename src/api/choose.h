// Algorithm choice: which algorithms can serve a resolved call, the one
// kAuto picks, and the exact rewrites the chosen one runs through.
#ifndef ATTN_SRC_API_CHOOSE_H_
#define ATTN_SRC_API_CHOOSE_H_

#include <optional>
#include <span>
#include <string>

#include "attn/options.h"
#include "src/core/problem.h"
#include "src/util/check.h"

namespace attn::detail {

// Most memory the materialising algorithms (reference, naive) may take for
// their score matrices.
inline constexpr int64_t kMaxMaterialisedBytes = int64_t{8} << 30;

// Decode serves calls with at most this many query positions.
inline constexpr int64_t kDecodeMaxQueries = 16;

// The order kAuto tries algorithms in.
inline constexpr Algorithm kAutoOrder[] = {
    Algorithm::kDecode, Algorithm::kFlash, Algorithm::kNaive};

// Why `algorithm` cannot serve `params`, or nullopt when it can.
std::optional<std::string> why_not(Algorithm algorithm, const Params& params);

// Sets params.algorithm: under kAuto the first of `order` that can serve
// the call, else options.algorithm if it can (an error naming the reason
// when it cannot). Then params.rewrite: the exact rewrite the algorithm
// runs through, if one applies and the caller has one for it
// (`may_rewrite`: forward calls on float32 views, whose rewrites keep part
// results in float32 beside the output).
void choose_algorithm(const util::Check& check, const AttentionOptions& options,
                      std::span<const Algorithm> order, bool may_rewrite,
                      Params& params);

}  // namespace attn::detail

#endif  // ATTN_SRC_API_CHOOSE_H_
