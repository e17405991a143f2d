// attn::nn layers and models without PyTorch: BLAS projections against
// plain loops (strided views, one row, accumulation), norms, attention
// modules against their composition from attn::attention (GQA, ALiBi,
// windows, T5), cache decoding against prefill, sampling, batched and
// encoder-decoder generation, checkpoint and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "attn/attention.h"
#include "attn/nn/layers.h"
#include "attn/nn/model.h"

namespace attn::nn {
namespace {

std::vector<float> randn(size_t n, std::mt19937& rng, float s = 1.0f) {
  std::normal_distribution<float> d(0.0f, s);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

TensorView<float> rows(std::vector<float>& v, int64_t B, int64_t S, int64_t E) {
  return TensorView<float>::bhsd(v.data(), B, 1, S, E);
}

double rel_err(const std::vector<float>& got, const std::vector<double>& want) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    err = std::max(err, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return err / std::max(scale, 1e-30);
}

template <class F>
void expect_error(F&& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no attn::Error; expected one mentioning: " << fragment;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
        << e.what();
  }
}

TEST(NnLinear, MatchesLoopsOnStridedViewsOneRowAndAccumulation) {
  std::mt19937 rng(1);
  for (const auto [B, S, in, out] : {std::array<int64_t, 4>{1, 1, 7, 5},
                                     {3, 1, 16, 9},
                                     {2, 13, 33, 17},
                                     {2, 2, 37, 11},
                                     {1, 4, 20, 6},
                                     {4, 5, 1, 3}}) {
    Linear l(in, out, true);
    l.weight = randn(l.weight.size(), rng);
    l.bias = randn(l.bias.size(), rng);
    // x and y with padded rows and batch gaps: not one matrix.
    const int64_t ldx = in + 3, ldy = out + 2;
    std::vector<float> x = randn(static_cast<size_t>(B * (S * ldx + 5)), rng);
    std::vector<float> y(static_cast<size_t>(B * (S * ldy + 4)), std::nanf(""));
    const TensorView<const float> xv(x.data(), {B, 1, S, in},
                                     {S * ldx + 5, 0, ldx, 1});
    const TensorView<float> yv(y.data(), {B, 1, S, out},
                               {S * ldy + 4, 0, ldy, 1});
    for (const bool accumulate : {false, true}) {
      std::vector<double> want;
      std::vector<float> got;
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t s = 0; s < S; ++s) {
          for (int64_t o = 0; o < out; ++o) {
            double acc = l.bias[o] + (accumulate ? yv(b, 0, s, o) : 0.0);
            for (int64_t i = 0; i < in; ++i) {
              acc += double(xv(b, 0, s, i)) * l.weight[o * in + i];
            }
            want.push_back(acc);
          }
        }
      }
      l.forward(xv, yv, accumulate);
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t s = 0; s < S; ++s) {
          for (int64_t o = 0; o < out; ++o) got.push_back(yv(b, 0, s, o));
        }
      }
      EXPECT_LT(rel_err(got, want), 1e-5)
          << "B " << B << " S " << S << " accumulate " << accumulate;
    }
    // The gaps between rows and batches stay untouched.
    EXPECT_TRUE(std::isnan(y[out]));
  }
}

TEST(NnLinear, RejectsBadShapes) {
  Linear l(4, 3, true);
  std::vector<float> x(8), y(6);
  expect_error([&] { l.forward(rows(x, 1, 2, 4), rows(y, 1, 3, 2)); },
               "y: must have 3 features");
  expect_error([&] { l.forward(rows(x, 1, 1, 8), rows(y, 1, 1, 3)); },
               "x: must have 4 features");
  expect_error(
      [&] {
        l.forward(TensorView<const float>(x.data(), {1, 2, 1, 4}, {8, 4, 4, 1}),
                  rows(y, 1, 2, 3));
      },
      "extent 1 on axis 1");
  std::vector<float> sq(12);
  Linear square(4, 4, false);
  expect_error([&] { square.forward(rows(sq, 1, 3, 4), rows(sq, 1, 3, 4)); },
               "y must not alias x");
  l.bias.resize(2);
  expect_error([&] { l.forward(rows(x, 1, 2, 4), rows(y, 1, 2, 3)); }, "bias");
}

// Linear::backward against loops: gaps between rows, two batch entries,
// gradients added to what is there, dx written then accumulated.
TEST(NnLinear, BackwardMatchesLoops) {
  std::mt19937 rng(41);
  const int64_t B = 2, S = 5, In = 7, Out = 3;
  Linear l(In, Out, true);
  l.weight = randn(l.weight.size(), rng);
  std::vector<float> x = randn(B * S * (In + 2), rng),
                     dy = randn(B * S * Out, rng);
  const TensorView<const float> xv(x.data(), {B, 1, S, In},
                                   {S * (In + 2), 0, In + 2, 1});
  std::vector<float> gw(In * Out, 1.0f), gb(Out, 1.0f), dx(B * S * In, 0.5f);
  l.backward(xv, rows(dy, B, S, Out), rows(dx, B, S, In), gw, gb, true);
  std::vector<double> wgw(In * Out, 1.0), wgb(Out, 1.0), wdx(B * S * In, 0.5);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t o = 0; o < Out; ++o) {
        const double g = dy[(b * S + s) * Out + o];
        wgb[o] += g;
        for (int64_t i = 0; i < In; ++i) {
          wgw[o * In + i] += g * xv(b, 0, s, i);
          wdx[(b * S + s) * In + i] += g * l.weight[o * In + i];
        }
      }
    }
  }
  EXPECT_LE(rel_err(gw, wgw), 1e-6);
  EXPECT_LE(rel_err(gb, wgb), 1e-6);
  EXPECT_LE(rel_err(dx, wdx), 1e-6);
  // Empty gradient vectors are sized and cleared; dx may be skipped.
  std::vector<float> gw2, gb2;
  l.backward(xv, rows(dy, B, S, Out), {}, gw2, gb2);
  EXPECT_EQ(gw2.size(), static_cast<size_t>(In * Out));
  for (size_t i = 0; i < gw2.size(); ++i)
    EXPECT_NEAR(gw2[i], gw[i] - 1.0f, 1e-5);
  std::vector<float> bad(5);
  expect_error([&] { l.backward(xv, rows(dy, B, S, Out), {}, bad, gb2); },
               "grad_weight");
}

