// attn::attention: scaled dot-product attention, every variant, one call.
//
//   out[b, h, i, :] = sum_j softmax_j(s[b, h, i, j]) * v[b, h / G, j, :]
//   s[b, h, i, j]   = scale * q[b, h, i, :] . k[b, h / G, j, :]
//                     (+ softcap, ALiBi, bias, masks: docs/semantics.md)
//
// Shapes (logical order of every view):
//   q    [B, Hq,  Sq,  D ]      k [B, Hkv, Skv, D]      v [B, Hkv, Skv, Dv]
//   out  [B, Hq,  Sq,  Dv]      lse (optional) [B, Hq, Sq, 1], float32
// with Hq a multiple of Hkv (G = Hq / Hkv; G = Hq is multi-query attention).
// Element types: float, bfloat16, float16 for q, k, v and out, all the same;
// arithmetic in float32 (float64 in the reference).
//
// Returns the algorithm that ran (kAuto resolved). Every argument is checked
// before any work; a bad one throws attn::Error
// naming it. An explicitly requested algorithm that cannot serve the call is
// an error, never a silent fallback.
#ifndef ATTN_ATTENTION_H_
#define ATTN_ATTENTION_H_

#include <vector>

#include "attn/error.h"
#include "attn/options.h"
#include "attn/tensor.h"
#include "attn/types.h"

namespace attn {

Algorithm attention(TensorView<const float> q, TensorView<const float> k,
                    TensorView<const float> v, TensorView<float> out,
                    const AttentionOptions& options = {},
                    TensorView<float> lse = {});
Algorithm attention(TensorView<const bfloat16> q, TensorView<const bfloat16> k,
                    TensorView<const bfloat16> v, TensorView<bfloat16> out,
                    const AttentionOptions& options = {},
                    TensorView<float> lse = {});
Algorithm attention(TensorView<const float16> q, TensorView<const float16> k,
                    TensorView<const float16> v, TensorView<float16> out,
                    const AttentionOptions& options = {},
                    TensorView<float> lse = {});

// ALiBi's standard slopes for n heads (Press et al.): for n a power of two,
// slope[h] = 2^(-8 (h + 1) / n); otherwise the slopes of the largest power
// of two below n, then every other slope of twice that many.
std::vector<float> alibi_slopes(int64_t num_heads);

}  // namespace attn

#endif  // ATTN_ATTENTION_H_
