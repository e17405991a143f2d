// attn::nn against PyTorch: tests/torch_parity.py writes random weights,
// inputs and torch's outputs (ctest runs it first, as a fixture); each test
// loads one case, runs attn::nn and requires (a missing file fails)
//   max |attn - torch| <= 1e-5 * max |torch|      (float32 both sides).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attn/nn/layers.h"
#include "attn/nn/model.h"
#include "attn/safetensors.h"

namespace attn::nn {
namespace {

constexpr double kTolerance = 1e-5;

// ctest writes the directory with tests/torch_parity.py first (a fixture);
// ATTN_TORCH_PARITY points elsewhere.
std::string parity_dir() {
  const char* env = std::getenv("ATTN_TORCH_PARITY");
  return env != nullptr ? env : ATTN_TORCH_PARITY_DIR;
}

class TorchCase {
 public:
  explicit TorchCase(const std::string& name) : name_(name) {
    file_ = safetensors::File::load(parity_dir() + "/cases.safetensors");
    meta_ = nlohmann::json::parse(file_.metadata().at(name));
  }
  std::vector<float> get(const std::string& t) const {
    return file_.to_float(name_ + "/" + t);
  }
  // Copies rows [r0, r0 + n) of a [rows, cols] tensor.
  std::vector<float> rows(const std::string& t, int64_t r0, int64_t n) const {
    const std::vector<float> all = get(t);
    const int64_t cols = file_.info(name_ + "/" + t).shape.back();
    return {all.begin() + r0 * cols, all.begin() + (r0 + n) * cols};
  }
  int64_t i(const char* k) const { return meta_.at(k).get<int64_t>(); }
  const nlohmann::json& meta() const { return meta_; }

