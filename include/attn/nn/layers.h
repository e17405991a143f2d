// attn::nn: the layers a transformer is built from, on top of
// attn::attention — linear projections (BLAS), LayerNorm / RMSNorm,
// activations, MLPs (plain and gated), multi-head attention with its
// projections (self and cross, GQA/MQA, RoPE / ALiBi / T5 relative
// positions, padding, KV cache) and the pre-/post-norm transformer block.
// Whole models, weights loading and generation: attn/nn/model.h.
//
// Activations are float32 views [B, 1, S, E]: B sequences of S rows with E
// features (the library's 4-D view with one "head"); any strides with a
// contiguous feature axis. Weights follow torch.nn's layouts (Linear's
// weight is [out, in], row-major), so a checkpoint tensor is copied, not
// rearranged. Modules keep their scratch buffers between calls, so a module
// is not thread-safe: one call at a time (the calls themselves use every
// core). Every forward checks its arguments and throws attn::Error naming
// the bad one. Exact formulas: docs/models.md.
#ifndef ATTN_NN_LAYERS_H_
#define ATTN_NN_LAYERS_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "attn/kv_cache.h"
#include "attn/options.h"
#include "attn/rope.h"
#include "attn/tensor.h"

namespace attn::nn {

// Wall-clock seconds spent in each part of a forward, accumulated by every
// module call that is given one (attn bench --model prints them).
struct Profile {
  double projections = 0;  // Q/K/V/O projections
  double attention = 0;    // attn::attention, RoPE, cache appends
  double mlp = 0;          // the MLP's GEMMs and activation
  double other = 0;        // norms, embeddings, residual copies, logits
};

// y = x W^T + b.  x [B, 1, S, in], y [B, 1, S, out]; W [out, in] row-major.
struct Linear {
  int64_t in_features = 0;
  int64_t out_features = 0;
  std::vector<float> weight;  // [out_features, in_features]
  std::vector<float> bias;    // empty or [out_features]

  Linear() = default;
  Linear(int64_t in, int64_t out, bool with_bias);
  // accumulate: y += x W^T + b (y holds e.g. the residual).
  void forward(TensorView<const float> x, TensorView<float> y,
               bool accumulate = false) const;

  // Gradients of y = x W^T + b given dy = dL/dy (both [B, 1, S, *]):
  //   grad_weight += dy^T x,  grad_bias += sum of dy's rows,
  //   dx (+)= dy W  (skipped when dx is empty; added with accumulate).
  // grad_weight / grad_bias are resized (zero) when empty.
  void backward(TensorView<const float> x, TensorView<const float> dy,
                TensorView<float> dx, std::vector<float>& grad_weight,
                std::vector<float>& grad_bias, bool accumulate = false) const;
};

// Dense matrix product on rows: y[r, :] (+)= x[r, :] W^T (+ b) for the rows
// of x, through BLAS. The building block of Linear, exposed for users with
// their own weight layouts. rows >= 0; ldx >= in, ldy >= out.
void linear_rows(const float* x, int64_t rows, int64_t ldx, const float* w,
                 int64_t in, int64_t out, const float* bias, float* y,
                 int64_t ldy, bool accumulate);

// The BLAS library the projections run on: its build configuration and the
// kernel family it picked for this CPU (e.g. "OpenBLAS 0.3.21 ... | core
// Haswell"). OpenBLAS 0.3.21 picks its AVX2 kernels on AMD Zen 4; setting
// OPENBLAS_CORETYPE=SkylakeX in the environment before the process starts
// selects the AVX-512 ones (docs/models.md).
std::string blas_info();

enum class NormKind {
  kLayerNorm,  // (x - mean) / sqrt(var + eps) * weight + bias (biased var)
  kRMSNorm,    // x / sqrt(mean(x^2) + eps) * weight
};

struct Norm {
  NormKind kind = NormKind::kLayerNorm;
  int64_t dim = 0;
  float eps = 1e-5f;
  std::vector<float> weight;  // [dim], ones when built
  std::vector<float> bias;    // LayerNorm: [dim] zeros, or empty for none

  Norm() = default;
  Norm(NormKind kind, int64_t dim, float eps, bool with_bias = true);
  // y may be x (in place). Statistics in float64, output rounded once.
  void forward(TensorView<const float> x, TensorView<float> y) const;

