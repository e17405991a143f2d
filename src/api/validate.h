// validate(): the one place where a call's arguments are checked.
#ifndef ATTN_SRC_API_VALIDATE_H_
#define ATTN_SRC_API_VALIDATE_H_

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "attn/options.h"
#include "attn/tensor.h"
#include "src/core/problem.h"
#include "src/core/views.h"

namespace attn::detail {

// Checks every argument (throws attn::Error naming the first bad one),
// resolves defaults, broadcasts masks and picks the algorithm.
template <class T>
Problem<T> validate(TensorView<const T> q, TensorView<const T> k,
                    TensorView<const T> v, TensorView<T> out,
                    const AttentionOptions& options, TensorView<float> lse);

// The checks of q, k, v and out that validate() starts with, for other
// entry points (`entry` names the function in messages); returns the shape.
template <class T>
Shape validate_views(TensorView<const T> q, TensorView<const T> k,
                     TensorView<const T> v, TensorView<T> out,
                     const char* entry);

// validate() without an output: the parameters a call with these inputs
// and options would run with (for estimates; nothing is written).
template <class T>
Params validate_params(TensorView<const T> q, TensorView<const T> k,
                       TensorView<const T> v, const AttentionOptions& options);

// The part of a KV cache's shape that a call against it is checked with.
struct CacheShape {
  int64_t Hkv = 0, D = 0, Dv = 0;
};

// validate() for attention against a KV cache: batch entry b has
// sequence_lengths[b] keys (Skv = their maximum), each with its own
// bottom-right offset. key_lengths receives the per-entry key counts the
// Problem's params point to (it must outlive the Problem).
template <class T>
Problem<T> validate_cached(TensorView<const T> q, const CacheShape& cache,
                           std::span<const int64_t> sequence_lengths,
                           TensorView<T> out, const AttentionOptions& options,
                           TensorView<float> lse,
                           std::vector<int64_t>& key_lengths);

// validate() for attention_backward: the forward's views and options plus
// out, lse and dout as inputs and dq, dk, dv as outputs. Picks kFlash under
// kAuto; rejects kDecode and pattern score functors.
template <class T>
BackwardProblem<T> validate_backward(
    TensorView<const T> q, TensorView<const T> k, TensorView<const T> v,
    TensorView<const T> out, TensorView<const float> lse,
    TensorView<const T> dout, TensorView<T> dq, TensorView<T> dk,
    TensorView<T> dv, const AttentionOptions& options);

// The views of a linear_attention_backward call (`entry` names the
// function in messages): q, k, v as for the forward, dout [B, Hq, Sq, Dv],
// the gradients shaped like q, k, v and clear of every other view.
template <class T>
Shape validate_linear_backward(TensorView<const T> q, TensorView<const T> k,
                               TensorView<const T> v, TensorView<const T> dout,
                               TensorView<T> dq, TensorView<T> dk,
                               TensorView<T> dv, const char* entry);

// Why `algorithm` cannot serve `params`, or nullopt when it can. The order
// of kAutoOrder below is the order kAuto tries them in.
std::optional<std::string> why_not(Algorithm algorithm, const Params& params);
// Most memory the materialising algorithms (reference, naive) may take for
// their score matrices.
inline constexpr int64_t kMaxMaterialisedBytes = int64_t{8} << 30;

// Decode serves calls with at most this many query positions.
inline constexpr int64_t kDecodeMaxQueries = 16;

inline constexpr Algorithm kAutoOrder[] = {
    Algorithm::kDecode, Algorithm::kFlash, Algorithm::kNaive};

}  // namespace attn::detail

#endif  // ATTN_SRC_API_VALIDATE_H_