 private:
  std::string name_;
  safetensors::File file_;
  nlohmann::json meta_;
};

TensorView<float> rows_view(std::vector<float>& v, int64_t B, int64_t S,
                            int64_t E) {
  EXPECT_EQ(v.size(), static_cast<size_t>(B * S * E));
  return TensorView<float>::bhsd(v.data(), B, 1, S, E);
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double err = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << what << " element " << i;
    err = std::max(err, std::abs(double(got[i]) - want[i]));
    scale = std::max(scale, std::abs(double(want[i])));
  }
  ASSERT_GT(scale, 0.0) << what;
  EXPECT_LE(err, kTolerance * scale)
      << what << ": max abs error " << err << ", output scale " << scale
      << " (relative " << err / scale << ")";
}

// torch.nn.MultiheadAttention's fused in_proj [3E, E] into q_proj and
// kv_proj (the same rows, contiguous).
void load_in_proj(const TorchCase& c, const std::string& prefix,
                  MultiHeadAttention& m, int64_t E) {
  m.q_proj.weight = c.rows(prefix + "in_proj_weight", 0, E);
  m.kv_proj.weight = c.rows(prefix + "in_proj_weight", E, 2 * E);
  const std::vector<float> b = c.get(prefix + "in_proj_bias");
  m.q_proj.bias.assign(b.begin(), b.begin() + E);
  m.kv_proj.bias.assign(b.begin() + E, b.end());
  m.o_proj.weight = c.get(prefix + "out_proj.weight");
  m.o_proj.bias = c.get(prefix + "out_proj.bias");
}

// torch.nn.TransformerEncoderLayer / DecoderLayer parameters under `p`
// into a block: self_attn, linear1/linear2, and norm1 .. normN in the
// order of `norms`.
void load_torch_layer(const TorchCase& c, const std::string& p,
                      TransformerBlock& b, int64_t E,
                      std::initializer_list<Norm*> norms) {
  load_in_proj(c, p + "self_attn.", b.self_attn, E);
  if (b.cross_attn) load_in_proj(c, p + "multihead_attn.", *b.cross_attn, E);
  b.mlp.up.weight = c.get(p + "linear1.weight");
  b.mlp.up.bias = c.get(p + "linear1.bias");
  b.mlp.down.weight = c.get(p + "linear2.weight");
  b.mlp.down.bias = c.get(p + "linear2.bias");
  int k = 1;
  for (Norm* n : norms) {
    n->weight = c.get(p + "norm" + std::to_string(k) + ".weight");
    n->bias = c.get(p + "norm" + std::to_string(k) + ".bias");
    ++k;
  }
}

std::vector<float> poisoned(size_t n) {
  return std::vector<float>(n, std::nanf(""));
}

TEST(TorchParity, MultiheadAttentionSelf) {
  TorchCase c("mha_self");
  const int64_t E = c.i("E"), H = c.i("H"), B = c.i("B"), S = c.i("S");
  const auto lengths = c.meta().at("lengths").get<std::vector<int64_t>>();
  MultiHeadAttention m({.d_model = E, .num_heads = H});
  load_in_proj(c, "", m, E);
  std::vector<float> x = c.get("x");
  const TensorView<const float> xv = rows_view(x, B, S, E);

  std::vector<float> out = poisoned(x.size());
  m.forward(xv, rows_view(out, B, S, E), {.key_lengths = lengths});
  expect_close(out, c.get("out_pad"), "key_padding_mask as key lengths");

  // The same padding as a boolean mask [B, 1, 1, S] broadcast over heads
  // and rows.
  std::vector<uint8_t> keep(static_cast<size_t>(B * S));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j < S; ++j) keep[b * S + j] = j < lengths[b];
  }
  const TensorView<const bool> mask(reinterpret_cast<const bool*>(keep.data()),
                                    {B, 1, 1, S}, {S, 0, 0, 1});
  out = poisoned(x.size());
  m.forward(xv, rows_view(out, B, S, E), {.mask = mask});
  expect_close(out, c.get("out_pad"), "key_padding_mask as a boolean mask");

  // Causal attn_mask: the module's causal flag.
  AttentionConfig causal{.d_model = E, .num_heads = H, .causal = true};
  MultiHeadAttention mc(causal);
  load_in_proj(c, "", mc, E);
  out = poisoned(x.size());
  mc.forward(xv, rows_view(out, B, S, E));
  expect_close(out, c.get("out_causal"), "causal attn_mask");

  // Additive float attn_mask [S, S] broadcast over batch and heads, with the
  // padding.
  std::vector<float> bias = c.get("bias");
  const TensorView<const float> bv(bias.data(), {1, 1, S, S}, {0, 0, S, 1});
  out = poisoned(x.size());
  m.forward(xv, rows_view(out, B, S, E), {.key_lengths = lengths, .bias = bv});
  expect_close(out, c.get("out_bias"), "additive attn_mask + padding");
}

// Concatenates row blocks of torch's fused or split projection weights.
std::vector<float> concat(std::initializer_list<std::vector<float>> parts) {
  std::vector<float> all;
  for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
  return all;
}

std::vector<float> slice(const std::vector<float>& v, size_t begin, size_t n) {
  return {v.begin() + begin, v.begin() + begin + n};
}

TEST(TorchParity, MultiheadAttentionSelfGradients) {
  TorchCase c("mha_grad_self");
  const int64_t E = c.i("E"), H = c.i("H"), B = c.i("B"), S = c.i("S");
  const auto lengths = c.meta().at("lengths").get<std::vector<int64_t>>();
  MultiHeadAttention m({.d_model = E, .num_heads = H, .causal = true});
  load_in_proj(c, "", m, E);
  std::vector<float> x = c.get("x"), dout = c.get("dout");
  std::vector<float> out = poisoned(x.size()), dx = poisoned(x.size());
  AttentionTape tape;
  const AttentionInputs in{.key_lengths = lengths};
  m.forward_train(rows_view(x, B, S, E), rows_view(out, B, S, E), tape, in);
  expect_close(out, c.get("out"), "forward_train output");
  AttentionGrads g;
  m.backward(rows_view(x, B, S, E), rows_view(dout, B, S, E), tape,
             rows_view(dx, B, S, E), g, in);
  expect_close(dx, c.get("dx"), "dx");
  const std::vector<float> dw = c.get("d_in_proj_weight"),
                           db = c.get("d_in_proj_bias");
  expect_close(g.q_weight, slice(dw, 0, E * E), "dWq");
  expect_close(g.kv_weight, slice(dw, E * E, 2 * E * E), "dWk|dWv");
  expect_close(g.q_bias, slice(db, 0, E), "dbq");
  expect_close(g.kv_bias, slice(db, E, 2 * E), "dbk|dbv");
  expect_close(g.o_weight, c.get("d_out_proj.weight"), "dWo");
  expect_close(g.o_bias, c.get("d_out_proj.bias"), "dbo");
}