TEST(NnMultiHeadAttention, TrainingErrors) {
  std::mt19937 rng(43);
  const int64_t E = 16, B = 1, S = 4;
  std::vector<float> x = randn(B * S * E, rng), out(x.size()), dx(x.size());
  AttentionConfig t5{.d_model = E, .num_heads = 2, .position = Position::kT5};
  MultiHeadAttention m5(t5);
  AttentionTape tape;
  expect_error(
      [&] { m5.forward_train(rows(x, B, S, E), rows(out, B, S, E), tape); },
      "T5");
  MultiHeadAttention m({.d_model = E, .num_heads = 2});
  m.forward_train(rows(x, B, S, E), rows(out, B, S, E), tape);
  AttentionGrads g;
  std::vector<float> x3 = randn(B * 3 * E, rng), dx3(x3.size()), d3(x3.size());
  expect_error(
      [&] {
        m.backward(rows(x3, B, 3, E), rows(d3, B, 3, E), tape,
                   rows(dx3, B, 3, E), g);
      },
      "tape does not come from forward_train");
  expect_error(
      [&] {
        m.backward(rows(x, B, S, E), rows(out, B, S, E), tape, rows(x, B, S, E),
                   g);
      },
      "dx must not alias");
  expect_error(
      [&] {
        m.backward(rows(x, B, S, E), rows(out, B, S, E), tape,
                   rows(dx, B, S, E), g, {}, rows(d3, B, 3, E));
      },
      "dmemory is for cross-attention");
}

TEST(NnNorm, LayerNormAndRmsNormMatchTheirFormulas) {
  std::mt19937 rng(2);
  const int64_t S = 5, E = 37;
  for (const NormKind kind : {NormKind::kLayerNorm, NormKind::kRMSNorm}) {
    Norm n(kind, E, 1e-5f);
    n.weight = randn(E, rng);
    if (kind == NormKind::kLayerNorm) n.bias = randn(E, rng);
    std::vector<float> x = randn(static_cast<size_t>(S * E), rng, 3.0f);
    std::vector<double> want;
    for (int64_t s = 0; s < S; ++s) {
      double mean = 0, sq = 0;
      for (int64_t c = 0; c < E; ++c) mean += x[s * E + c];
      mean = kind == NormKind::kLayerNorm ? mean / E : 0.0;
      for (int64_t c = 0; c < E; ++c)
        sq += (x[s * E + c] - mean) * (x[s * E + c] - mean);
      const double r = 1 / std::sqrt(sq / E + 1e-5);
      for (int64_t c = 0; c < E; ++c) {
        want.push_back((x[s * E + c] - mean) * r * n.weight[c] +
                       (n.bias.empty() ? 0.0 : n.bias[c]));
      }
    }
    n.forward(rows(x, 1, S, E), rows(x, 1, S, E));  // in place
    EXPECT_LT(rel_err(x, want), 1e-6);
  }
  Norm r(NormKind::kRMSNorm, 4, 1e-5f);
  r.bias.assign(4, 0.0f);
  std::vector<float> x(4);
  expect_error([&] { r.forward(rows(x, 1, 1, 4), rows(x, 1, 1, 4)); },
               "RMSNorm takes no bias");
}

