// A Llama-style model end to end: write a small random checkpoint the way
// public releases lay it out (config.json + model.safetensors with the
// public tensor names, bfloat16), load it with attn::nn::load_model, and
// continue two prompts of different lengths, greedy and sampled.
//
// The check: the greedy continuation through the KV cache (prompts batched
// in one decode step) equals recomputing the whole sequence for every new
// token, prompt by prompt.
#include <attn/attn.h>
#include <attn/nn.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common.h"

namespace nn = attn::nn;

int main() {
  const int64_t V = 64, E = 32, H = 4, KVH = 2, D = 8, F = 48, L = 2;
  const std::string config = R"({
    "model_type": "llama", "vocab_size": 64, "hidden_size": 32,
    "intermediate_size": 48, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "tie_word_embeddings": false})";

  // Random weights under their public names, rounded to bfloat16 on save.
  std::mt19937 rng(3);
  std::vector<std::vector<float>> store;
  std::vector<attn::safetensors::Entry> entries;
  auto add = [&](const std::string& name, std::vector<int64_t> shape,
                 float scale) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    store.push_back(example::random_buffer(n, rng));
    for (float& x : store.back()) x = x * scale + (scale == 0.0f ? 1.0f : 0.0f);
    entries.push_back({name, shape, {}, attn::safetensors::DType::kBF16});
  };
  store.reserve(64);
  add("model.embed_tokens.weight", {V, E}, 1.0f);
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {E}, 0.0f);
    add(p + "self_attn.q_proj.weight", {H * D, E}, 0.3f);
    add(p + "self_attn.k_proj.weight", {KVH * D, E}, 0.3f);
    add(p + "self_attn.v_proj.weight", {KVH * D, E}, 0.3f);
    add(p + "self_attn.o_proj.weight", {E, H * D}, 0.3f);
    add(p + "post_attention_layernorm.weight", {E}, 0.0f);
    add(p + "mlp.gate_proj.weight", {F, E}, 0.3f);
    add(p + "mlp.up_proj.weight", {F, E}, 0.3f);
    add(p + "mlp.down_proj.weight", {E, F}, 0.3f);
  }
  add("model.norm.weight", {E}, 0.0f);
  add("lm_head.weight", {V, E}, 0.3f);
  for (size_t i = 0; i < entries.size(); ++i) entries[i].values = store[i];

  const auto dir = std::filesystem::temp_directory_path() /
                   ("attn_example_llama_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << config;
  attn::safetensors::save((dir / "model.safetensors").string(), entries);

  const std::vector<std::string> shards{(dir / "model.safetensors").string()};
  const nn::TransformerModel model =
      nn::load_model((dir / "config.json").string(), shards);
  std::filesystem::remove_all(dir);

  // Greedy through the cache vs recomputing every prefix.
  const std::vector<std::vector<int64_t>> prompts{{5, 17, 42, 8, 1, 33}, {60}};
  const auto greedy = nn::generate(model, prompts, {.max_new_tokens = 10});
  bool ok = true;
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<int64_t> seq = prompts[i];
    for (int64_t t = 0; t < 10; ++t) {
      const int64_t n = static_cast<int64_t>(seq.size());
      std::vector<float> h(n * E), logits(V);
      model.forward(seq, attn::TensorView<float>::bhsd(h.data(), 1, 1, n, E));
      model.logits(attn::TensorView<const float>::bhsd(h.data() + (n - 1) * E,
                                                       1, 1, 1, E),
                   attn::TensorView<float>::bhsd(logits.data(), 1, 1, 1, V));
      seq.push_back(nn::sample(logits, {}, 0));
    }
    const std::vector<int64_t> want(seq.begin() + prompts[i].size(), seq.end());
    ok = ok && want == greedy[i];
    std::printf("prompt %zu greedy :", i);
    for (int64_t t : greedy[i]) std::printf(" %lld", static_cast<long long>(t));
    std::printf("%s\n",
                want == greedy[i] ? "" : "   MISMATCH with recomputation");
  }
  const auto sampled = nn::generate(
      model, prompts,
      {.max_new_tokens = 10,
       .sampling = {
           .temperature = 0.8f, .top_k = 20, .top_p = 0.9f, .seed = 7}});
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::printf("prompt %zu sampled:", i);
    for (int64_t t : sampled[i])
      std::printf(" %lld", static_cast<long long>(t));
    std::printf("\n");
  }
  std::printf("%s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