TEST(TorchParity, MultiheadAttentionCrossGradients) {
  TorchCase c("mha_grad_cross");
  const int64_t E = c.i("E"), H = c.i("H"), B = c.i("B"), S = c.i("S"),
                L = c.i("L"), KD = c.i("KD");
  MultiHeadAttention m({.d_model = E, .num_heads = H, .kv_dim = KD});
  m.q_proj.weight = c.get("q_proj_weight");
  m.kv_proj.weight = concat({c.get("k_proj_weight"), c.get("v_proj_weight")});
  const std::vector<float> b = c.get("in_proj_bias");
  m.q_proj.bias = slice(b, 0, E);
  m.kv_proj.bias = slice(b, E, 2 * E);
  m.o_proj.weight = c.get("out_proj.weight");
  m.o_proj.bias = c.get("out_proj.bias");
  std::vector<float> x = c.get("x"), mem = c.get("memory"),
                     dout = c.get("dout");
  std::vector<float> out = poisoned(x.size()), dx = poisoned(x.size()),
                     dmem = poisoned(mem.size());
  const AttentionInputs in{.memory = rows_view(mem, B, L, KD)};
  AttentionTape tape;
  m.forward_train(rows_view(x, B, S, E), rows_view(out, B, S, E), tape, in);
  AttentionGrads g;
  m.backward(rows_view(x, B, S, E), rows_view(dout, B, S, E), tape,
             rows_view(dx, B, S, E), g, in, rows_view(dmem, B, L, KD));
  expect_close(dx, c.get("dx"), "dx");
  expect_close(dmem, c.get("dmemory"), "dmemory");
  expect_close(g.q_weight, c.get("d_q_proj_weight"), "dWq");
  expect_close(g.kv_weight,
               concat({c.get("d_k_proj_weight"), c.get("d_v_proj_weight")}),
               "dWk|dWv");
  const std::vector<float> db = c.get("d_in_proj_bias");
  expect_close(g.q_bias, slice(db, 0, E), "dbq");
  expect_close(g.kv_bias, slice(db, E, 2 * E), "dbk|dbv");
  expect_close(g.o_weight, c.get("d_out_proj.weight"), "dWo");
  expect_close(g.o_bias, c.get("d_out_proj.bias"), "dbo");
}

TEST(TorchParity, LlamaAttentionGradients) {
  TorchCase c("llama_attention_grad");
  const int64_t E = c.i("E"), H = c.i("H"), KVH = c.i("KVH"), D = c.i("D"),
                B = c.i("B"), S = c.i("S");
  AttentionConfig cfg{.d_model = E,
                      .num_heads = H,
                      .num_kv_heads = KVH,
                      .head_dim = D,
                      .qkv_bias = false,
                      .out_bias = false,
                      .causal = true,
                      .position = Position::kRope};
  cfg.rope.theta = c.meta().at("theta").get<double>();
  MultiHeadAttention m(cfg);
  m.q_proj.weight = c.get("q");
  m.kv_proj.weight = concat({c.get("k"), c.get("v")});
  m.o_proj.weight = c.get("o");
  std::vector<float> x = c.get("x"), dout = c.get("dout");
  std::vector<float> out = poisoned(x.size()), dx = poisoned(x.size());
  AttentionTape tape;
  m.forward_train(rows_view(x, B, S, E), rows_view(out, B, S, E), tape);
  AttentionGrads g;
  m.backward(rows_view(x, B, S, E), rows_view(dout, B, S, E), tape,
             rows_view(dx, B, S, E), g);
  expect_close(dx, c.get("dx"), "dx");
  expect_close(g.q_weight, c.get("d_q"), "dWq");
  expect_close(g.kv_weight, concat({c.get("d_k"), c.get("d_v")}), "dWk|dWv");
  expect_close(g.o_weight, c.get("d_o"), "dWo");
  EXPECT_TRUE(g.q_bias.empty() && g.kv_bias.empty() && g.o_bias.empty());
}

