// The entry points' validation: each public attention function names
// itself in a util::Check and gets back the Problem its algorithm takes.
// The rules live by concern: views in src/core/views.h, options in
// resolve.h, the algorithm and its rewrite in choose.h.
#ifndef ATTN_SRC_API_VALIDATE_H_
#define ATTN_SRC_API_VALIDATE_H_

#include <span>
#include <vector>

#include "attn/options.h"
#include "attn/tensor.h"
#include "src/core/problem.h"
#include "src/core/views.h"
#include "src/util/check.h"

namespace attn::detail {

// attn::attention: checks every argument (throws attn::Error naming the
// first bad one), resolves defaults, broadcasts masks, picks the algorithm
// and its rewrite.
template <class T>
Problem<T> validate(TensorView<const T> q, TensorView<const T> k,
                    TensorView<const T> v, TensorView<T> out,
                    const AttentionOptions& options, TensorView<float> lse);

// The checks of q, k, v and out that validate() starts with, for other
// entry points (linear attention); returns the shape.
template <class T>
Shape validate_views(const util::Check& check, TensorView<const T> q,
                     TensorView<const T> k, TensorView<const T> v,
                     TensorView<T> out);

// attn::estimate_work: validate() without an output, the parameters a call
// with these inputs and options would run with (nothing is written).
template <class T>
Params validate_params(TensorView<const T> q, TensorView<const T> k,
                       TensorView<const T> v, const AttentionOptions& options);

// The part of a KV cache's shape that a call against it is checked with.
struct CacheShape {
  int64_t Hkv = 0, D = 0, Dv = 0;
};

// Attention against a KV cache: batch entry b has sequence_lengths[b] keys
// (Skv = their maximum), each with its own bottom-right offset.
// key_lengths receives the per-entry key counts the Problem's params point
// to (it must outlive the Problem).
template <class T>
Problem<T> validate_cached(const util::Check& check, TensorView<const T> q,
                           const CacheShape& cache,
                           std::span<const int64_t> sequence_lengths,
                           TensorView<T> out, const AttentionOptions& options,
                           TensorView<float> lse,
                           std::vector<int64_t>& key_lengths);

// attn::attention_backward: the forward's views and options plus out, lse
// and dout as inputs and dq, dk, dv as outputs. Picks kFlash under kAuto;
// rejects kDecode and pattern score functors without a gradient.
template <class T>
BackwardProblem<T> validate_backward(
    TensorView<const T> q, TensorView<const T> k, TensorView<const T> v,
    TensorView<const T> out, TensorView<const float> lse,
    TensorView<const T> dout, TensorView<T> dq, TensorView<T> dk,
    TensorView<T> dv, const AttentionOptions& options);

// The views of a linear_attention_backward call: q, k, v as for the
// forward, dout [B, Hq, Sq, Dv], the gradients shaped like q, k, v and
// clear of every other view.
template <class T>
Shape validate_linear_backward(const util::Check& check, TensorView<const T> q,
                               TensorView<const T> k, TensorView<const T> v,
                               TensorView<const T> dout, TensorView<T> dq,
                               TensorView<T> dk, TensorView<T> dv);

}  // namespace attn::detail

#endif  // ATTN_SRC_API_VALIDATE_H_
