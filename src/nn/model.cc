// nn::TransformerModel, the ViT patch embedding and the KV cache they use.
//   hidden = tok[id] + pos[p] (+ type[t]) -> [norm] -> blocks -> [norm]
//   logits = hidden W_head^T (W_head = tok when tied) * logit_scale
#include "attn/nn/model.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "src/nn/rows.h"

namespace attn::nn {

Embedding::Embedding(int64_t n, int64_t d) : num(n), dim(d) {
  if (n < 0 || d < 0)
    util::Check("attn::nn::Embedding").fail("sizes must be >= 0");
  weight.assign(static_cast<size_t>(n * d), 0.0f);
}

namespace {

void check_table(const Embedding& e, const util::Check& where,
                 const char* name) {
  if (e.weight.size() != static_cast<size_t>(e.num * e.dim)) {
    where.fail(std::string(name) + " must hold " +
               std::to_string(e.num * e.dim) + " floats, has " +
               std::to_string(e.weight.size()));
  }
}

// ModelInputs::check_finite: the first NaN or infinity of hidden [B, 1, S,
// E] is an error naming the stage that produced it.
void check_finite(TensorView<const float> hidden, const util::Check& where,
                  const std::string& stage) {
  for (int64_t b = 0; b < hidden.extent(0); ++b) {
    for (int64_t s = 0; s < hidden.extent(2); ++s) {
      const float* h = hidden.row(b, 0, s);
      for (int64_t c = 0; c < hidden.extent(3); ++c) {
        if (!std::isfinite(h[c])) {
          where.fail(stage + " produced a non-finite value: hidden[" +
                     std::to_string(b) + ", 0, " + std::to_string(s) + ", " +
                     std::to_string(c) + "] = " + std::to_string(h[c]) +
                     " (check the checkpoint's weights)");
        }
      }
    }
  }
}

}  // namespace

namespace {

double norm_floats(const BlockConfig& b, double E) {
  return E * (b.norm_bias && b.norm == NormKind::kLayerNorm ? 2 : 1);
}

// MultiHeadAttention's constructor: q, kv and o projections (biases as
// configured), T5's bucket table, ALiBi's slopes.
double attention_floats(const AttentionConfig& a, bool learned_only) {
  const double E = static_cast<double>(a.d_model);
  const double Hq = static_cast<double>(a.num_heads);
  const double Hkv = a.num_kv_heads == 0 ? Hq : a.num_kv_heads;
  const double D = a.head_dim != 0 ? static_cast<double>(a.head_dim)
                   : a.num_heads > 0
                       ? static_cast<double>(a.d_model / a.num_heads)
                       : 0.0;
  const double kv_in = a.kv_dim == 0 ? E : static_cast<double>(a.kv_dim);
  double n = E * Hq * D + kv_in * 2 * Hkv * D + Hq * D * E;
  if (a.qkv_bias) n += Hq * D + 2 * Hkv * D;
  if (a.out_bias) n += E;
  if (a.position == Position::kT5)
    n += static_cast<double>(a.t5.num_buckets) * Hq;
  if (a.position == Position::kAlibi && !learned_only) n += Hq;
  return n;
}

}  // namespace

double TransformerModel::weight_floats(const ModelConfig& c,
                                       bool learned_only) {
  const BlockConfig& b = c.block;
  const double E = static_cast<double>(b.attention.d_model);
  const double V = static_cast<double>(c.vocab_size);
  const double P = static_cast<double>(c.max_positions);
  double n = V * E + static_cast<double>(c.type_vocab_size) * E;
  if (c.absolute == AbsolutePosition::kLearned) n += P * E;
  if (c.absolute == AbsolutePosition::kSinusoidal && !learned_only) n += P * E;
  if (c.embedding_norm) n += norm_floats(b, E);
  // One block: self-attention, cross-attention, the MLP, two or three norms.
  const double F = static_cast<double>(b.mlp.hidden);
  const double up = b.mlp.gated ? 2 * F : F;
  double block = attention_floats(b.attention, learned_only) + E * up + F * E +
                 2 * norm_floats(b, E);
  if (b.mlp.bias) block += up + E;
  if (b.cross) {
    block += attention_floats(*b.cross, learned_only) + norm_floats(b, E);
  }
  n += static_cast<double>(c.num_layers) * block;
  if (c.final_norm) n += norm_floats(b, E);
  if (c.lm_head && !c.tied_lm_head) n += V * E;
  return n;
}

TransformerModel::TransformerModel(const ModelConfig& c) : config_(c) {
  const util::Check where("attn::nn::TransformerModel");
  const int64_t E = c.block.attention.d_model;
  if (E <= 0) where.fail("block.attention.d_model must be > 0");
  if (c.vocab_size < 0 || c.num_layers < 0 || c.max_positions < 0 ||
      c.type_vocab_size < 0) {
    where.fail(
        "vocab_size, num_layers, max_positions and "
        "type_vocab_size must be >= 0");
  }
  if (c.absolute != AbsolutePosition::kNone && c.max_positions == 0) {
    where.fail("absolute positions need max_positions > 0");
  }
  if ((c.lm_head || c.tied_lm_head) && c.vocab_size == 0) {
    where.fail("an LM head needs vocab_size > 0");
  }
  token_embedding = Embedding(c.vocab_size, E);
  if (c.absolute == AbsolutePosition::kLearned) {
    position_embedding = Embedding(c.max_positions, E);
  }
  if (c.absolute == AbsolutePosition::kSinusoidal) {
    sinusoidal_ = sinusoidal_positions(c.max_positions, E);
  }
  if (c.type_vocab_size > 0) type_embedding = Embedding(c.type_vocab_size, E);
  if (c.embedding_norm) {
    embedding_norm.emplace(c.block.norm, E, c.block.norm_eps,
                           c.block.norm_bias);
  }
  layers.reserve(static_cast<size_t>(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) layers.emplace_back(c.block);
  if (c.final_norm) {
    final_norm.emplace(c.block.norm, E, c.block.norm_eps, c.block.norm_bias);
  }
  if (c.lm_head && !c.tied_lm_head) lm_head = Linear(E, c.vocab_size, false);
}

void TransformerModel::forward(std::span<const int64_t> tokens,
                               TensorView<float> hidden,
                               const ModelInputs& in) const {
  const util::Check where("attn::nn::TransformerModel::forward");
  const int64_t E = d_model();
  detail::check_rows(hidden, where, "hidden", E);
  const int64_t B = hidden.extent(0), S = hidden.extent(2);
  if (tokens.size() != static_cast<size_t>(B * S)) {
    where.fail("tokens must hold B * S = " + std::to_string(B * S) +
               " ids, has " + std::to_string(tokens.size()));
  }
  if (!in.token_types.empty() && in.token_types.size() != tokens.size()) {
    where.fail("token_types must be empty or match tokens");
  }
  if (in.cache != nullptr && in.sequences.size() != static_cast<size_t>(B)) {
    where.fail(
        "sequences must name one cache sequence per batch "
        "entry");
  }
  check_table(token_embedding, where, "token_embedding");
  check_table(position_embedding, where, "position_embedding");
  check_table(type_embedding, where, "type_embedding");
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t] < 0 || tokens[t] >= config_.vocab_size) {
      where.fail("tokens[" + std::to_string(t) +
                 "] = " + std::to_string(tokens[t]) + " is outside [0, " +
                 std::to_string(config_.vocab_size) + ")");
    }
    if (!in.token_types.empty() &&
        (in.token_types[t] < 0 ||
         in.token_types[t] >= std::max<int64_t>(config_.type_vocab_size, 1))) {
      where.fail("token_types[" + std::to_string(t) +
                 "] is outside [0, type_vocab_size)");
    }
  }
  std::vector<int64_t> start(static_cast<size_t>(B), 0);
  if (in.cache != nullptr) {
    for (int64_t b = 0; b < B; ++b)
      start[b] = in.cache->length(in.sequences[b], 0);
  }
  if (config_.absolute != AbsolutePosition::kNone) {
    for (int64_t b = 0; b < B; ++b) {
      if (start[b] + S > config_.max_positions) {
        where.fail("positions up to " + std::to_string(start[b] + S) +
                   " exceed max_positions " +
                   std::to_string(config_.max_positions));
      }
    }
  }
  {
    detail::Timer t(in.profile ? &in.profile->other : nullptr);
    const float* pos = config_.absolute == AbsolutePosition::kLearned
                           ? position_embedding.weight.data()
                       : config_.absolute == AbsolutePosition::kSinusoidal
                           ? sinusoidal_.data()
                           : nullptr;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t s = 0; s < S; ++s) {
        float* h = detail::row(hidden, b, s);
        const int64_t t = b * S + s;
        const float* e = token_embedding.weight.data() + tokens[t] * E;
        std::copy(e, e + E, h);
        if (pos != nullptr) {
          const float* p = pos + (start[b] + s) * E;
          for (int64_t c = 0; c < E; ++c) h[c] += p[c];
        }
        if (config_.type_vocab_size > 0) {
          const int64_t type = in.token_types.empty() ? 0 : in.token_types[t];
          const float* y = type_embedding.weight.data() + type * E;
          for (int64_t c = 0; c < E; ++c) h[c] += y[c];
        }
      }
    }
    if (embedding_norm) embedding_norm->forward(hidden, hidden);
  }
  if (in.check_finite) check_finite(hidden, where, "the embeddings");
  forward_embeddings(hidden, in);
}