TEST(TorchParity, MultiheadAttentionCross) {
  TorchCase c("mha_cross");
  const int64_t E = c.i("E"), H = c.i("H"), B = c.i("B"), S = c.i("S"),
                L = c.i("L"), KD = c.i("KD");
  MultiHeadAttention m({.d_model = E, .num_heads = H, .kv_dim = KD});
  m.q_proj.weight = c.get("q_proj_weight");
  m.kv_proj.weight = c.get("k_proj_weight");
  const std::vector<float> wv = c.get("v_proj_weight");
  m.kv_proj.weight.insert(m.kv_proj.weight.end(), wv.begin(), wv.end());
  const std::vector<float> b = c.get("in_proj_bias");
  m.q_proj.bias.assign(b.begin(), b.begin() + E);
  m.kv_proj.bias.assign(b.begin() + E, b.end());
  m.o_proj.weight = c.get("out_proj.weight");
  m.o_proj.bias = c.get("out_proj.bias");

  std::vector<float> x = c.get("x"), mem = c.get("memory");
  const std::vector<float> keepf = c.get("keep");
  std::vector<uint8_t> keep(keepf.begin(), keepf.end());
  const TensorView<const bool> mask(reinterpret_cast<const bool*>(keep.data()),
                                    {B, 1, 1, L}, {L, 0, 0, 1});
  std::vector<float> out = poisoned(x.size());
  m.forward(rows_view(x, B, S, E), rows_view(out, B, S, E),
            {.memory = rows_view(mem, B, L, KD), .mask = mask});
  expect_close(out, c.get("out"), "cross-attention from memory");

  // Projected once, as a decoder does across steps.
  const MemoryKV kv = m.project_memory(rows_view(mem, B, L, KD));
  out = poisoned(x.size());
  m.forward(rows_view(x, B, S, E), rows_view(out, B, S, E),
            {.memory_kv = &kv, .mask = mask});
  expect_close(out, c.get("out"), "cross-attention from memory_kv");
}

void run_encoder_case(const char* name) {
  TorchCase c(name);
  const int64_t E = c.i("E"), H = c.i("H"), F = c.i("F"), B = c.i("B"),
                S = c.i("S");
  const auto lengths = c.meta().at("lengths").get<std::vector<int64_t>>();
  const bool norm_first = c.meta().at("norm_first").get<bool>();
  const std::string act = c.meta().at("activation").get<std::string>();
  BlockConfig cfg;
  cfg.attention = {.d_model = E, .num_heads = H};
  cfg.mlp = {
      .d_model = E,
      .hidden = F,
      .activation = act == "gelu" ? Activation::kGelu : Activation::kRelu};
  cfg.pre_norm = norm_first;
  TransformerBlock block(cfg);
  load_torch_layer(c, "", block, E, {&block.attn_norm, &block.mlp_norm});
  std::vector<float> x = c.get("x");
  const BlockInputs in{.self = {.key_lengths = lengths}};
  block.forward(rows_view(x, B, S, E), in);
  expect_close(x, c.get("out"), name);

  // Training: the same output through forward_train, then every gradient.
  x = c.get("x");
  BlockTape tape;
  block.forward_train(rows_view(x, B, S, E), tape, in);
  expect_close(x, c.get("out"), std::string(name) + " forward_train");
  std::vector<float> dx = c.get("dout");
  BlockGrads g;
  block.backward(rows_view(dx, B, S, E), tape, g, in);
  expect_close(dx, c.get("dx"), "dx");
  expect_close(concat({g.attention.q_weight, g.attention.kv_weight}),
               c.get("d_self_attn.in_proj_weight"), "d in_proj_weight");
  expect_close(concat({g.attention.q_bias, g.attention.kv_bias}),
               c.get("d_self_attn.in_proj_bias"), "d in_proj_bias");
  expect_close(g.attention.o_weight, c.get("d_self_attn.out_proj.weight"),
               "d out_proj.weight");
  expect_close(g.attention.o_bias, c.get("d_self_attn.out_proj.bias"),
               "d out_proj.bias");
  expect_close(g.mlp.up_weight, c.get("d_linear1.weight"), "d linear1.weight");
  expect_close(g.mlp.up_bias, c.get("d_linear1.bias"), "d linear1.bias");
  expect_close(g.mlp.down_weight, c.get("d_linear2.weight"),
               "d linear2.weight");
  expect_close(g.mlp.down_bias, c.get("d_linear2.bias"), "d linear2.bias");
  expect_close(g.attn_norm_weight, c.get("d_norm1.weight"), "d norm1.weight");
  expect_close(g.attn_norm_bias, c.get("d_norm1.bias"), "d norm1.bias");
  expect_close(g.mlp_norm_weight, c.get("d_norm2.weight"), "d norm2.weight");
  expect_close(g.mlp_norm_bias, c.get("d_norm2.bias"), "d norm2.bias");
}

