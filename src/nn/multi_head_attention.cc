// nn::MultiHeadAttention: projections around attn::attention.
//
//   q = x Wq^T + bq          [B*Sq, Hq D]   (BSHD rows: one GEMM)
//   k|v = m Wkv^T + bkv      [B*Skv, 2 Hkv D], m = x (self) or memory
//   ctx = attention(q, k, v) [B*Sq, Hq D], written in place as BSHD
//   out (+)= ctx Wo^T + bo   [B*Sq, E]
// The projections' row-major outputs are viewed as [B, H, S, D] through
// strides and handed to the kernels as they are: no transposes, no copies
// (the cache path appends k and v from the same views). RoPE rotates q and
// k in place at their positions; ALiBi and T5 buckets enter as options
// (slopes, a score functor over a per-distance table).
#include <algorithm>
#include <cmath>

#include "attn/attention.h"
#include "attn/backward.h"
#include "attn/nn/layers.h"
#include "src/nn/rows.h"

namespace attn::nn {
namespace {

// T5's learned bias as a score functor: s + table[h][clamp(j - i)].
// Positions are the query's and key's own (bottom-right aligned), so the
// same functor serves prefill and cached decoding.
struct T5Score {
  const float* table;
  int64_t reach;  // distances beyond +-reach share the bucket at +-reach
  float score(float s, int64_t, int64_t h, int64_t i, int64_t j) const {
    const int64_t d = std::clamp<int64_t>(j - i, -reach, reach);
    return s + table[h * (2 * reach + 1) + d + reach];
  }
};

TensorView<float> heads_view(float* data, int64_t B, int64_t H, int64_t S,
                             int64_t D, int64_t row_stride) {
  return TensorView<float>(data, {B, H, S, D},
                           {S * row_stride, D, row_stride, 1});
}

}  // namespace

TensorView<const float> MemoryKV::k() const {
  const int64_t W = 2 * kv_heads * head_dim;
  return TensorView<const float>(kv.data(), {batch, kv_heads, length, head_dim},
                                 {length * W, head_dim, W, 1});
}

TensorView<const float> MemoryKV::v() const {
  const int64_t W = 2 * kv_heads * head_dim;
  return TensorView<const float>(kv.data() + kv_heads * head_dim,
                                 {batch, kv_heads, length, head_dim},
                                 {length * W, head_dim, W, 1});
}

MultiHeadAttention::MultiHeadAttention(const AttentionConfig& c) : config_(c) {
  const util::Check where("attn::nn::MultiHeadAttention");
  if (c.d_model <= 0) where.fail("d_model must be > 0");
  if (c.num_heads <= 0) where.fail("num_heads must be > 0");
  kv_heads_ = c.num_kv_heads == 0 ? c.num_heads : c.num_kv_heads;
  if (kv_heads_ <= 0 || c.num_heads % kv_heads_ != 0) {
    where.fail("num_kv_heads must divide num_heads (" +
               std::to_string(c.num_heads) + "), got " +
               std::to_string(c.num_kv_heads));
  }
  if (c.head_dim == 0 && c.d_model % c.num_heads != 0) {
    where.fail("head_dim unset needs num_heads to divide d_model");
  }
  head_dim_ = c.head_dim == 0 ? c.d_model / c.num_heads : c.head_dim;
  if (head_dim_ <= 0) where.fail("head_dim must be > 0");
  if (c.kv_dim < 0) where.fail("kv_dim must be >= 0");
  if (c.scale && !std::isfinite(*c.scale)) {
    where.fail("scale must be finite");
  }
  const int64_t kv_in = c.kv_dim == 0 ? c.d_model : c.kv_dim;
  q_proj = Linear(c.d_model, c.num_heads * head_dim_, c.qkv_bias);
  kv_proj = Linear(kv_in, 2 * kv_heads_ * head_dim_, c.qkv_bias);
  o_proj = Linear(c.num_heads * head_dim_, c.d_model, c.out_bias);
  if (c.position == Position::kAlibi) alibi_ = alibi_slopes(c.num_heads);
  if (c.position == Position::kRope) {
    (void)rope_inverse_frequencies(
        c.rope.rotary_dim == 0 ? head_dim_ : c.rope.rotary_dim, c.rope);
  }
  if (c.position == Position::kT5) {
    const int64_t half =
        c.t5.bidirectional ? c.t5.num_buckets / 2 : c.t5.num_buckets;
    if (half < 2 || c.t5.max_distance <= half / 2) {
      where.fail("t5 buckets need num_buckets >= " +
                 std::string(c.t5.bidirectional ? "4" : "2") +
                 " and max_distance > the exact range");
    }
    relative_bias.assign(static_cast<size_t>(c.t5.num_buckets * c.num_heads),
                         0.0f);
  }
}

MemoryKV MultiHeadAttention::project_memory(
    TensorView<const float> memory) const {
  detail::check_rows(
      memory, util::Check("attn::nn::MultiHeadAttention::project_memory"),
      "memory", kv_proj.in_features);
  MemoryKV m;
  m.batch = memory.extent(0);
  m.length = memory.extent(2);
  m.kv_heads = kv_heads_;
  m.head_dim = head_dim_;
  m.kv.resize(static_cast<size_t>(m.batch * m.length * kv_proj.out_features));
  kv_proj.forward(memory,
                  TensorView<float>::bhsd(m.kv.data(), m.batch, 1, m.length,
                                          kv_proj.out_features));
  return m;
}

void MultiHeadAttention::forward(TensorView<const float> x,
                                 TensorView<float> out,
                                 const AttentionInputs& in,
                                 bool accumulate) const {
  run(x, out, in, accumulate, nullptr);
}

void MultiHeadAttention::forward_train(TensorView<const float> x,
                                       TensorView<float> out,
                                       AttentionTape& tape,
                                       const AttentionInputs& in) const {
  const util::Check where("attn::nn::MultiHeadAttention::forward_train");
  if (in.cache != nullptr || in.memory_kv != nullptr) {
    where.fail("training runs without a cache or memory_kv");
  }
  if (config_.position == Position::kT5) {
    where.fail("T5 relative buckets have no backward yet");
  }
  if (!out.empty() && out.data() == x.data()) {
    where.fail("out must not alias x (x is needed by backward)");
  }
  run(x, out, in, false, &tape);
}

AttentionOptions MultiHeadAttention::attention_options(
    const AttentionInputs& in, bool cross) const {
  const AttentionConfig& c = config_;
  AttentionOptions o;
  o.scale = c.scale;
  o.causal = c.causal && !cross;
  o.window_left = c.window_left;
  if (!alibi_.empty()) o.alibi_slopes = alibi_;
  o.mask = in.mask;
  o.bias = in.bias;
  o.key_lengths = in.key_lengths;
  o.algorithm = in.algorithm;
  o.dropout_p = in.dropout_p;
  o.seed = in.seed;
  return o;
}

void MultiHeadAttention::run(TensorView<const float> x, TensorView<float> out,
                             const AttentionInputs& in, bool accumulate,
                             AttentionTape* tape) const {
  const util::Check where(tape != nullptr
                              ? "attn::nn::MultiHeadAttention::forward_train"
                              : "attn::nn::MultiHeadAttention::forward");
  const AttentionConfig& c = config_;
  if (c.d_model <= 0) where.fail("the module is not configured");
  detail::check_rows(x, where, "x", c.d_model);
  const int64_t B = x.extent(0), Sq = x.extent(2);
  detail::check_rows(out, where, "out", c.d_model, B, Sq);
  if (out.data() == x.data() && !accumulate) {
    where.fail("out may alias x only with accumulate = true");
  }
  const bool cross = !in.memory.empty() || in.memory_kv != nullptr;
  if (!in.memory.empty() && in.memory_kv != nullptr) {
    where.fail("give memory or memory_kv, not both");
  }
  if (cross && in.cache != nullptr) {
    where.fail(
        "cache: cross-attention reads memory, not a cache "
        "(project the memory once with project_memory)");
  }
  if (in.cache != nullptr) {
    if (in.sequences.size() != static_cast<size_t>(B)) {
      where.fail(
          "sequences must name one cache sequence per batch "
          "entry (" +
          std::to_string(B) + ")");
    }
    if (in.cache->options().rope) {
      where.fail(
          "cache: must not rotate keys itself (the module "
          "applies its own RoPE)");
    }
  }
  if (in.memory_kv != nullptr &&
      (in.memory_kv->batch != B || in.memory_kv->kv_heads != kv_heads_ ||
       in.memory_kv->head_dim != head_dim_ ||
       in.memory_kv->kv.size() !=
           static_cast<size_t>(B * in.memory_kv->length * 2 * kv_heads_ *
                               head_dim_))) {
    where.fail(
        "memory_kv was not projected by this module's shape "
        "for this batch");
  }
  if (c.position == Position::kT5 &&
      relative_bias.size() !=
          static_cast<size_t>(c.t5.num_buckets * c.num_heads)) {
    where.fail(
        "relative_bias must hold num_buckets * num_heads "
        "floats");
  }
  Profile* prof = in.profile;
  const int64_t Hq = c.num_heads, Hkv = kv_heads_, D = head_dim_;
  const int64_t Wq = Hq * D, Wkv = 2 * Hkv * D;

  // 1. Projections.
  detail::Timer proj(prof ? &prof->projections : nullptr);
  q_.resize(static_cast<size_t>(B * Sq * Wq));
  q_proj.forward(x, TensorView<float>::bhsd(q_.data(), B, 1, Sq, Wq));
  int64_t Skv = Sq;
  const float* kv = nullptr;
  if (in.memory_kv != nullptr) {
    Skv = in.memory_kv->length;
    kv = in.memory_kv->kv.data();
  } else {
    TensorView<const float> src = cross ? in.memory : x;
    if (cross) detail::check_rows(src, where, "memory", kv_proj.in_features, B);
    Skv = src.extent(2);
    kv_.resize(static_cast<size_t>(B * Skv * Wkv));
    kv_proj.forward(src, TensorView<float>::bhsd(kv_.data(), B, 1, Skv, Wkv));
    kv = kv_.data();
  }
  proj.stop();

  // 2. Positions and attention.
  detail::Timer att(prof ? &prof->attention : nullptr);
  TensorView<float> q = heads_view(q_.data(), B, Hq, Sq, D, Wq);
  // Writable only when this call projected them (self or memory).
  TensorView<float> k = heads_view(const_cast<float*>(kv), B, Hkv, Skv, D, Wkv);
  TensorView<float> v =
      heads_view(const_cast<float*>(kv) + Hkv * D, B, Hkv, Skv, D, Wkv);
  std::vector<int64_t> positions;
  if (in.cache != nullptr) {
    positions.resize(static_cast<size_t>(B * Sq));
    for (int64_t b = 0; b < B; ++b) {
      const int64_t L = in.cache->length(in.sequences[b], in.layer);
      for (int64_t s = 0; s < Sq; ++s) positions[b * Sq + s] = L + s;
    }
  }
  if (c.position == Position::kRope && !cross) {
    apply_rope(q, c.rope, in.position_offset, positions);
    apply_rope(k, c.rope, in.position_offset, positions);
  }
  AttentionOptions o = attention_options(in, cross);
  T5Score t5{nullptr, 0};
  if (c.position == Position::kT5) {
    t5.reach = c.t5.max_distance + 1;
    const int64_t width = 2 * t5.reach + 1;
    t5_table_.resize(static_cast<size_t>(Hq * width));
    for (int64_t d = -t5.reach; d <= t5.reach; ++d) {
      const int64_t bucket = t5_bucket(d, c.t5);
      for (int64_t h = 0; h < Hq; ++h) {
        t5_table_[h * width + d + t5.reach] = relative_bias[bucket * Hq + h];
      }
    }
    t5.table = t5_table_.data();
    o.pattern = Pattern(t5);
  }
  ctx_.resize(static_cast<size_t>(B * Sq * Wq));
  TensorView<float> ctx = heads_view(ctx_.data(), B, Hq, Sq, D, Wq);
  if (in.cache != nullptr) {
    in.cache->append(in.layer, in.sequences, TensorView<const float>(k),
                     TensorView<const float>(v));
    attention(TensorView<const float>(q), *in.cache, in.layer, in.sequences,
              ctx, o);
  } else {
    if (in.position_offset != 0 && c.causal && !cross) {
      where.fail(
          "position_offset needs a cache for causal "
          "self-attention (earlier keys live there)");
    }
    TensorView<float> lse;
    if (tape != nullptr) {
      tape->lse.resize(static_cast<size_t>(B * Hq * Sq));
      lse = TensorView<float>::bhsd(tape->lse.data(), B, Hq, Sq, 1);
    }
    attention(TensorView<const float>(q), TensorView<const float>(k),
              TensorView<const float>(v), ctx, o, lse);
  }
  att.stop();
  if (tape != nullptr) {
    tape->batch = B;
    tape->q_len = Sq;
    tape->kv_len = Skv;
    tape->q.assign(q_.begin(), q_.begin() + B * Sq * Wq);
    tape->kv.assign(kv, kv + B * Skv * Wkv);
    tape->ctx.assign(ctx_.begin(), ctx_.begin() + B * Sq * Wq);
  }

  // 3. Output projection (+ residual when accumulating into x).
  detail::Timer proj2(prof ? &prof->projections : nullptr);
  o_proj.forward(TensorView<const float>::bhsd(ctx_.data(), B, 1, Sq, Wq), out,
                 accumulate);
}

void MultiHeadAttention::backward(TensorView<const float> x,
                                  TensorView<const float> dout,
                                  const AttentionTape& tape,
                                  TensorView<float> dx, AttentionGrads& grads,
                                  const AttentionInputs& in,
                                  TensorView<float> dmemory,
                                  bool accumulate) const {
  const util::Check where("attn::nn::MultiHeadAttention::backward");
  const AttentionConfig& c = config_;
  if (c.d_model <= 0) where.fail("the module is not configured");
  if (in.cache != nullptr || in.memory_kv != nullptr) {
    where.fail("training runs without a cache or memory_kv");
  }
  if (c.position == Position::kT5) {
    where.fail("T5 relative buckets have no backward yet");
  }
  detail::check_rows(x, where, "x", c.d_model);
  const int64_t B = x.extent(0), Sq = x.extent(2);
  detail::check_rows(dout, where, "dout", c.d_model, B, Sq);
  detail::check_rows(dx, where, "dx", c.d_model, B, Sq);
  if (dx.data() == x.data() || dx.data() == dout.data()) {
    where.fail(
        "dx must not alias x or dout (both are read after dx "
        "is written)");
  }
  const bool cross = !in.memory.empty();
  if (cross) {
    detail::check_rows(in.memory, where, "memory", kv_proj.in_features, B);
  }
  if (!cross && !dmemory.empty()) {
    where.fail("dmemory is for cross-attention (inputs.memory)");
  }
  const int64_t Skv = cross ? in.memory.extent(2) : Sq;
  if (!dmemory.empty()) {
    detail::check_rows(dmemory, where, "dmemory", kv_proj.in_features, B, Skv);
  }
  const int64_t Hq = c.num_heads, Hkv = kv_heads_, D = head_dim_;
  const int64_t Wq = Hq * D, Wkv = 2 * Hkv * D;
  if (tape.batch != B || tape.q_len != Sq || tape.kv_len != Skv ||
      tape.q.size() != static_cast<size_t>(B * Sq * Wq) ||
      tape.kv.size() != static_cast<size_t>(B * Skv * Wkv) ||
      tape.ctx.size() != static_cast<size_t>(B * Sq * Wq) ||
      tape.lse.size() != static_cast<size_t>(B * Hq * Sq)) {
    where.fail("tape does not come from forward_train with this x");
  }
  auto rows = [](const float* p, int64_t b, int64_t s, int64_t w) {
    return TensorView<const float>::bhsd(p, b, 1, s, w);
  };

  // 1. Output projection: dctx = dout Wo; dWo, dbo.
  std::vector<float> dctx(static_cast<size_t>(B * Sq * Wq));
  o_proj.backward(rows(tape.ctx.data(), B, Sq, Wq), dout,
                  TensorView<float>::bhsd(dctx.data(), B, 1, Sq, Wq),
                  grads.o_weight, grads.o_bias);

  // 2. Attention: dq, dk, dv in the projections' row layouts.
  std::vector<float> dq(static_cast<size_t>(B * Sq * Wq)),
      dkv(static_cast<size_t>(B * Skv * Wkv));
  float* kv = const_cast<float*>(tape.kv.data());
  const AttentionOptions o = attention_options(in, cross);
  attention_backward(
      TensorView<const float>(
          heads_view(const_cast<float*>(tape.q.data()), B, Hq, Sq, D, Wq)),
      TensorView<const float>(heads_view(kv, B, Hkv, Skv, D, Wkv)),
      TensorView<const float>(heads_view(kv + Hkv * D, B, Hkv, Skv, D, Wkv)),
      TensorView<const float>(
          heads_view(const_cast<float*>(tape.ctx.data()), B, Hq, Sq, D, Wq)),
      TensorView<const float>::bhsd(tape.lse.data(), B, Hq, Sq, 1),
      TensorView<const float>(heads_view(dctx.data(), B, Hq, Sq, D, Wq)),
      heads_view(dq.data(), B, Hq, Sq, D, Wq),
      heads_view(dkv.data(), B, Hkv, Skv, D, Wkv),
      heads_view(dkv.data() + Hkv * D, B, Hkv, Skv, D, Wkv), o);

  // 3. RoPE rotated q and k by R(p); their gradients go back by R(p)^T =
  // R(-p).
  if (c.position == Position::kRope && !cross) {
    std::vector<int64_t> back(static_cast<size_t>(Sq));
    for (int64_t s = 0; s < Sq; ++s) back[s] = -(in.position_offset + s);
    apply_rope(heads_view(dq.data(), B, Hq, Sq, D, Wq), c.rope, 0, back);
    apply_rope(heads_view(dkv.data(), B, Hkv, Skv, D, Wkv), c.rope, 0, back);
  }

  // 4. Input projections: dx (+)= dq Wq (+ dkv Wkv for self-attention).
  q_proj.backward(x, rows(dq.data(), B, Sq, Wq), dx, grads.q_weight,
                  grads.q_bias, accumulate);
  kv_proj.backward(cross ? in.memory : x, rows(dkv.data(), B, Skv, Wkv),
                   cross ? dmemory : dx, grads.kv_weight, grads.kv_bias,
                   /*accumulate=*/!cross);
}

}  // namespace attn::nn