// The module against its definition: projections by loops, attention by
// the float64 reference on explicit views, the output projection by loops.
std::vector<double> mha_by_parts(const MultiHeadAttention& m,
                                 const std::vector<float>& x, int64_t B,
                                 int64_t S, AttentionOptions o) {
  const AttentionConfig& c = m.config();
  const int64_t E = c.d_model, Hq = c.num_heads, Hkv = m.num_kv_heads(),
                D = m.head_dim();
  auto project = [&](const Linear& l) {
    std::vector<float> y(static_cast<size_t>(B * S * l.out_features));
    for (int64_t r = 0; r < B * S; ++r) {
      for (int64_t o = 0; o < l.out_features; ++o) {
        double acc = l.bias.empty() ? 0.0 : l.bias[o];
        for (int64_t i = 0; i < E; ++i)
          acc += double(x[r * E + i]) * l.weight[o * E + i];
        y[r * l.out_features + o] = static_cast<float>(acc);
      }
    }
    return y;
  };
  std::vector<float> q = project(m.q_proj), kv = project(m.kv_proj);
  std::vector<float> ctx(static_cast<size_t>(B * S * Hq * D));
  const int64_t W = 2 * Hkv * D;
  o.algorithm = Algorithm::kReference;
  o.scale = c.scale;
  o.causal = c.causal;
  o.window_left = c.window_left;
  std::vector<float> slopes;
  if (c.position == Position::kAlibi) {
    slopes = alibi_slopes(Hq);
    o.alibi_slopes = slopes;
  }
  attention(
      TensorView<const float>(q.data(), {B, Hq, S, D},
                              {S * Hq * D, D, Hq * D, 1}),
      TensorView<const float>(kv.data(), {B, Hkv, S, D}, {S * W, D, W, 1}),
      TensorView<const float>(kv.data() + Hkv * D, {B, Hkv, S, D},
                              {S * W, D, W, 1}),
      TensorView<float>(ctx.data(), {B, Hq, S, D}, {S * Hq * D, D, Hq * D, 1}),
      o);
  std::vector<double> out;
  for (int64_t r = 0; r < B * S; ++r) {
    for (int64_t e = 0; e < E; ++e) {
      double acc = m.o_proj.bias.empty() ? 0.0 : m.o_proj.bias[e];
      for (int64_t i = 0; i < Hq * D; ++i) {
        acc += double(ctx[r * Hq * D + i]) * m.o_proj.weight[e * Hq * D + i];
      }
      out.push_back(acc);
    }
  }
  return out;
}

void randomize(MultiHeadAttention& m, std::mt19937& rng) {
  for (Linear* l : {&m.q_proj, &m.kv_proj, &m.o_proj}) {
    l->weight = randn(l->weight.size(), rng, 0.3f);
    l->bias = randn(l->bias.size(), rng, 0.1f);
  }
  m.relative_bias = randn(m.relative_bias.size(), rng);
}

TEST(NnMultiHeadAttention, MatchesItsCompositionOverConfigs) {
  std::mt19937 rng(3);
  struct Case {
    const char* name;
    AttentionConfig c;
    int64_t B, S;
  };
  const Case cases[] = {
      {"mha", {.d_model = 24, .num_heads = 3}, 2, 9},
      {"gqa causal odd D",
       {.d_model = 20,
        .num_heads = 4,
        .num_kv_heads = 2,
        .head_dim = 7,
        .causal = true},
       2,
       70},
      {"mqa alibi",
       {.d_model = 16,
        .num_heads = 4,
        .num_kv_heads = 1,
        .causal = true,
        .position = Position::kAlibi},
       1,
       65},
      {"window",
       {.d_model = 16, .num_heads = 2, .causal = true, .window_left = 5},
       2,
       33},
      {"no bias, scale",
       {.d_model = 16,
        .num_heads = 2,
        .qkv_bias = false,
        .out_bias = false,
        .scale = 0.3f},
       1,
       1},
  };
  for (const Case& k : cases) {
    MultiHeadAttention m(k.c);
    randomize(m, rng);
    const int64_t E = k.c.d_model;
    std::vector<float> x = randn(static_cast<size_t>(k.B * k.S * E), rng);
    std::vector<float> out(x.size(), std::nanf(""));
    m.forward(rows(x, k.B, k.S, E), rows(out, k.B, k.S, E));
    EXPECT_LT(rel_err(out, mha_by_parts(m, x, k.B, k.S, {})), 1e-5) << k.name;
  }
}

TEST(NnMultiHeadAttention, GqaEqualsMhaWithRepeatedKvWeights) {
  std::mt19937 rng(4);
  const int64_t E = 32, H = 4, KVH = 2, D = 8, B = 2, S = 17;
  MultiHeadAttention g(
      {.d_model = E, .num_heads = H, .num_kv_heads = KVH, .causal = true});
  randomize(g, rng);
  MultiHeadAttention m({.d_model = E, .num_heads = H, .causal = true});
  m.q_proj = g.q_proj;
  m.o_proj = g.o_proj;
  // Head h of the MHA gets KV head h / 2 of the GQA module, keys then values.
  for (int part = 0; part < 2; ++part) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t src = part * KVH * D + (h / (H / KVH)) * D;
      const int64_t dst = part * H * D + h * D;
      for (int64_t d = 0; d < D; ++d) {
        std::copy_n(g.kv_proj.weight.begin() + (src + d) * E, E,
                    m.kv_proj.weight.begin() + (dst + d) * E);
        m.kv_proj.bias[dst + d] = g.kv_proj.bias[src + d];
      }
    }
  }
  std::vector<float> x = randn(static_cast<size_t>(B * S * E), rng);
  std::vector<float> a(x.size()), b(x.size());
  g.forward(rows(x, B, S, E), rows(a, B, S, E));
  m.forward(rows(x, B, S, E), rows(b, B, S, E));
  std::vector<double> bd(b.begin(), b.end());
  EXPECT_LT(rel_err(a, bd), 1e-5);
}