TEST(TorchParity, TransformerEncoderLayerPostNormGelu) {
  run_encoder_case("encoder_post_gelu");
}

TEST(TorchParity, TransformerEncoderLayerPreNormRelu) {
  run_encoder_case("encoder_pre_relu");
}

void run_decoder_case(const char* name) {
  TorchCase c(name);
  const int64_t E = c.i("E"), H = c.i("H"), F = c.i("F"), B = c.i("B"),
                S = c.i("S"), L = c.i("L");
  const auto mem_lengths =
      c.meta().at("mem_lengths").get<std::vector<int64_t>>();
  BlockConfig cfg;
  cfg.attention = {.d_model = E, .num_heads = H, .causal = true};
  cfg.cross = AttentionConfig{.d_model = E, .num_heads = H};
  cfg.mlp = {.d_model = E, .hidden = F, .activation = Activation::kRelu};
  cfg.pre_norm = c.meta().at("norm_first").get<bool>();
  TransformerBlock block(cfg);
  load_torch_layer(c, "", block, E,
                   {&block.attn_norm, &block.cross_norm, &block.mlp_norm});
  std::vector<float> x = c.get("x"), mem = c.get("memory");
  const BlockInputs in{
      .cross = {.memory = rows_view(mem, B, L, E), .key_lengths = mem_lengths}};
  block.forward(rows_view(x, B, S, E), in);
  expect_close(x, c.get("out"), "decoder layer");

  // Training, with the memory's gradient added to a buffer holding ones.
  x = c.get("x");
  BlockTape tape;
  block.forward_train(rows_view(x, B, S, E), tape, in);
  expect_close(x, c.get("out"), "decoder layer forward_train");
  std::vector<float> dx = c.get("dout"), dmem(mem.size(), 1.0f);
  BlockGrads g;
  block.backward(rows_view(dx, B, S, E), tape, g, in, rows_view(dmem, B, L, E));
  expect_close(dx, c.get("dx"), "dx");
  std::vector<float> want_dmem = c.get("dmemory");
  for (float& v : want_dmem) v += 1.0f;
  expect_close(dmem, want_dmem, "dmemory (added)");
  expect_close(
      concat({g.cross_attention.q_weight, g.cross_attention.kv_weight}),
      c.get("d_multihead_attn.in_proj_weight"), "d cross in_proj_weight");
  expect_close(concat({g.attention.q_weight, g.attention.kv_weight}),
               c.get("d_self_attn.in_proj_weight"), "d self in_proj_weight");
  expect_close(g.cross_attention.o_weight,
               c.get("d_multihead_attn.out_proj.weight"),
               "d cross out_proj.weight");
  expect_close(g.mlp.up_weight, c.get("d_linear1.weight"), "d linear1.weight");
  expect_close(g.attn_norm_weight, c.get("d_norm1.weight"), "d norm1.weight");
  expect_close(g.cross_norm_weight, c.get("d_norm2.weight"), "d norm2.weight");
  expect_close(g.cross_norm_bias, c.get("d_norm2.bias"), "d norm2.bias");
  expect_close(g.mlp_norm_weight, c.get("d_norm3.weight"), "d norm3.weight");
}