void TransformerModel::forward_embeddings(TensorView<float> hidden,
                                          const ModelInputs& in) const {
  const util::Check where("attn::nn::TransformerModel::forward_embeddings");
  detail::check_rows(hidden, where, "hidden", d_model());
  if (!in.memory_kv.empty() && in.memory_kv.size() != layers.size()) {
    where.fail("memory_kv must hold one entry per layer (" +
               std::to_string(layers.size()) + ")");
  }
  for (size_t l = 0; l < layers.size(); ++l) {
    BlockInputs bi;
    bi.self.key_lengths = in.key_lengths;
    bi.self.cache = in.cache;
    bi.self.layer = static_cast<int64_t>(l);
    bi.self.sequences = in.sequences;
    bi.self.algorithm = in.algorithm;
    bi.self.profile = in.profile;
    if (layers[l].cross_attn) {
      bi.cross.memory = in.memory;
      if (!in.memory_kv.empty()) bi.cross.memory_kv = &in.memory_kv[l];
      bi.cross.key_lengths = in.memory_lengths;
      bi.cross.algorithm = in.algorithm;
      bi.cross.profile = in.profile;
    }
    layers[l].forward(hidden, bi);
    if (in.check_finite) {
      check_finite(hidden, where,
                   "layer " + std::to_string(l) + " of " +
                       std::to_string(layers.size()));
    }
  }
  if (final_norm) {
    detail::Timer t(in.profile ? &in.profile->other : nullptr);
    final_norm->forward(hidden, hidden);
    if (in.check_finite) check_finite(hidden, where, "the final norm");
  }
}