  // Gradients given the forward's input x and dy: grad_weight (and
  // grad_bias) += ..., dx (+)= ... (statistics recomputed from x, float64).
  void backward(TensorView<const float> x, TensorView<const float> dy,
                TensorView<float> dx, std::vector<float>& grad_weight,
                std::vector<float>& grad_bias, bool accumulate = false) const;
};

enum class Activation {
  kRelu,
  kGelu,      // x * Phi(x), exact (erf): BERT, torch's "gelu"
  kGeluTanh,  // tanh approximation: GPT-2's "gelu_new"
  kSilu,      // x * sigmoid(x): SwiGLU's gate (Llama)
};

// Applies the activation to n floats in place.
void activate(Activation a, float* x, int64_t n);
// du[i] = dy[i] * act'(u[i]) (du may be dy).
void activation_backward(Activation a, const float* u, const float* dy,
                         float* du, int64_t n);

struct MlpConfig {
  int64_t d_model = 0;
  int64_t hidden = 0;  // F
  Activation activation = Activation::kGelu;
  bool gated = false;  // down(act(gate(x)) * up(x)), SwiGLU when kSilu
  bool bias = true;
};

// Plain: down(act(up(x))). Gated: `up` holds [2F, E]: rows [0, F) are the
// gate (the activation's input), rows [F, 2F) the up projection, computed
// by one GEMM.
class Mlp {
 public:
  Mlp() = default;
  explicit Mlp(const MlpConfig& config);
  const MlpConfig& config() const { return config_; }
  Linear up;    // [F or 2F, E]
  Linear down;  // [E, F]
  // y (+)= mlp(x); y may be x only with accumulate = true (x is read
  // completely before y is written).
  void forward(TensorView<const float> x, TensorView<float> y,
               bool accumulate = false, Profile* profile = nullptr) const;

  // Gradients given the forward's input x and dy (the up projection is
  // recomputed): grads.up_* and grads.down_* added, dx written or added.
  struct Grads {
    std::vector<float> up_weight, up_bias, down_weight, down_bias;
  };
  void backward(TensorView<const float> x, TensorView<const float> dy,
                TensorView<float> dx, Grads& grads,
                bool accumulate = false) const;