// Prefill of a prefix then uneven chunks through a paged cache equals one
// causal forward, for every position scheme.
TEST(NnMultiHeadAttention, CacheDecodingEqualsPrefill) {
  std::mt19937 rng(5);
  const int64_t E = 24, B = 2, S = 40;
  for (const Position pos :
       {Position::kNone, Position::kRope, Position::kAlibi, Position::kT5}) {
    AttentionConfig c{.d_model = E,
                      .num_heads = 6,
                      .num_kv_heads = 3,
                      .causal = true,
                      .position = pos};
    c.t5 = {16, 20, false};
    MultiHeadAttention m(c);
    randomize(m, rng);
    std::vector<float> x = randn(static_cast<size_t>(B * S * E), rng);
    std::vector<float> want(x.size());
    m.forward(rows(x, B, S, E), rows(want, B, S, E));
    KVCacheOptions co;
    co.num_kv_heads = 3;
    co.head_dim = 4;
    co.max_sequences = B;
    co.max_tokens = S;
    co.page_size = 8;
    KVCache cache(co);
    const std::vector<int64_t> seqs{cache.add_sequence(), cache.add_sequence()};
    std::vector<float> got(x.size(), std::nanf(""));
    int64_t done = 0;
    for (const int64_t n :
         {int64_t{23}, int64_t{1}, int64_t{9}, int64_t{1}, int64_t{6}}) {
      std::vector<float> xs(static_cast<size_t>(B * n * E)), ys(xs.size());
      for (int64_t b = 0; b < B; ++b) {
        std::copy_n(x.begin() + (b * S + done) * E, n * E,
                    xs.begin() + b * n * E);
      }
      m.forward(rows(xs, B, n, E), rows(ys, B, n, E),
                {.cache = &cache, .sequences = seqs});
      for (int64_t b = 0; b < B; ++b) {
        std::copy_n(ys.begin() + b * n * E, n * E,
                    got.begin() + (b * S + done) * E);
      }
      done += n;
    }
    ASSERT_EQ(done, S);
    std::vector<double> wd(want.begin(), want.end());
    EXPECT_LT(rel_err(got, wd), 1e-5) << "position " << static_cast<int>(pos);
  }
}

TEST(NnMultiHeadAttention, RejectsBadArguments) {
  expect_error(
      [] {
        MultiHeadAttention({.d_model = 8, .num_heads = 3, .num_kv_heads = 2});
      },
      "num_kv_heads must divide num_heads");
  expect_error([] { MultiHeadAttention({.d_model = 10, .num_heads = 4}); },
               "head_dim unset");
  MultiHeadAttention m({.d_model = 8, .num_heads = 2});
  std::vector<float> x(16), mem(24);
  expect_error([&] { m.forward(rows(x, 1, 2, 8), rows(x, 1, 2, 8)); },
               "out may alias x only with accumulate");
  expect_error([&] { m.forward(rows(x, 1, 2, 8), rows(mem, 1, 3, 8)); },
               "out: must have 2 rows");
  const MemoryKV kv = m.project_memory(rows(mem, 1, 3, 8));
  std::vector<float> x2(32), out2(32);
  expect_error(
      [&] {
        m.forward(rows(x2, 2, 2, 8), rows(out2, 2, 2, 8), {.memory_kv = &kv});
      },
      "memory_kv was not projected");
  KVCacheOptions co;
  co.num_kv_heads = 2;
  co.head_dim = 4;
  co.max_tokens = 4;
  co.rope = RopeOptions{};
  KVCache cache(co);
  const std::vector<int64_t> seq{cache.add_sequence()};
  std::vector<float> out(16);
  expect_error(
      [&] {
        m.forward(rows(x, 1, 2, 8), rows(out, 1, 2, 8),
                  {.cache = &cache, .sequences = seq});
      },
      "must not rotate keys");
}

TEST(NnSample, GreedyTopKTopPAndTheDistribution) {
  const std::vector<float> logits{0.5f, 2.0f, 2.0f, -1.0f, 1.0f};
  EXPECT_EQ(sample(logits, {}, 0), 1);  // argmax, lowest id on ties
  for (uint64_t step = 0; step < 50; ++step) {
    EXPECT_EQ(
        sample(logits, {.temperature = 1.0f, .top_k = 1, .seed = 9}, step), 1);
    const int64_t t =
        sample(logits, {.temperature = 1.0f, .top_k = 2, .seed = 9}, step);
    EXPECT_TRUE(t == 1 || t == 2);
    EXPECT_EQ(
        sample(logits, {.temperature = 1.0f, .top_p = 0.01f, .seed = 9}, step),
        1);
  }
  // Frequencies over many steps within 5 sigma of softmax(logits / T).
  const float T = 0.7f;
  const int n = 20000;
  std::vector<int> count(logits.size());
  for (int s = 0; s < n; ++s)
    ++count[sample(logits, {.temperature = T, .seed = 3}, s)];
  double z = 0;
  for (float l : logits) z += std::exp(l / T);
  for (size_t v = 0; v < logits.size(); ++v) {
    const double p = std::exp(logits[v] / T) / z;
    EXPECT_NEAR(count[v], n * p, 5 * std::sqrt(n * p * (1 - p)) + 1)
        << "id " << v;
  }
  // Deterministic in (seed, step).
  EXPECT_EQ(sample(logits, {.temperature = 1.0f, .seed = 4}, 7),
            sample(logits, {.temperature = 1.0f, .seed = 4}, 7));
  expect_error([&] { sample(logits, {.temperature = -1.0f}, 0); },
               "temperature");
  expect_error([&] { sample(logits, {.temperature = 1.0f, .top_p = 0.0f}, 0); },
               "top_p");
  expect_error([&] { sample({}, {}, 0); }, "logits is empty");
}