TEST(TorchParity, TransformerDecoderLayer) {
  run_decoder_case("decoder_layer");
}
TEST(TorchParity, TransformerDecoderLayerPreNorm) {
  run_decoder_case("decoder_layer_pre");
}

TransformerBlock llama_block(const TorchCase& c) {
  const int64_t E = c.i("E"), H = c.i("H"), KVH = c.i("KVH"), D = c.i("D"),
                F = c.i("F");
  BlockConfig cfg;
  cfg.attention = {.d_model = E,
                   .num_heads = H,
                   .num_kv_heads = KVH,
                   .head_dim = D,
                   .qkv_bias = false,
                   .out_bias = false,
                   .causal = true,
                   .position = Position::kRope};
  cfg.attention.rope.theta = c.meta().at("theta").get<double>();
  cfg.mlp = {.d_model = E,
             .hidden = F,
             .activation = Activation::kSilu,
             .gated = true,
             .bias = false};
  cfg.norm = NormKind::kRMSNorm;
  cfg.norm_eps = c.meta().at("eps").get<float>();
  TransformerBlock block(cfg);
  block.attn_norm.weight = c.get("input_layernorm.weight");
  block.mlp_norm.weight = c.get("post_attention_layernorm.weight");
  block.self_attn.q_proj.weight = c.get("self_attn.q_proj.weight");
  block.self_attn.kv_proj.weight = c.get("self_attn.k_proj.weight");
  const std::vector<float> wv = c.get("self_attn.v_proj.weight");
  auto& kvw = block.self_attn.kv_proj.weight;
  kvw.insert(kvw.end(), wv.begin(), wv.end());
  block.self_attn.o_proj.weight = c.get("self_attn.o_proj.weight");
  block.mlp.up.weight = c.get("mlp.gate_proj.weight");
  const std::vector<float> up = c.get("mlp.up_proj.weight");
  block.mlp.up.weight.insert(block.mlp.up.weight.end(), up.begin(), up.end());
  block.mlp.down.weight = c.get("mlp.down_proj.weight");
  return block;
}

TEST(TorchParity, LlamaBlockPrefill) {
  TorchCase c("llama_block");
  const int64_t E = c.i("E"), B = c.i("B"), S = c.i("S");
  const TransformerBlock block = llama_block(c);
  std::vector<float> x = c.get("x");
  block.forward(rows_view(x, B, S, E));
  expect_close(x, c.get("out"), "llama block prefill");
}

TEST(TorchParity, LlamaBlockGradients) {
  TorchCase c("llama_block");
  const int64_t E = c.i("E"), B = c.i("B"), S = c.i("S");
  const TransformerBlock block = llama_block(c);
  std::vector<float> x = c.get("x");
  BlockTape tape;
  block.forward_train(rows_view(x, B, S, E), tape);
  expect_close(x, c.get("out"), "forward_train");
  std::vector<float> dx = c.get("dout");
  BlockGrads g;
  block.backward(rows_view(dx, B, S, E), tape, g);
  expect_close(dx, c.get("dx"), "dx");
  expect_close(g.attention.q_weight, c.get("d_self_attn.q_proj.weight"), "dWq");
  expect_close(g.attention.kv_weight,
               concat({c.get("d_self_attn.k_proj.weight"),
                       c.get("d_self_attn.v_proj.weight")}),
               "dWk|dWv");
  expect_close(g.attention.o_weight, c.get("d_self_attn.o_proj.weight"), "dWo");
  expect_close(
      g.mlp.up_weight,
      concat({c.get("d_mlp.gate_proj.weight"), c.get("d_mlp.up_proj.weight")}),
      "d gate|up");
  expect_close(g.mlp.down_weight, c.get("d_mlp.down_proj.weight"), "d down");
  expect_close(g.attn_norm_weight, c.get("d_input_layernorm.weight"),
               "d input norm");
  expect_close(g.mlp_norm_weight, c.get("d_post_attention_layernorm.weight"),
               "d post-attention norm");
}