 private:
  MlpConfig config_;
  mutable std::vector<float> hidden_;
};

// How a module adds positions to its attention scores. Absolute encodings
// (sinusoidal, learned) are added to the embeddings instead (attn/nn/model.h).
enum class Position {
  kNone,
  kRope,   // rotate q and k (AttentionConfig::rope)
  kAlibi,  // attn::alibi_slopes(num_heads)
  kT5,     // learned bias per head and relative-position bucket
};

// T5's relative-position buckets (Raffel et al.): half the buckets (or all,
// unidirectional) count exact distances below num_buckets / 4 (/ 2), the
// rest grow logarithmically up to max_distance, beyond which one bucket.
struct T5Buckets {
  int64_t num_buckets = 32;
  int64_t max_distance = 128;
  bool bidirectional = true;  // encoder: true; decoder self-attention: false
};

// The bucket of relative position (key position - query position), with
// the logarithm in float32 exactly as the reference implementation does.
int64_t t5_bucket(int64_t relative_position, const T5Buckets& buckets);

// The sinusoidal table of Vaswani et al., [positions, dim] row-major:
// pe[p, 2i] = sin(p / 10000^(2i/dim)), pe[p, 2i+1] = cos(same); computed in
// float64, rounded once.
std::vector<float> sinusoidal_positions(int64_t positions, int64_t dim);

struct AttentionConfig {
  int64_t d_model = 0;       // E: width of the queries' input and output
  int64_t num_heads = 0;     // Hq
  int64_t num_kv_heads = 0;  // Hkv; 0 = num_heads
  int64_t head_dim = 0;      // D (= Dv); 0 = d_model / num_heads
  int64_t kv_dim = 0;        // width of the keys' input (memory); 0 = E
  bool qkv_bias = true;
  bool out_bias = true;
  bool causal = false;           // decoder self-attention (bottom-right)
  int64_t window_left = -1;      // sliding window, as in AttentionOptions
  std::optional<float> scale{};  // unset: 1 / sqrt(D); T5 uses 1
  Position position = Position::kNone;
  RopeOptions rope{};  // kRope
  T5Buckets t5{};      // kT5
};

// Keys and values of an encoder's output projected once for a decoder's
// cross-attention, reused by every decoding step (MultiHeadAttention::
// project_memory).
struct MemoryKV {
  int64_t batch = 0, length = 0, kv_heads = 0, head_dim = 0;
  std::vector<float> kv;  // [B, L, 2, Hkv, D]: the K/V projection's rows
  TensorView<const float> k() const;  // [B, Hkv, L, D]
  TensorView<const float> v() const;
};

// Per-call inputs of MultiHeadAttention::forward besides x.
struct AttentionInputs {
  // Cross-attention: keys and values from `memory` [B, 1, L, kv_dim], or
  // from `memory_kv` (already projected). Neither: self-attention.
  TensorView<const float> memory{};
  const MemoryKV* memory_kv = nullptr;
  // Padding: valid key count per batch entry (keys past it are hidden).
  std::span<const int64_t> key_lengths{};
  // Masks broadcastable to [B, Hq, Sq, Skv], as in AttentionOptions
  // (boolean: true = visible; bias: added to the scores).
  TensorView<const bool> mask{};
  TensorView<const float> bias{};
  // Incremental decoding (self-attention only): the new tokens' keys and
  // values are appended to `layer` of `sequences` (one per batch entry),
  // and the queries attend to everything stored; positions continue from
  // each sequence's length. The cache must not rotate keys itself.
  KVCache* cache = nullptr;
  int64_t layer = 0;
  std::span<const int64_t> sequences{};
  // Without a cache: the position of row 0 (RoPE, T5), e.g. for chunks.
  int64_t position_offset = 0;
  Algorithm algorithm = Algorithm::kAuto;
  Profile* profile = nullptr;
  // Training (forward_train / backward): attention dropout, rule 7.
  float dropout_p = 0.0f;
  uint64_t seed = 0;
};

// What MultiHeadAttention::forward_train keeps for backward: the
// projections after RoPE, the attention output and its log-sum-exp.
struct AttentionTape {
  int64_t batch = 0, q_len = 0, kv_len = 0;
  std::vector<float> q;    // [B * Sq, Hq D]
  std::vector<float> kv;   // [B * Skv, 2 Hkv D]
  std::vector<float> ctx;  // [B * Sq, Hq D]
  std::vector<float> lse;  // [B, Hq, Sq]
};

// Gradients of a MultiHeadAttention's parameters, laid out like them;
// backward adds to them (zero-sized vectors are sized and cleared first).
struct AttentionGrads {
  std::vector<float> q_weight, q_bias, kv_weight, kv_bias, o_weight, o_bias;
};

class MultiHeadAttention {
 public:
  MultiHeadAttention() = default;
  // Weights zero, biases zero; fill them or load a checkpoint.
  explicit MultiHeadAttention(const AttentionConfig& config);
  const AttentionConfig& config() const { return config_; }
  int64_t num_kv_heads() const { return kv_heads_; }
  int64_t head_dim() const { return head_dim_; }

  Linear q_proj;   // [Hq D, E]
  Linear kv_proj;  // [2 Hkv D, kv_dim]: rows [0, Hkv D) keys, then values
  Linear o_proj;   // [E, Hq D]
  // kT5: [num_buckets, Hq] (the checkpoint's relative_attention_bias).
  std::vector<float> relative_bias;

  // out (+)= attention(x) [B, 1, Sq, E]. out may be x with accumulate =
  // true: the residual connection without a copy.
  void forward(TensorView<const float> x, TensorView<float> out,
               const AttentionInputs& inputs = {},
               bool accumulate = false) const;

  // Projects memory [B, 1, L, kv_dim] to keys and values once.
  MemoryKV project_memory(TensorView<const float> memory) const;

  // Training: forward (out = attention(x), never accumulated) keeping in
  // `tape` what backward needs. Self-attention or cross-attention from
  // `memory`; no cache, no memory_kv, no T5 buckets (their bias would need
  // its own gradient). Dropout: inputs.dropout_p / seed.
  void forward_train(TensorView<const float> x, TensorView<float> out,
                     AttentionTape& tape,
                     const AttentionInputs& inputs = {}) const;