ModelConfig tiny_decoder(Position pos) {
  ModelConfig c;
  c.vocab_size = 23;
  c.num_layers = 2;
  c.block.attention = {.d_model = 16,
                       .num_heads = 4,
                       .num_kv_heads = 2,
                       .causal = true,
                       .position = pos};
  c.block.mlp = {.d_model = 16,
                 .hidden = 24,
                 .activation = Activation::kSilu,
                 .gated = true,
                 .bias = false};
  c.block.norm = NormKind::kRMSNorm;
  c.block.norm_bias = false;
  return c;
}

void randomize(TransformerModel& m, std::mt19937& rng) {
  m.token_embedding.weight = randn(m.token_embedding.weight.size(), rng);
  m.position_embedding.weight =
      randn(m.position_embedding.weight.size(), rng, 0.3f);
  for (TransformerBlock& b : m.layers) {
    randomize(b.self_attn, rng);
    if (b.cross_attn) randomize(*b.cross_attn, rng);
    b.mlp.up.weight = randn(b.mlp.up.weight.size(), rng, 0.3f);
    b.mlp.down.weight = randn(b.mlp.down.weight.size(), rng, 0.3f);
  }
  m.lm_head.weight = randn(m.lm_head.weight.size(), rng);
}

// Greedy continuation by recomputing the whole sequence each step.
std::vector<int64_t> greedy_by_recompute(const TransformerModel& m,
                                         std::vector<int64_t> seq, int64_t n) {
  const int64_t E = m.d_model(), V = m.config().vocab_size;
  std::vector<int64_t> out;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t L = static_cast<int64_t>(seq.size());
    std::vector<float> h(static_cast<size_t>(L * E)),
        logits(static_cast<size_t>(V));
    m.forward(seq, rows(h, 1, L, E));
    m.logits(TensorView<const float>::bhsd(h.data() + (L - 1) * E, 1, 1, 1, E),
             rows(logits, 1, 1, V));
    out.push_back(sample(logits, {}, 0));
    seq.push_back(out.back());
  }
  return out;
}

TEST(NnGenerate, BatchedPromptsOfMixedLengthsEqualEachAlone) {
  std::mt19937 rng(6);
  for (const Position pos : {Position::kRope, Position::kAlibi}) {
    TransformerModel m(tiny_decoder(pos));
    randomize(m, rng);
    const std::vector<std::vector<int64_t>> prompts{
        {1, 2, 3, 4, 5, 6, 7}, {9}, {4, 4, 8}};
    const auto batched = generate(m, prompts, {.max_new_tokens = 6});
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(batched[i], greedy_by_recompute(m, prompts[i], 6))
          << "prompt " << i;
    }
    // Sampled: same seed, same tokens; a user cache gets its sequences back.
    KVCache cache = m.make_cache(3, 16, 4);
    const GenerateOptions o{
        .max_new_tokens = 5,
        .sampling = {
            .temperature = 0.9f, .top_k = 5, .top_p = 0.9f, .seed = 11}};
    EXPECT_EQ(generate(m, prompts, o, &cache), generate(m, prompts, o));
    EXPECT_EQ(cache.num_sequences(), 0);
    // eos stops a prompt early.
    const int64_t first = batched[0][0];
    const auto stopped =
        generate(m, prompts, {.max_new_tokens = 6, .eos = first});
    EXPECT_EQ(stopped[0], std::vector<int64_t>{first});
  }
}

// NaN weights make NaN (rule 8), and generation stops at the first place
// they appear with an error naming it, instead of sampling from NaN (or,
// before, from zeros: a NaN query row used to look fully masked).
TEST(NnGenerate, NonFiniteWeightsStopWithTheLayerNamed) {
  std::mt19937 rng(8);
  TransformerModel m(tiny_decoder(Position::kRope));
  randomize(m, rng);
  const std::vector<std::vector<int64_t>> prompts{{1, 2, 3}};
  for (float& w : m.layers[1].self_attn.q_proj.weight) w = NAN;
  expect_error([&] { generate(m, prompts, {.max_new_tokens = 3}); },
               "layer 1 of 2 produced a non-finite value");
  randomize(m, rng);
  m.token_embedding.weight[2 * 16 + 5] = INFINITY;  // token 2's embedding
  expect_error(
      [&] { generate(m, prompts, {.max_new_tokens = 3}); },
      "the embeddings produced a non-finite value: hidden[0, 0, 1, 5]");
  randomize(m, rng);
  for (float& w : m.lm_head.weight) w = 3e38f;  // logits overflow
  expect_error([&] { generate(m, prompts, {.max_new_tokens = 3}); },
               "the LM head produced a non-finite logit");
}

// A cache too large for the request is blamed on max_new_tokens, the
// argument the caller chose, not on KVCacheOptions::max_tokens.
TEST(NnGenerate, AnImpossibleCacheNamesMaxNewTokens) {
  ModelConfig c = tiny_decoder(Position::kRope);
  c.num_layers = 8;
  c.block.attention.d_model = c.block.mlp.d_model = 256;
  c.block.attention.num_heads = c.block.attention.num_kv_heads = 8;
  const TransformerModel m(c);
  const std::vector<std::vector<int64_t>> prompts{{1, 2}};
  expect_error(
      [&] { generate(m, prompts, {.max_new_tokens = int64_t{1} << 30}); },
      "tokens (max_new_tokens) cannot be made");
}