// Prefill of a prefix through the KV cache, then the rest one token at a
// time: every step's rows must match torch's full causal forward.
TEST(TorchParity, LlamaBlockDecodesThroughCache) {
  TorchCase c("llama_block");
  const int64_t E = c.i("E"), B = c.i("B"), S = c.i("S"), KVH = c.i("KVH"),
                D = c.i("D");
  const TransformerBlock block = llama_block(c);
  KVCacheOptions co;
  co.num_kv_heads = KVH;
  co.head_dim = D;
  co.max_sequences = B;
  co.max_tokens = S;
  co.page_size = 8;
  KVCache cache(co);
  std::vector<int64_t> seqs;
  for (int64_t b = 0; b < B; ++b) seqs.push_back(cache.add_sequence());
  const std::vector<float> x = c.get("x");
  std::vector<float> got(x.size(), std::nanf(""));
  const int64_t prefix = S - 4;
  int64_t done = 0;
  for (int64_t n : {prefix, int64_t{1}, int64_t{2}, int64_t{1}}) {
    std::vector<float> chunk(static_cast<size_t>(B * n * E));
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(x.begin() + (b * S + done) * E, n * E,
                  chunk.begin() + b * n * E);
    }
    block.forward(rows_view(chunk, B, n, E),
                  {.self = {.cache = &cache, .sequences = seqs}});
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(chunk.begin() + b * n * E, n * E,
                  got.begin() + (b * S + done) * E);
    }
    done += n;
  }
  ASSERT_EQ(done, S);
  expect_close(got, c.get("out"), "llama block through the cache");
}

TEST(TorchParity, T5Buckets) {
  TorchCase c("t5_buckets");
  const int64_t first = c.i("first");
  const std::vector<float> bi = c.get("bidirectional"),
                           uni = c.get("unidirectional");
  for (size_t k = 0; k < bi.size(); ++k) {
    const int64_t rel = first + static_cast<int64_t>(k);
    EXPECT_EQ(t5_bucket(rel, {32, 128, true}), static_cast<int64_t>(bi[k]))
        << "relative position " << rel;
    EXPECT_EQ(t5_bucket(rel, {32, 128, false}), static_cast<int64_t>(uni[k]))
        << "relative position " << rel;
  }
}

TEST(TorchParity, SinusoidalPositions) {
  TorchCase c("sinusoidal");
  const std::vector<float> want = c.get("table");
  const std::vector<float> got = sinusoidal_positions(c.i("P"), c.i("E"));
  // torch's table is computed in float32 (angles up to 49 rad): its own
  // error is ~1e-5 absolute, ours ~1e-7.
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 2e-5) << "element " << i;
  }
}

