// Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs"):
// softmax(q k^T) replaced by a kernel phi(q) . phi(k), so the keys and
// values fold into a [D, Dv] state and attention costs O(S * D * Dv)
// instead of O(S^2):
//
//   out_i = (phi(q_i)^T S_i) / (phi(q_i) . z_i + eps)
//   S_i = sum_{j in keys(i)} phi(k_j) v_j^T,   z_i = sum_{j in keys(i)}
//   phi(k_j)
//
// keys(i) = every key (non-causal) or j <= i (causal). A row whose
// denominator is 0 gives 0. GQA as in attn::attention: query head h reads
// KV head h / (Hq / Hkv). Shapes as attn::attention with D <= 1024; causal
// calls need Sq == Skv (continue a sequence with LinearState instead).
// docs/linear.md.
#ifndef ATTN_LINEAR_H_
#define ATTN_LINEAR_H_

#include <cstdint>
#include <memory>

#include "attn/tensor.h"
#include "attn/types.h"
#include "attn/workspace.h"

namespace attn {

enum class FeatureMap {
  kEluPlusOne,  // phi(x) = elu(x) + 1 = x + 1 for x > 0, else exp(x)
  kRelu,        // phi(x) = max(x, 0)
  kCustom,      // LinearOptions::custom
};

// phi over one row of n values: y[d] = phi(x)[d]. May mix elements within
// the row (e.g. random features), must be deterministic.
using FeatureFn = void (*)(const float* x, float* y, int64_t n,
                           const void* context);

enum class LinearAlgorithm {
  kAuto,       // kChunked
  kReference,  // float64, materialises phi(q) phi(k)^T per (b, h)
  kNaive,      // float32, the same quadratic form: the baseline
  kChunked,    // O(S D Dv): states per chunk of keys, prefix sums over them
};

struct LinearOptions {
  bool causal = false;
  FeatureMap feature_map = FeatureMap::kEluPlusOne;
  FeatureFn custom = nullptr;  // kCustom only
  const void* custom_context = nullptr;
  float eps = 0.0f;  // added to every denominator; >= 0
  LinearAlgorithm algorithm = LinearAlgorithm::kAuto;
  int num_threads = 0;  // 0: every core
};

LinearAlgorithm linear_attention(TensorView<const float> q,
                                 TensorView<const float> k,
                                 TensorView<const float> v,
                                 TensorView<float> out,
                                 const LinearOptions& options = {});
LinearAlgorithm linear_attention(TensorView<const bfloat16> q,
                                 TensorView<const bfloat16> k,
                                 TensorView<const bfloat16> v,
                                 TensorView<bfloat16> out,
                                 const LinearOptions& options = {});
LinearAlgorithm linear_attention(TensorView<const float16> q,
                                 TensorView<const float16> k,
                                 TensorView<const float16> v,
                                 TensorView<float16> out,
                                 const LinearOptions& options = {});

// The gradients of linear_attention (same options, causal or not) with
// respect to q, k and v, given dout = dL/d out; dq, dk, dv are shaped like
// q, k, v. With a_ij = phi(q_i) . phi(k_j), num_i = sum_j a_ij v_j and
// den_i = sum_j a_ij + eps (out_i = num_i / den_i):
//   dnum_i = dout_i / den_i,  dden_i = -(dout_i . out_i) / den_i
//   dphi(q_i) = S_i dnum_i + dden_i z_i
//   dphi(k_j) = U_j v_j + w_j,  dv_j = U_j^T phi(k_j)
// with U_j = sum_{i sees j} phi(q_i) dnum_i^T and w_j = sum_{i sees j}
// dden_i phi(q_i) (summed over the query heads of a KV head), then through
// phi' (elu + 1: 1 for x > 0, else e^x; relu: 1 for x > 0, else 0). Rows
// whose denominator is 0 (output 0) contribute nothing. kChunked / kAuto:
// one forward and one reverse scan per (b, KV head), O(S D Dv), states in
// float64; kReference: float64, quadratic. kCustom feature maps have no
// known derivative and are rejected, as is kNaive.
LinearAlgorithm linear_attention_backward(
    TensorView<const float> q, TensorView<const float> k,
    TensorView<const float> v, TensorView<const float> dout,
    TensorView<float> dq, TensorView<float> dk, TensorView<float> dv,
    const LinearOptions& options = {});
LinearAlgorithm linear_attention_backward(
    TensorView<const bfloat16> q, TensorView<const bfloat16> k,
    TensorView<const bfloat16> v, TensorView<const bfloat16> dout,
    TensorView<bfloat16> dq, TensorView<bfloat16> dk, TensorView<bfloat16> dv,
    const LinearOptions& options = {});
LinearAlgorithm linear_attention_backward(
    TensorView<const float16> q, TensorView<const float16> k,
    TensorView<const float16> v, TensorView<const float16> dout,
    TensorView<float16> dq, TensorView<float16> dk, TensorView<float16> dv,
    const LinearOptions& options = {});

const char* linear_algorithm_name(LinearAlgorithm a);

// The recurrent form for generation: the linear analogue of a KV cache,
// one [D, Dv] state S and [D] sum z per (batch entry, KV head), float32.
// append() feeds n new tokens of every batch entry and writes their
// outputs (causal within the chunk, on top of everything fed before), so
// feeding a sequence token by token, in chunks or at once gives the same
// outputs as linear_attention(..., causal) on the whole of it. Memory is
// B * Hkv * D * (Dv + 1) floats whatever the length.
class LinearState {
 public:
  // options.causal is implied; options.algorithm is ignored (chunked).
  LinearState(int64_t batch, int64_t kv_heads, int64_t head_dim,
              int64_t value_dim, const LinearOptions& options = {});
  ~LinearState();
  LinearState(LinearState&&) noexcept;
  LinearState& operator=(LinearState&&) noexcept;

  // q [B, Hq, n, D], k [B, Hkv, n, D], v [B, Hkv, n, Dv] -> out [B, Hq, n, Dv],
  // n >= 1 new positions per batch entry; Hq a multiple of Hkv.
  void append(TensorView<const float> q, TensorView<const float> k,
              TensorView<const float> v, TensorView<float> out);
  // Tokens fed so far (the same for every batch entry).
  int64_t length() const;
  // Forgets everything fed.
  void reset();
  // The state of (b, KV head): S as [D, Dv] row-major, then z [D].
  const float* state(int64_t b, int64_t kv_head) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace attn

#endif  // ATTN_LINEAR_H_