TEST(NnGenerate, EncoderDecoderEqualsRecomputation) {
  std::mt19937 rng(7);
  // T5-like: RMSNorm, no biases, relative buckets, unscaled scores, tied head.
  ModelConfig enc;
  enc.vocab_size = 19;
  enc.num_layers = 2;
  enc.block.attention = {.d_model = 16,
                         .num_heads = 2,
                         .qkv_bias = false,
                         .out_bias = false,
                         .scale = 1.0f,
                         .position = Position::kT5};
  enc.block.attention.t5 = {8, 16, true};
  enc.block.mlp = {.d_model = 16,
                   .hidden = 32,
                   .activation = Activation::kRelu,
                   .bias = false};
  enc.block.norm = NormKind::kRMSNorm;
  enc.block.norm_bias = false;
  enc.lm_head = false;
  ModelConfig dec = enc;
  dec.block.attention.causal = true;
  dec.block.attention.t5.bidirectional = false;
  dec.block.cross = AttentionConfig{.d_model = 16,
                                    .num_heads = 2,
                                    .qkv_bias = false,
                                    .out_bias = false,
                                    .scale = 1.0f};
  dec.lm_head = true;
  dec.tied_lm_head = true;
  dec.logit_scale = 0.25f;
  EncoderDecoderModel m{TransformerModel(enc), TransformerModel(dec)};
  randomize(m.encoder, rng);
  randomize(m.decoder, rng);
  m.decoder.token_embedding.weight = m.encoder.token_embedding.weight;
  const std::vector<std::vector<int64_t>> inputs{{3, 1, 4, 1, 5, 9, 2, 6},
                                                 {7, 7}};
  const auto got = generate(m, inputs, 0, {.max_new_tokens = 5});
  for (size_t i = 0; i < inputs.size(); ++i) {
    const int64_t L = static_cast<int64_t>(inputs[i].size()), E = 16, V = 19;
    std::vector<float> mem(static_cast<size_t>(L * E));
    m.encoder.forward(inputs[i], rows(mem, 1, L, E));
    std::vector<int64_t> seq{0}, want;
    for (int t = 0; t < 5; ++t) {
      const int64_t n = static_cast<int64_t>(seq.size());
      std::vector<float> h(static_cast<size_t>(n * E)), logits(V);
      m.decoder.forward(seq, rows(h, 1, n, E), {.memory = rows(mem, 1, L, E)});
      m.decoder.logits(
          TensorView<const float>::bhsd(h.data() + (n - 1) * E, 1, 1, 1, E),
          rows(logits, 1, 1, V));
      want.push_back(sample(logits, {}, 0));
      seq.push_back(want.back());
    }
    EXPECT_EQ(got[i], want) << "input " << i;
  }
}

TEST(NnModel, RejectsBadTokensAndPositions) {
  ModelConfig c = tiny_decoder(Position::kNone);
  c.absolute = AbsolutePosition::kLearned;
  c.max_positions = 4;
  TransformerModel m(c);
  std::vector<float> h(5 * 16);
  const std::vector<int64_t> bad{1, 2, 23};
  expect_error([&] { m.forward(bad, rows(h, 1, 3, 16)); },
               "tokens[2] = 23 is outside [0, 23)");
  const std::vector<int64_t> five{1, 2, 3, 4, 5};
  expect_error([&] { m.forward(five, rows(h, 1, 5, 16)); },
               "exceed max_positions 4");
  expect_error([&] { m.forward(five, rows(h, 1, 4, 16)); },
               "tokens must hold B * S = 4");
}

TEST(NnCheckpoint, ConfigErrorsNameTheKey) {
  expect_error([] { config_from_json("{"); }, "config.json: not valid JSON");
  expect_error([] { config_from_json(R"({"model_type": "opt"})"); },
               "model_type \"opt\" is not supported");
  expect_error(
      [] { config_from_json(R"({"model_type": "gpt2", "n_embd": 8})"); },
      "missing \"vocab_size\"");
  expect_error(
      [] {
        config_from_json(
            R"({"model_type": "llama", "hidden_size": 8, "vocab_size": 4,
          "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4,
          "rope_scaling": {"rope_type": "yarn"}})");
      },
      "rope_scaling type \"yarn\"");
  // Float keys are range-checked under their own names, not by the layer
  // they would configure.
  expect_error(
      [] {
        config_from_json(
            R"({"model_type": "llama", "hidden_size": 8, "vocab_size": 4,
          "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4,
          "rms_norm_eps": -1})");
      },
      "\"rms_norm_eps\" must be a finite number in [0, 1], got -1");
  expect_error(
      [] {
        config_from_json(
            R"({"model_type": "llama", "hidden_size": 8, "vocab_size": 4,
          "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4,
          "rope_theta": 0})");
      },
      "\"rope_theta\" must be a finite number");
  expect_error(
      [] { config_from_json(R"({"model_type": "bert", "hidden_size": "8"})"); },
      "\"hidden_size\" must be an integer");
  expect_error(
      [] {
        config_from_json(
            R"({"model_type": "gpt2", "n_embd": 8, "vocab_size": 18446744073709551615})");
      },
      "\"vocab_size\" must be in [0, 16777216]");
  expect_error(
      [] {
        config_from_json(
            R"({"model_type": "gpt2", "n_embd": 8, "vocab_size": -3})");
      },
      "\"vocab_size\" must be in");
  Family f;
  const ModelConfig c = config_from_json(
      R"({"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": 8,
          "n_layer": 1, "n_head": 2})",
      &f);
  EXPECT_EQ(f, Family::kGpt2);
  EXPECT_EQ(c.block.mlp.hidden, 32);
  EXPECT_TRUE(c.tied_lm_head);
}

