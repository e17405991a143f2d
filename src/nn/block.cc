// nn::TransformerBlock: attention and MLP sublayers with residuals.
//   pre-norm:  x += attn(n1(x)); [x += cross(n2(x), m)]; x += mlp(n3(x))
//   post-norm: x = n1(x + attn(x)); [x = n2(x + cross(x, m))];
//              x = n3(x + mlp(x))
// Residuals are added by the sublayers' last GEMM (beta = 1 into x), so a
// block makes no copy of x; pre-norm keeps one normalised copy.
#include "attn/nn.h"
#include "src/nn/rows.h"

namespace attn::nn {

TransformerBlock::TransformerBlock(const BlockConfig& c) : config_(c) {
  const char* where = "nn::TransformerBlock";
  const int64_t E = c.attention.d_model;
  if (c.mlp.d_model != E) {
    detail::fail(where, "mlp.d_model must equal attention.d_model");
  }
  if (c.cross && c.cross->d_model != E) {
    detail::fail(where, "cross.d_model must equal attention.d_model");
  }
  self_attn = MultiHeadAttention(c.attention);
  if (c.cross) cross_attn.emplace(*c.cross);
  mlp = Mlp(c.mlp);
  attn_norm = Norm(c.norm, E, c.norm_eps, c.norm_bias);
  if (c.cross) cross_norm = Norm(c.norm, E, c.norm_eps, c.norm_bias);
  mlp_norm = Norm(c.norm, E, c.norm_eps, c.norm_bias);
}

void TransformerBlock::forward(TensorView<float> x,
                               const BlockInputs& in) const {
  const char* where = "nn::TransformerBlock::forward";
  const int64_t E = config_.attention.d_model;
  if (E <= 0) detail::fail(where, "the block is not configured");
  detail::check_rows(x, where, "x", E);
  const bool has_memory =
      !in.cross.memory.empty() || in.cross.memory_kv != nullptr;
  if (cross_attn && !has_memory) {
    detail::fail(where,
                 "inputs.cross: this block cross-attends and needs "
                 "memory or memory_kv");
  }
  if (!cross_attn && has_memory) {
    detail::fail(where, "inputs.cross: this block has no cross-attention");
  }
  const int64_t B = x.extent(0), S = x.extent(2);
  Profile* prof = in.self.profile;
  AttentionInputs cross = in.cross;
  if (cross.profile == nullptr) cross.profile = prof;
  TensorView<const float> xc(x);
  if (config_.pre_norm) {
    normed_.resize(static_cast<size_t>(B * S * E));
    TensorView<float> h = TensorView<float>::bhsd(normed_.data(), B, 1, S, E);
    auto norm = [&](const Norm& n) {
      detail::Timer t(prof ? &prof->other : nullptr);
      n.forward(xc, h);
    };
    norm(attn_norm);
    self_attn.forward(h, x, in.self, true);
    if (cross_attn) {
      norm(cross_norm);
      cross_attn->forward(h, x, cross, true);
    }
    norm(mlp_norm);
    mlp.forward(h, x, true, prof);
    return;
  }
  auto norm = [&](const Norm& n) {
    detail::Timer t(prof ? &prof->other : nullptr);
    n.forward(xc, x);
  };
  self_attn.forward(xc, x, in.self, true);
  norm(attn_norm);
  if (cross_attn) {
    cross_attn->forward(xc, x, cross, true);
    norm(cross_norm);
  }
  mlp.forward(xc, x, true, prof);
  norm(mlp_norm);
}

}  // namespace attn::nn
