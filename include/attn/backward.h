// attn::attention_backward: the gradients of attn::attention with respect to
// q, k and v, for training.
//
// Given the forward's inputs, its output `out` and its log-sum-exp `lse`
// (attn::attention's optional last argument), and dout = dL/d out, writes
//
//   dq = dL/dq,  dk = dL/dk,  dv = dL/dv
//
// with the shapes of q, k and v. With P the attention weights of the
// forward (recomputed from q, k and lse, never stored):
//
//   Delta_i  = sum_d dout_i[d] * out_i[d]
//   dP_ij    = dout_i . v_j            dv_j = sum_i P_ij dout_i
//   dS_ij    = P_ij (dP_ij - Delta_i) * ds_ij/d(q_i . k_j)
//   dq_i     = sum_j dS_ij k_j         dk_j = sum_i dS_ij q_i
//
// where ds/d(q.k) is scale, times 1 - tanh^2 under softcap, times a
// pattern score functor's score_grad (ALiBi, bias and masks add constants
// and contribute nothing). Under GQA / MQA dk and dv of
// a KV head sum the contributions of every query head of its group. Rows
// with no visible key (lse = -inf) contribute nothing.
//
// Every option of the forward applies with the same meaning
// (docs/semantics.md), dropout included; a pattern score functor must also
// provide score_grad (attn/pattern.h). Algorithms: kReference (float64,
// materialises P), kNaive (float32, materialises P per head group), kFlash
// (tiled, FlashAttention-2 style: memory independent of Sq * Skv); kAuto is
// kFlash. Results are the same bits for any thread count.
//
// bfloat16 / float16 inputs: arithmetic and accumulation in float32, the
// gradients rounded once at the end.
#ifndef ATTN_BACKWARD_H_
#define ATTN_BACKWARD_H_

#include "attn/options.h"
#include "attn/tensor.h"
#include "attn/types.h"

namespace attn {

Algorithm attention_backward(TensorView<const float> q,
                             TensorView<const float> k,
                             TensorView<const float> v,
                             TensorView<const float> out,
                             TensorView<const float> lse,
                             TensorView<const float> dout, TensorView<float> dq,
                             TensorView<float> dk, TensorView<float> dv,
                             const AttentionOptions& options = {});
Algorithm attention_backward(
    TensorView<const bfloat16> q, TensorView<const bfloat16> k,
    TensorView<const bfloat16> v, TensorView<const bfloat16> out,
    TensorView<const float> lse, TensorView<const bfloat16> dout,
    TensorView<bfloat16> dq, TensorView<bfloat16> dk, TensorView<bfloat16> dv,
    const AttentionOptions& options = {});
Algorithm attention_backward(
    TensorView<const float16> q, TensorView<const float16> k,
    TensorView<const float16> v, TensorView<const float16> out,
    TensorView<const float> lse, TensorView<const float16> dout,
    TensorView<float16> dq, TensorView<float16> dk, TensorView<float16> dv,
    const AttentionOptions& options = {});

}  // namespace attn

#endif  // ATTN_BACKWARD_H_