TEST(NnCheckpoint, MissingAndMisshapenTensorsAreErrors) {
  const ModelConfig c = config_from_json(
      R"({"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": 8,
          "n_layer": 1, "n_head": 2})");
  TransformerModel m(c);
  std::vector<float> wte(80), wpe(7 * 8);
  const std::vector<safetensors::Entry> entries{{"wte.weight", {10, 8}, wte},
                                                {"wpe.weight", {7, 8}, wpe}};
  const safetensors::File f =
      safetensors::File::parse(safetensors::serialize(entries), "gpt2");
  const safetensors::File* files[] = {&f};
  expect_error([&] { load_weights(m, Family::kGpt2, files); }, "wpe.weight");
  const std::vector<safetensors::Entry> only{{"wte.weight", {10, 8}, wte}};
  const safetensors::File g =
      safetensors::File::parse(safetensors::serialize(only), "gpt2");
  const safetensors::File* files2[] = {&g};
  expect_error([&] { load_weights(m, Family::kGpt2, files2); },
               "the checkpoint has no tensor \"wpe.weight\"");
}

// weight_floats counts what the constructor allocates (learned weights:
// the computed tables are private), over configs of every family's shape.
TEST(NnCheckpoint, WeightFloatsCountsTheModel) {
  const auto allocated = [](const TransformerModel& m) {
    double n = static_cast<double>(
        m.token_embedding.weight.size() + m.position_embedding.weight.size() +
        m.type_embedding.weight.size() + m.lm_head.weight.size());
    const auto norm = [&](const Norm& x) {
      n += static_cast<double>(x.weight.size() + x.bias.size());
    };
    const auto attention = [&](const MultiHeadAttention& a) {
      for (const Linear* l : {&a.q_proj, &a.kv_proj, &a.o_proj})
        n += static_cast<double>(l->weight.size() + l->bias.size());
      n += static_cast<double>(a.relative_bias.size());
    };
    if (m.embedding_norm) norm(*m.embedding_norm);
    if (m.final_norm) norm(*m.final_norm);
    for (const TransformerBlock& b : m.layers) {
      attention(b.self_attn);
      if (b.cross_attn) attention(*b.cross_attn);
      for (const Linear* l : {&b.mlp.up, &b.mlp.down})
        n += static_cast<double>(l->weight.size() + l->bias.size());
      norm(b.attn_norm);
      norm(b.mlp_norm);
      if (b.cross_attn) norm(b.cross_norm);
    }
    return n;
  };
  std::vector<ModelConfig> configs = {
      tiny_decoder(Position::kRope), tiny_decoder(Position::kAlibi),
      config_from_json(R"({"model_type": "gpt2", "vocab_size": 10,
          "n_positions": 8, "n_embd": 8, "n_layer": 2, "n_head": 2})"),
      config_from_json(R"({"model_type": "bert", "vocab_size": 11,
          "hidden_size": 12, "num_hidden_layers": 2, "num_attention_heads": 3,
          "intermediate_size": 20, "max_position_embeddings": 9})"),
      config_from_json(R"({"model_type": "llama", "vocab_size": 13,
          "hidden_size": 16, "num_hidden_layers": 3, "num_attention_heads": 4,
          "num_key_value_heads": 2, "intermediate_size": 24,
          "attention_bias": true, "tie_word_embeddings": false})")};
  ModelConfig t5 = tiny_decoder(Position::kT5);
  t5.block.cross = t5.block.attention;
  t5.block.cross->causal = false;
  t5.block.cross->position = Position::kNone;
  configs.push_back(t5);
  for (const ModelConfig& c : configs) {
    const TransformerModel m(c);
    EXPECT_EQ(TransformerModel::weight_floats(c, true), allocated(m));
  }
}

using TensorShapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// A safetensors file of the given tensors, every value 0.01.
void save_constant_checkpoint(const std::string& path,
                              const TensorShapes& shapes) {
  std::vector<std::vector<float>> data;
  std::vector<safetensors::Entry> entries;
  for (const auto& [name, shape] : shapes) {
    int64_t numel = 1;
    for (int64_t e : shape) numel *= e;
    data.emplace_back(static_cast<size_t>(numel), 0.01f);
  }
  for (size_t i = 0; i < shapes.size(); ++i)
    entries.push_back({shapes[i].first, shapes[i].second, data[i]});
  safetensors::save(path, entries);
}

