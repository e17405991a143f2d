// attn::nn models: embeddings + a stack of attn::nn::TransformerBlock +
// final norm + LM head, covering encoders (BERT), decoders (GPT-2, Llama),
// encoder-decoders (T5-like, with cross-attention) and a ViT patch
// embedding; sampling and a generation loop over the KV cache; and loading
// public checkpoints (safetensors + the Hugging Face config.json) for
// BERT, GPT-2 and Llama. Tensor names and config keys: docs/models.md.
//
// Hidden states are float32 views [B, 1, S, E] as in attn/nn/layers.h; token
// ids are int64, [B * S] row-major. Like the layers, a model keeps scratch
// between calls: one call at a time.
#ifndef ATTN_NN_MODEL_H_
#define ATTN_NN_MODEL_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "attn/kv_cache.h"
#include "attn/nn/layers.h"
#include "attn/safetensors.h"
#include "attn/tensor.h"

namespace attn::nn {

// A lookup table [num, dim] row-major.
struct Embedding {
  int64_t num = 0, dim = 0;
  std::vector<float> weight;
  Embedding() = default;
  Embedding(int64_t n, int64_t d);
};

enum class AbsolutePosition {
  kNone,        // positions enter the attention (RoPE, ALiBi, T5) or nowhere
  kLearned,     // a [max_positions, E] table added to the embeddings
  kSinusoidal,  // sinusoidal_positions(max_positions, E) added
};

struct ModelConfig {
  int64_t vocab_size = 0;
  int64_t num_layers = 0;
  BlockConfig
      block{};  // every layer's shape (d_model = block.attention.d_model)
  AbsolutePosition absolute = AbsolutePosition::kNone;
  int64_t max_positions = 0;    // table rows for kLearned / kSinusoidal
  int64_t type_vocab_size = 0;  // BERT's token types; 0 = none
  bool embedding_norm = false;  // a norm right after the embedding sum (BERT)
  bool final_norm = true;       // a norm after the last layer (GPT-2, Llama)
  bool lm_head = true;          // logits over the vocabulary
  bool tied_lm_head = false;    // the head is the token embedding
  // Multiplies the logits (T5 with a tied head: d_model^-0.5).
  float logit_scale = 1.0f;
};

// Per-call inputs of TransformerModel::forward.
struct ModelInputs {
  // Token type per token, [B * S] (BERT segments); empty = all type 0.
  std::span<const int64_t> token_types{};
  // Padding: valid tokens per batch entry (keys past it are hidden).
  std::span<const int64_t> key_lengths{};
  // Generation: the KV cache (one layer per model layer) and one sequence
  // per batch entry; positions continue from the sequences' lengths.
  KVCache* cache = nullptr;
  std::span<const int64_t> sequences{};
  // Decoder of an encoder-decoder: the encoder's output [B, 1, L, E], or
  // its keys and values projected once per layer (project_memory).
  TensorView<const float> memory{};
  std::span<const MemoryKV> memory_kv{};
  std::span<const int64_t> memory_lengths{};  // padding of the memory
  Algorithm algorithm = Algorithm::kAuto;
  Profile* profile = nullptr;
  // Checks the hidden states after the embeddings and after every layer
  // and throws attn::Error naming the first place a NaN or infinity
  // appears (generation sets it: a broken checkpoint stops there instead
  // of sampling from NaN). One pass over [B, S, E] per layer.
  bool check_finite = false;
};

class TransformerModel {
 public:
  TransformerModel() = default;
  // Weights zero (norms one); fill them or use load_model.
  explicit TransformerModel(const ModelConfig& config);
  // The floats TransformerModel(config) allocates, counted in double
  // without allocating (a config's sizes may describe more than memory
  // holds): load_model compares it with a checkpoint's contents first.
  // `learned_only` leaves out what is computed, not loaded (sinusoidal
  // tables, ALiBi slopes).
  static double weight_floats(const ModelConfig& config,
                              bool learned_only = false);
  const ModelConfig& config() const { return config_; }
  int64_t d_model() const { return config_.block.attention.d_model; }

  Embedding token_embedding;     // [vocab, E]
  Embedding position_embedding;  // kLearned: [max_positions, E]
  Embedding type_embedding;      // [type_vocab_size, E]
  std::optional<Norm> embedding_norm;
  std::vector<TransformerBlock> layers;
  std::optional<Norm> final_norm;
  Linear lm_head;  // [vocab, E]; unused when tied

  // hidden [B, 1, S, E] = final_norm(layers(embed(tokens))), tokens [B * S].
  // Positions start at each cache sequence's length (0 without a cache).
  void forward(std::span<const int64_t> tokens, TensorView<float> hidden,
               const ModelInputs& inputs = {}) const;
  // The stack alone on embeddings already in `hidden` (ViT, custom
  // front ends): layers, then the final norm, in place.
  void forward_embeddings(TensorView<float> hidden,
                          const ModelInputs& inputs = {}) const;
  // logits [B, 1, S, vocab] of hidden states [B, 1, S, E].
  void logits(TensorView<const float> hidden, TensorView<float> logits) const;