  // The gradients of forward_train's output given dout [B, 1, Sq, E] and
  // the same x and inputs: the parameters' into `grads` (added), dx [B, 1,
  // Sq, E] (written, or added with accumulate), and for cross-attention
  // dmemory [B, 1, L, kv_dim] (written; may be empty to skip). The
  // attention part runs attn::attention_backward (docs/backward.md), RoPE
  // is undone on dq and dk, the projections' products run on BLAS.
  void backward(TensorView<const float> x, TensorView<const float> dout,
                const AttentionTape& tape, TensorView<float> dx,
                AttentionGrads& grads, const AttentionInputs& inputs = {},
                TensorView<float> dmemory = {}, bool accumulate = false) const;

 private:
  AttentionConfig config_;
  int64_t kv_heads_ = 0, head_dim_ = 0;
  std::vector<float> alibi_;
  mutable std::vector<float> t5_table_;  // [Hq, 2 reach + 1] by distance
  mutable std::vector<float> q_, kv_, ctx_;
  void run(TensorView<const float> x, TensorView<float> out,
           const AttentionInputs& inputs, bool accumulate,
           AttentionTape* tape) const;
  // The options of the attention call (everything but T5's functor).
  AttentionOptions attention_options(const AttentionInputs& inputs,
                                     bool cross) const;
};

struct BlockConfig {
  AttentionConfig attention{};             // self-attention
  std::optional<AttentionConfig> cross{};  // encoder-decoder's decoder
  MlpConfig mlp{};
  NormKind norm = NormKind::kLayerNorm;
  float norm_eps = 1e-5f;
  bool norm_bias = true;  // LayerNorm with bias
  // Pre-norm: x += attn(norm(x)); x += mlp(norm(x)) (GPT-2, Llama).
  // Post-norm: x = norm(x + attn(x)); x = norm(x + mlp(x)) (BERT, the
  // original Transformer, torch's default).
  bool pre_norm = true;
};

// Inputs of a block: self-attention's, plus the cross-attention's memory.
struct BlockInputs {
  AttentionInputs self{};
  AttentionInputs cross{};
};

// What TransformerBlock::forward_train keeps for backward.
struct BlockTape {
  std::vector<float> x;     // the block's input
  std::vector<float> a_in;  // pre-norm: norm(x); post-norm: unused
  std::vector<float> x1;    // after the attention residual (post-norm:
                            // before its norm)
  std::vector<float> c_in;  // the cross-attention's input (pre-norm:
                            // its norm's output; post-norm: x1 normed)
  std::vector<float> x1c;   // after the cross residual (post-norm: before
                            // its norm)
  std::vector<float> m_in;  // the MLP's input
  std::vector<float> x2;    // post-norm: before the last norm
  AttentionTape attention, cross_attention;
};

struct BlockGrads {
  AttentionGrads attention, cross_attention;
  Mlp::Grads mlp;
  std::vector<float> attn_norm_weight, attn_norm_bias, cross_norm_weight,
      cross_norm_bias, mlp_norm_weight, mlp_norm_bias;
};

class TransformerBlock {
 public:
  TransformerBlock() = default;
  explicit TransformerBlock(const BlockConfig& config);
  const BlockConfig& config() const { return config_; }

  MultiHeadAttention self_attn;
  std::optional<MultiHeadAttention> cross_attn;
  Mlp mlp;
  Norm attn_norm;   // before (pre) or after (post) self-attention
  Norm cross_norm;  // around cross-attention
  Norm mlp_norm;    // around the MLP

  // Transforms x [B, 1, S, E] in place.
  void forward(TensorView<float> x, const BlockInputs& inputs = {}) const;

  // Training: forward in place keeping a tape; backward turns dx, the
  // gradient of the block's output, into the gradient of its input (in
  // place) and adds every parameter's gradient to `grads`. inputs as for
  // MultiHeadAttention::forward_train (cross: inputs.cross.memory). A
  // cross-attending block adds the memory's gradient to dmemory [B, 1, L,
  // kv_dim] when given (a decoder stack sums it over its layers).
  void forward_train(TensorView<float> x, BlockTape& tape,
                     const BlockInputs& inputs = {}) const;
  void backward(TensorView<float> dx, const BlockTape& tape, BlockGrads& grads,
                const BlockInputs& inputs = {},
                TensorView<float> dmemory = {}) const;

 private:
  BlockConfig config_;
  mutable std::vector<float> normed_;
};

}  // namespace attn::nn

#endif  // ATTN_NN_LAYERS_H_