void TransformerModel::logits(TensorView<const float> hidden,
                              TensorView<float> out) const {
  const util::Check where("attn::nn::TransformerModel::logits");
  if (!config_.lm_head) where.fail("the model has no LM head");
  const int64_t E = d_model(), V = config_.vocab_size;
  detail::check_rows(hidden, where, "hidden", E);
  detail::check_rows(out, where, "logits", V, hidden.extent(0),
                     hidden.extent(2));
  const float* w = nullptr;
  if (config_.tied_lm_head) {
    check_table(token_embedding, where, "token_embedding");
    w = token_embedding.weight.data();
  } else {
    if (lm_head.weight.size() != static_cast<size_t>(V * E)) {
      where.fail("lm_head.weight must hold vocab * E floats");
    }
    w = lm_head.weight.data();
  }
  detail::for_each_block(
      hidden, out,
      [&](const float* x, int64_t ldx, float* y, int64_t ldy, int64_t n) {
        linear_rows(x, n, ldx, w, E, V, nullptr, y, ldy, false);
        if (config_.logit_scale != 1.0f) {
          for (int64_t r = 0; r < n; ++r) {
            for (int64_t v = 0; v < V; ++v)
              y[r * ldy + v] *= config_.logit_scale;
          }
        }
      });
}

KVCache TransformerModel::make_cache(int64_t max_sequences, int64_t max_tokens,
                                     int64_t page_size) const {
  const AttentionConfig& a = config_.block.attention;
  KVCacheOptions o;
  o.num_layers = std::max<int64_t>(config_.num_layers, 1);
  o.num_kv_heads = a.num_kv_heads == 0 ? a.num_heads : a.num_kv_heads;
  o.head_dim = a.head_dim == 0 ? a.d_model / a.num_heads : a.head_dim;
  o.max_sequences = max_sequences;
  o.max_tokens = max_tokens;
  o.page_size = page_size;
  return KVCache(o);
}

