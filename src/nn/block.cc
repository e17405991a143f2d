// nn::TransformerBlock: attention and MLP sublayers with residuals.
//   pre-norm:  x += attn(n1(x)); [x += cross(n2(x), m)]; x += mlp(n3(x))
//   post-norm: x = n1(x + attn(x)); [x = n2(x + cross(x, m))];
//              x = n3(x + mlp(x))
// Residuals are added by the sublayers' last GEMM (beta = 1 into x), so a
// block makes no copy of x; pre-norm keeps one normalised copy.
#include "attn/nn/layers.h"
#include "src/nn/rows.h"

namespace attn::nn {

TransformerBlock::TransformerBlock(const BlockConfig& c) : config_(c) {
  const util::Check where("attn::nn::TransformerBlock");
  const int64_t E = c.attention.d_model;
  if (c.mlp.d_model != E) {
    where.fail("mlp.d_model must equal attention.d_model");
  }
  if (c.cross && c.cross->d_model != E) {
    where.fail("cross.d_model must equal attention.d_model");
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
  const util::Check where("attn::nn::TransformerBlock::forward");
  const int64_t E = config_.attention.d_model;
  if (E <= 0) where.fail("the block is not configured");
  detail::check_rows(x, where, "x", E);
  const bool has_memory =
      !in.cross.memory.empty() || in.cross.memory_kv != nullptr;
  if (cross_attn && !has_memory) {
    where.fail(
        "inputs.cross: this block cross-attends and needs "
        "memory or memory_kv");
  }
  if (!cross_attn && has_memory) {
    where.fail("inputs.cross: this block has no cross-attention");
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

namespace {

std::vector<float> copy_rows(TensorView<const float> x) {
  const int64_t B = x.extent(0), S = x.extent(2), E = x.extent(3);
  std::vector<float> v(static_cast<size_t>(B * S * E));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t s = 0; s < S; ++s) {
      const float* r = detail::row(x, b, s);
      std::copy(r, r + E, v.begin() + (b * S + s) * E);
    }
  }
  return v;
}

TensorView<float> rows_of(std::vector<float>& v, int64_t B, int64_t S,
                          int64_t E) {
  return TensorView<float>::bhsd(v.data(), B, 1, S, E);
}
TensorView<const float> rows_of(const std::vector<float>& v, int64_t B,
                                int64_t S, int64_t E) {
  return TensorView<const float>::bhsd(v.data(), B, 1, S, E);
}

// x += y, row by row (x a view, y contiguous rows).
void add_rows(TensorView<float> x, const std::vector<float>& y) {
  const int64_t S = x.extent(2), E = x.extent(3);
  for (int64_t b = 0; b < x.extent(0); ++b) {
    for (int64_t s = 0; s < S; ++s) {
      float* r = detail::row(x, b, s);
      const float* q = &y[(b * S + s) * E];
      for (int64_t e = 0; e < E; ++e) r[e] += q[e];
    }
  }
}

}  // namespace

void TransformerBlock::forward_train(TensorView<float> x, BlockTape& tape,
                                     const BlockInputs& in) const {
  const util::Check where("attn::nn::TransformerBlock::forward_train");
  const int64_t E = config_.attention.d_model;
  if (E <= 0) where.fail("the block is not configured");
  detail::check_rows(x, where, "x", E);
  if (cross_attn.has_value() != !in.cross.memory.empty()) {
    where.fail(cross_attn ? "inputs.cross.memory: this block "
                            "cross-attends and needs it"
                          : "inputs.cross: this block has no "
                            "cross-attention");
  }
  const int64_t B = x.extent(0), S = x.extent(2);
  const TensorView<const float> xc(x);
  std::vector<float> a(static_cast<size_t>(B * S * E));
  auto view = [&](std::vector<float>& v) { return rows_of(v, B, S, E); };
  tape.x = copy_rows(xc);
  if (config_.pre_norm) {
    tape.a_in.resize(a.size());
    attn_norm.forward(xc, view(tape.a_in));
    self_attn.forward_train(view(tape.a_in), view(a), tape.attention, in.self);
    add_rows(x, a);
    tape.x1 = copy_rows(xc);
    if (cross_attn) {
      tape.c_in.resize(a.size());
      cross_norm.forward(xc, view(tape.c_in));
      cross_attn->forward_train(view(tape.c_in), view(a), tape.cross_attention,
                                in.cross);
      add_rows(x, a);
      tape.x1c = copy_rows(xc);
    }
    tape.m_in.resize(a.size());
    mlp_norm.forward(xc, view(tape.m_in));
    mlp.forward(view(tape.m_in), x, true);
    return;
  }
  self_attn.forward_train(xc, view(a), tape.attention, in.self);
  add_rows(x, a);
  tape.x1 = copy_rows(xc);
  attn_norm.forward(xc, x);
  if (cross_attn) {
    tape.c_in = copy_rows(xc);
    cross_attn->forward_train(xc, view(a), tape.cross_attention, in.cross);
    add_rows(x, a);
    tape.x1c = copy_rows(xc);
    cross_norm.forward(xc, x);
  }
  tape.m_in = copy_rows(xc);
  mlp.forward(xc, x, true);
  tape.x2 = copy_rows(xc);
  mlp_norm.forward(xc, x);
}

void TransformerBlock::backward(TensorView<float> dx, const BlockTape& tape,
                                BlockGrads& g, const BlockInputs& in,
                                TensorView<float> dmemory) const {
  const util::Check where("attn::nn::TransformerBlock::backward");
  const int64_t E = config_.attention.d_model;
  if (E <= 0) where.fail("the block is not configured");
  detail::check_rows(dx, where, "dx", E);
  const int64_t B = dx.extent(0), S = dx.extent(2);
  const size_t n = static_cast<size_t>(B * S * E);
  if (cross_attn.has_value() != !in.cross.memory.empty()) {
    where.fail(
        "inputs.cross.memory must be given exactly when the "
        "block cross-attends");
  }
  if (!cross_attn && !dmemory.empty()) {
    where.fail("dmemory: this block has no cross-attention");
  }
  if (tape.x.size() != n || tape.x1.size() != n || tape.m_in.size() != n ||
      (config_.pre_norm ? tape.a_in.size() != n : tape.x2.size() != n) ||
      (cross_attn && (tape.c_in.size() != n || tape.x1c.size() != n))) {
    where.fail("tape does not come from forward_train with this shape");
  }
  std::vector<float> t1(n), t2(n), dmem;
  auto view = [&](const std::vector<float>& v) { return rows_of(v, B, S, E); };
  auto mview = [&](std::vector<float>& v) { return rows_of(v, B, S, E); };
  // The cross-attention's part of dx: dc = d(cross input), added to
  // dmemory through a temporary (MultiHeadAttention::backward writes it).
  auto cross_backward = [&](TensorView<const float> c_in,
                            TensorView<const float> dout,
                            TensorView<float> dc) {
    TensorView<float> dm;
    if (!dmemory.empty()) {
      detail::check_rows(dmemory, where, "dmemory",
                         cross_attn->kv_proj.in_features, B,
                         in.cross.memory.extent(2));
      dmem.assign(static_cast<size_t>(dmemory.extent(0) * dmemory.extent(2) *
                                      dmemory.extent(3)),
                  0.0f);
      dm = TensorView<float>::bhsd(dmem.data(), dmemory.extent(0), 1,
                                   dmemory.extent(2), dmemory.extent(3));
    }
    cross_attn->backward(c_in, dout, tape.cross_attention, dc,
                         g.cross_attention, in.cross, dm);
    if (!dmemory.empty()) add_rows(dmemory, dmem);
  };
  if (config_.pre_norm) {
    // x2 = x1c + mlp(norm2(x1c)); x1c = x1 + cross(normc(x1));
    // x1 = x + attn(norm1(x)).
    const std::vector<float>& mlp_res = cross_attn ? tape.x1c : tape.x1;
    mlp.backward(view(tape.m_in), dx, mview(t1), g.mlp);
    mlp_norm.backward(view(mlp_res), view(t1), dx, g.mlp_norm_weight,
                      g.mlp_norm_bias, true);
    if (cross_attn) {
      cross_backward(view(tape.c_in), dx, mview(t1));
      cross_norm.backward(view(tape.x1), view(t1), dx, g.cross_norm_weight,
                          g.cross_norm_bias, true);
    }
    self_attn.backward(view(tape.a_in), dx, tape.attention, mview(t2),
                       g.attention, in.self);
    attn_norm.backward(view(tape.x), view(t2), dx, g.attn_norm_weight,
                       g.attn_norm_bias, true);
    return;
  }
  // x2 = norm2(z2), z2 = x1c + mlp(x1c); x1c = normc(zc), zc = x1 +
  // cross(x1); x1 = norm1(z1), z1 = x + attn(x).
  mlp_norm.backward(view(tape.x2), dx, mview(t1), g.mlp_norm_weight,
                    g.mlp_norm_bias);
  mlp.backward(view(tape.m_in), view(t1), dx, g.mlp);
  add_rows(dx, t1);
  if (cross_attn) {
    cross_norm.backward(view(tape.x1c), dx, mview(t1), g.cross_norm_weight,
                        g.cross_norm_bias);
    cross_backward(view(tape.c_in), view(t1), dx);
    add_rows(dx, t1);
  }
  attn_norm.backward(view(tape.x1), dx, mview(t2), g.attn_norm_weight,
                     g.attn_norm_bias);
  self_attn.backward(view(tape.x), view(t2), tape.attention, dx, g.attention,
                     in.self);
  add_rows(dx, t2);
}

}  // namespace attn::nn