std::vector<int64_t> ids_of(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

TransformerModel load_checkpoint(const std::string& name) {
  const std::string dir = parity_dir() + "/" + name;
  const std::vector<std::string> weights{dir + "/model.safetensors"};
  return load_model(dir + "/config.json", weights);
}

// The case's "ids" [B, S] through the model, then its logits [B, S, V].
std::vector<float> checkpoint_logits(const TorchCase& c,
                                     const TransformerModel& m) {
  const int64_t B = c.i("B"), S = c.i("S"), V = c.i("V"), E = c.i("E");
  std::vector<float> hidden = poisoned(static_cast<size_t>(B * S * E)),
                     logits = poisoned(static_cast<size_t>(B * S * V));
  m.forward(ids_of(c.get("ids")), rows_view(hidden, B, S, E));
  m.logits(rows_view(hidden, B, S, E), rows_view(logits, B, S, V));
  return logits;
}

TEST(TorchParity, Gpt2Checkpoint) {
  TorchCase c("gpt2");
  const TransformerModel m = load_checkpoint("gpt2");
  expect_close(checkpoint_logits(c, m), c.get("logits"), "gpt2 logits");
  const int64_t S = c.i("S");
  const std::vector<int64_t> ids = ids_of(c.get("ids"));

  // Greedy generation through the KV cache against torch's full recompute.
  const std::vector<std::vector<int64_t>> prompt{
      std::vector<int64_t>(ids.begin(), ids.begin() + S)};
  const auto out = generate(m, prompt, {.max_new_tokens = c.i("new")});
  EXPECT_EQ(out.at(0), ids_of(c.get("greedy")));
}

TEST(TorchParity, BertCheckpointWithPadding) {
  TorchCase c("bert");
  const int64_t B = c.i("B"), S = c.i("S"), E = c.i("E");
  const auto lengths = c.meta().at("lengths").get<std::vector<int64_t>>();
  const TransformerModel m = load_checkpoint("bert");
  const std::vector<int64_t> ids = ids_of(c.get("ids")),
                             types = ids_of(c.get("types"));
  std::vector<float> hidden = poisoned(static_cast<size_t>(B * S * E));
  m.forward(ids, rows_view(hidden, B, S, E),
            {.token_types = types, .key_lengths = lengths});
  expect_close(hidden, c.get("hidden"), "bert hidden states");
}

TEST(TorchParity, LlamaCheckpointBf16) {
  TorchCase c("llama");
  const TransformerModel m = load_checkpoint("llama");
  expect_close(checkpoint_logits(c, m), c.get("logits"), "llama logits");
}

TEST(TorchParity, VitPatchEmbeddingAndEncoder) {
  TorchCase c("vit");
  const int64_t C = c.i("C"), I = c.i("I"), P = c.i("P"), E = c.i("E"),
                H = c.i("H"), F = c.i("F"), B = c.i("B"), L = c.i("L");
  PatchEmbedding pe(
      {.image_size = I, .patch_size = P, .channels = C, .d_model = E});
  pe.proj.weight = c.get("conv.weight");
  pe.proj.bias = c.get("conv.bias");
  pe.class_token = c.get("cls");
  pe.positions = c.get("pos");
  ModelConfig mc;
  mc.num_layers = L;
  mc.block.attention = {.d_model = E, .num_heads = H};
  mc.block.mlp = {.d_model = E, .hidden = F};
  mc.block.norm_eps = 1e-5f;
  mc.lm_head = false;
  TransformerModel m(mc);
  m.final_norm->eps = 1e-6f;
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    TransformerBlock& b = m.layers[l];
    load_torch_layer(c, p, b, E, {&b.attn_norm, &b.mlp_norm});
  }
  m.final_norm->weight = c.get("norm.weight");
  m.final_norm->bias = c.get("norm.bias");
  std::vector<float> images = c.get("images");
  const TensorView<const float> iv =
      TensorView<const float>::bhsd(images.data(), B, C, I, I);
  std::vector<float> x = poisoned(static_cast<size_t>(B * pe.tokens() * E));
  pe.forward(iv, rows_view(x, B, pe.tokens(), E));
  expect_close(x, c.get("embedded"), "vit patch embedding");
  m.forward_embeddings(rows_view(x, B, pe.tokens(), E));
  expect_close(x, c.get("out"), "vit encoder");
}

TEST(TorchParity, T5RelativeAttention) {
  TorchCase c("t5_attention");
  const int64_t E = c.i("E"), H = c.i("H"), D = c.i("D"), B = c.i("B"),
                S = c.i("S");
  for (const bool bidirectional : {true, false}) {
    const std::string n = bidirectional ? "bi" : "causal";
    AttentionConfig ac{.d_model = E,
                       .num_heads = H,
                       .head_dim = D,
                       .qkv_bias = false,
                       .out_bias = false,
                       .causal = !bidirectional,
                       .scale = 1.0f,
                       .position = Position::kT5};
    ac.t5 = {c.i("NB"), c.i("MD"), bidirectional};
    MultiHeadAttention m(ac);
    m.q_proj.weight = c.get("q");
    m.kv_proj.weight = c.get("k");
    const std::vector<float> wv = c.get("v");
    m.kv_proj.weight.insert(m.kv_proj.weight.end(), wv.begin(), wv.end());
    m.o_proj.weight = c.get("o");
    m.relative_bias = c.get(n + ".table");
    std::vector<float> x = c.get("x"), out = poisoned(x.size());
    m.forward(rows_view(x, B, S, E), rows_view(out, B, S, E));
    expect_close(out, c.get(n + ".out"), "t5 attention " + n);
  }
}

}  // namespace
}  // namespace attn::nn