std::vector<MemoryKV> TransformerModel::project_memory(
    TensorView<const float> memory) const {
  std::vector<MemoryKV> out;
  for (const TransformerBlock& l : layers) {
    if (!l.cross_attn) {
      util::Check("attn::nn::TransformerModel::project_memory")
          .fail("the model's layers have no cross-attention");
    }
    out.push_back(l.cross_attn->project_memory(memory));
  }
  return out;
}

// --- ViT patch embedding ----------------------------------------------------

PatchEmbedding::PatchEmbedding(const PatchEmbeddingConfig& c) : config_(c) {
  const util::Check where("attn::nn::PatchEmbedding");
  if (c.patch_size <= 0 || c.image_size <= 0 || c.channels <= 0 ||
      c.d_model <= 0) {
    where.fail(
        "image_size, patch_size, channels and d_model must be "
        "> 0");
  }
  if (c.image_size % c.patch_size != 0) {
    where.fail("patch_size must divide image_size");
  }
  proj = Linear(c.channels * c.patch_size * c.patch_size, c.d_model, true);
  if (c.class_token) class_token.assign(static_cast<size_t>(c.d_model), 0.0f);
  if (c.position_embedding) {
    positions.assign(static_cast<size_t>(tokens() * c.d_model), 0.0f);
  }
}

int64_t PatchEmbedding::tokens() const {
  const int64_t n =
      config_.image_size / std::max<int64_t>(config_.patch_size, 1);
  return n * n + (config_.class_token ? 1 : 0);
}

void PatchEmbedding::forward(TensorView<const float> images,
                             TensorView<float> out) const {
  const util::Check where("attn::nn::PatchEmbedding::forward");
  const PatchEmbeddingConfig& c = config_;
  const int64_t P = c.patch_size, I = c.image_size, C = c.channels,
                E = c.d_model, n = I / P, K = C * P * P;
  if (P <= 0) where.fail("the module is not configured");
  if (images.extent(1) != C || images.extent(2) != I || images.extent(3) != I) {
    where.fail("images must be [B, " + std::to_string(C) + ", " +
               std::to_string(I) + ", " + std::to_string(I) + "]");
  }
  for (int a = 0; a < 4; ++a) {
    if (images.stride(a) < 0) where.fail("images: strides must be >= 0");
  }
  if (images.stride(3) != 1) where.fail("images: last stride must be 1");
  if (images.data() == nullptr && images.numel() > 0) {
    where.fail("images: has no data");
  }
  const int64_t B = images.extent(0);
  detail::check_rows(out, where, "out", E, B, tokens());
  if (proj.weight.size() != static_cast<size_t>(E * K) ||
      (!proj.bias.empty() && proj.bias.size() != static_cast<size_t>(E)) ||
      class_token.size() != static_cast<size_t>(c.class_token ? E : 0) ||
      positions.size() !=
          static_cast<size_t>(c.position_embedding ? tokens() * E : 0)) {
    where.fail(
        "proj, class_token or positions do not match the "
        "config");
  }
  patches_.resize(static_cast<size_t>(n * n * K));
  const int64_t first = c.class_token ? 1 : 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t py = 0; py < n; ++py) {
      for (int64_t px = 0; px < n; ++px) {
        float* dst = patches_.data() + (py * n + px) * K;
        for (int64_t ch = 0; ch < C; ++ch) {
          for (int64_t y = 0; y < P; ++y) {
            const float* src = images.row(b, ch, py * P + y) + px * P;
            std::copy(src, src + P, dst + (ch * P + y) * P);
          }
        }
      }
    }
    linear_rows(patches_.data(), n * n, K, proj.weight.data(), K, E,
                proj.bias.empty() ? nullptr : proj.bias.data(),
                detail::row(out, b, first), detail::leading_dim(out), false);
    if (c.class_token) {
      std::copy(class_token.begin(), class_token.end(), detail::row(out, b, 0));
    }
    if (c.position_embedding) {
      for (int64_t t = 0; t < tokens(); ++t) {
        float* h = detail::row(out, b, t);
        for (int64_t e = 0; e < E; ++e) h[e] += positions[t * E + e];
      }
    }
  }
}

}  // namespace attn::nn