// load_model compares the config with the files before allocating, and
// refuses tensors the model the config describes has no place for.
TEST(NnCheckpoint, ConfigMustMatchTheFilesTensors) {
  const std::string dir = ::testing::TempDir();
  const std::string weights = dir + "/attn_nn_checkpoint.safetensors";
  const std::string config = dir + "/attn_nn_checkpoint.json";
  const auto write_config = [&](const std::string& text) {
    std::FILE* f = std::fopen(config.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  // A real two-layer GPT-2 checkpoint (with the causal-mask buffers public
  // checkpoints carry, which loading skips by design).
  const ModelConfig c2 = config_from_json(
      R"({"model_type": "gpt2", "vocab_size": 10, "n_positions": 8,
          "n_embd": 8, "n_layer": 2, "n_head": 2})");
  TensorShapes shapes = {{"wte.weight", {10, 8}},
                         {"wpe.weight", {8, 8}},
                         {"ln_f.weight", {8}},
                         {"ln_f.bias", {8}}};
  for (int l = 0; l < 2; ++l) {
    const std::string h = "h." + std::to_string(l) + ".";
    for (const auto& [n, sh] : TensorShapes{{"ln_1.weight", {8}},
                                            {"ln_1.bias", {8}},
                                            {"attn.c_attn.weight", {8, 24}},
                                            {"attn.c_attn.bias", {24}},
                                            {"attn.c_proj.weight", {8, 8}},
                                            {"attn.c_proj.bias", {8}},
                                            {"ln_2.weight", {8}},
                                            {"ln_2.bias", {8}},
                                            {"mlp.c_fc.weight", {8, 32}},
                                            {"mlp.c_fc.bias", {32}},
                                            {"mlp.c_proj.weight", {32, 8}},
                                            {"mlp.c_proj.bias", {8}},
                                            {"attn.bias", {1, 1, 8, 8}}}) {
      shapes.push_back({h + n, sh});
    }
  }
  save_constant_checkpoint(weights, shapes);
  const std::vector<std::string> files{weights};
  const std::string gpt2 =
      R"({"model_type": "gpt2", "vocab_size": 10, "n_positions": 8,
          "n_embd": 8, "n_head": 2, "n_layer": )";
  write_config(gpt2 + "2}");
  const TransformerModel m = load_model(config, files);
  EXPECT_EQ(m.layers.size(), 2u);
  EXPECT_EQ(TransformerModel::weight_floats(c2, true),
            TransformerModel::weight_floats(m.config(), true));
  // Sizes far beyond the file: refused before any allocation.
  write_config(R"({"model_type": "gpt2", "vocab_size": 16777216,
      "n_positions": 8, "n_embd": 16777216, "n_head": 2, "n_layer": 2})");
  expect_error([&] { load_model(config, files); },
               "weights, but the checkpoint's tensors hold");
  write_config(gpt2 + "16777216}");
  expect_error([&] { load_model(config, files); }, "describes a model of");
  // One layer of a two-layer checkpoint: the second layer is left over.
  write_config(gpt2 + "1}");
  expect_error([&] { load_model(config, files); },
               "12 tensor(s) of the checkpoint are not used");
  expect_error([&] { load_model(config, files); }, "\"h.1.attn.c_attn.bias\"");
  expect_error([&] { load_model(config, files); }, "layer count, 1,");
  EXPECT_EQ(load_model(config, files, {.allow_unused = true}).layers.size(),
            1u);
  // A Llama config that ties the LM head, over a file with its own head.
  const std::string llama = dir + "/attn_nn_llama.safetensors";
  const TensorShapes lshapes = {
      {"model.embed_tokens.weight", {10, 8}},
      {"model.norm.weight", {8}},
      {"lm_head.weight", {10, 8}},
      {"model.layers.0.input_layernorm.weight", {8}},
      {"model.layers.0.self_attn.q_proj.weight", {8, 8}},
      {"model.layers.0.self_attn.k_proj.weight", {8, 8}},
      {"model.layers.0.self_attn.v_proj.weight", {8, 8}},
      {"model.layers.0.self_attn.o_proj.weight", {8, 8}},
      {"model.layers.0.post_attention_layernorm.weight", {8}},
      {"model.layers.0.mlp.gate_proj.weight", {12, 8}},
      {"model.layers.0.mlp.up_proj.weight", {12, 8}},
      {"model.layers.0.mlp.down_proj.weight", {8, 12}},
      {"model.layers.0.self_attn.rotary_emb.inv_freq", {1}}};
  save_constant_checkpoint(llama, lshapes);
  const std::vector<std::string> lfiles{llama};
  const std::string llama_config =
      R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
          "num_hidden_layers": 1, "num_attention_heads": 2,
          "intermediate_size": 12, "tie_word_embeddings": )";
  write_config(llama_config + "false}");
  EXPECT_EQ(load_model(config, lfiles).layers.size(), 1u);
  write_config(llama_config + "true}");
  expect_error([&] { load_model(config, lfiles); },
               "the config ties the LM head to the token embeddings");
  std::remove(llama.c_str());
  std::remove(weights.c_str());
  std::remove(config.c_str());
}

TEST(NnPatchEmbedding, RejectsWrongImages) {
  PatchEmbedding p(
      {.image_size = 8, .patch_size = 4, .channels = 3, .d_model = 4});
  EXPECT_EQ(p.tokens(), 5);
  std::vector<float> img(2 * 3 * 8 * 8), out(2 * 5 * 4);
  expect_error(
      [&] {
        p.forward(TensorView<const float>::bhsd(img.data(), 2, 3, 8, 7),
                  rows(out, 2, 5, 4));
      },
      "images must be [B, 3, 8, 8]");
  expect_error([] { PatchEmbedding({.image_size = 10, .patch_size = 4}); },
               "patch_size must divide image_size");
}

}  // namespace
}  // namespace attn::nn