  // A KV cache shaped for this model (float32, no RoPE of its own).
  KVCache make_cache(int64_t max_sequences, int64_t max_tokens,
                     int64_t page_size = 0) const;
  // Keys and values of an encoder's output for every layer's
  // cross-attention, projected once for a whole generation.
  std::vector<MemoryKV> project_memory(TensorView<const float> memory) const;

 private:
  ModelConfig config_;
  std::vector<float> sinusoidal_;  // kSinusoidal: [max_positions, E]
};

// T5-style encoder-decoder: the decoder's blocks cross-attend to the
// encoder's output.
struct EncoderDecoderModel {
  TransformerModel encoder;  // bidirectional, no LM head
  TransformerModel decoder;  // causal, with cross-attention and the LM head
};

// ViT's front end (Dosovitskiy et al.): non-overlapping p x p patches of a
// [B, C, H, W] image, each flattened in (channel, row, column) order and
// projected (a Conv2d with stride p: its weight [E, C, p, p] is this
// projection's [E, C p p]), an optional class token first, plus learned
// position embeddings.
struct PatchEmbeddingConfig {
  int64_t image_size = 224, patch_size = 16, channels = 3, d_model = 768;
  bool class_token = true;
  bool position_embedding = true;
};

class PatchEmbedding {
 public:
  PatchEmbedding() = default;
  explicit PatchEmbedding(const PatchEmbeddingConfig& config);
  const PatchEmbeddingConfig& config() const { return config_; }
  int64_t tokens() const;  // (image / patch)^2 (+ 1 with the class token)

  Linear proj;                     // [E, C p p]
  std::vector<float> class_token;  // [E]
  std::vector<float> positions;    // [tokens(), E]

  // images [B, C, H, W] (H = W = image_size; any strides with a contiguous
  // last axis) -> out [B, 1, tokens(), E].
  void forward(TensorView<const float> images, TensorView<float> out) const;

 private:
  PatchEmbeddingConfig config_;
  mutable std::vector<float> patches_;
};

// --- Sampling and generation -------------------------------------------------

// temperature 0: greedy (argmax, lowest id on ties). Otherwise softmax of
// logits / temperature, restricted to the top_k most likely ids (0 = all),
// then to the smallest set of most likely ids whose probability reaches
// top_p (1 = all; always at least one id), renormalised and sampled with
// a uniform number derived from (seed, step) alone: the same seed gives
// the same tokens on any machine and thread count.
struct SamplingOptions {
  float temperature = 0.0f;
  int64_t top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
};

// One token from one row of logits; `step` numbers the draws of a sequence.
int64_t sample(std::span<const float> logits, const SamplingOptions& options,
               uint64_t step);

struct GenerateOptions {
  int64_t max_new_tokens = 16;
  SamplingOptions sampling{};
  std::optional<int64_t> eos{};  // stop after generating this id
};

// Continues each prompt (the batch may mix lengths) with up to
// max_new_tokens tokens from a decoder-only model: one prefill per prompt
// into `cache` (a fresh sequence each, freed at the end), then one batched
// decode step per token. Returns the new tokens per prompt (ending with eos
// when it was drawn). cache: null makes one sized for the call.
std::vector<std::vector<int64_t>> generate(
    const TransformerModel& model,
    std::span<const std::vector<int64_t>> prompts,
    const GenerateOptions& options, KVCache* cache = nullptr);

// The same for an encoder-decoder: encodes `inputs` once, then decodes
// from `start` (T5's decoder start id) for each input.
std::vector<std::vector<int64_t>> generate(
    const EncoderDecoderModel& model,
    std::span<const std::vector<int64_t>> inputs, int64_t start,
    const GenerateOptions& options);

// --- Checkpoints ---------------------------------------------------------

// The model families whose public checkpoint layouts load_model reads.
enum class Family { kBert, kGpt2, kLlama };

// Model config from a Hugging Face config.json text (model_type "bert",
// "gpt2", "llama" or "mistral"); throws attn::Error naming a missing or
// unsupported key.
ModelConfig config_from_json(const std::string& json_text,
                             Family* family = nullptr);

// Copies the checkpoint's tensors into `model` (shaped by the matching
// config), checking every shape; tensors may be F32, F16, BF16 or F64 and
// spread over several files (sharded checkpoints). A missing tensor is an
// error; tensors the model has no place for are returned by name.
std::vector<std::string> load_weights(
    TransformerModel& model, Family family,
    std::span<const safetensors::File* const> files);

// Tensors a checkpoint may hold beyond what a family's model uses, which
// loading skips by design: BERT's pooler and pretraining heads, GPT-2's
// causal-mask buffers, Llama's cached RoPE frequencies, position_ids.
bool ignorable_tensor(Family family, const std::string& name);

struct LoadOptions {
  // Tensors the model has no place for (beyond ignorable_tensor's) are an
  // error naming them, unless this is set (then they are skipped).
  bool allow_unused = false;
};

// config.json path + safetensors files -> a ready model. Before anything
// is allocated, the config's model (TransformerModel::weight_floats) must
// fit in the values the files hold; then every tensor's shape is checked
// as it is copied, and leftovers are refused (LoadOptions).
TransformerModel load_model(const std::string& config_path,
                            std::span<const std::string> weight_paths,
                            const LoadOptions& options = {});

}  // namespace attn::nn

#endif  // ATTN_NN_MODEL_H_
