// Loading public checkpoints: the Hugging Face config.json and safetensors
// tensor names of BERT, GPT-2 and Llama (docs/models.md has the tables).
// Every tensor's shape is checked against the config before it is copied;
// GPT-2's Conv1D weights are stored [in, out] and are transposed here.
#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "attn/nn/model.h"
#include "src/nn/rows.h"
#include "src/util/file_io.h"

namespace attn::nn {
namespace {

using nlohmann::json;

// config.json is untrusted: every size is bounded so that products of two
// of them (a weight's element count) cannot overflow int64. 2^24 is above
// every public model's vocabulary, width and context.
constexpr int64_t kMaxConfigInt = int64_t{1} << 24;

[[noreturn]] void config_fail(const std::string& what) {
  throw Error("config.json: " + what);
}

// A double as printf writes it with `format` ("%g", or "%.0f" for counts).
std::string fmt_number(double x, const char* format = "%g") {
  char text[400];  // "%.0f" of the largest double has 309 digits
  std::snprintf(text, sizeof text, format, x);
  return text;
}

// Ranges of the float keys: norm epsilons, RoPE's base and scaling.
constexpr double kMaxEps = 1.0;
constexpr double kMinPositive = 1e-30;
constexpr double kMaxFloat = 3.0e38;

int64_t get_int(const json& j, const char* key,
                std::optional<int64_t> def = {}) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (def) return *def;
    config_fail(std::string("missing \"") + key + "\"");
  }
  if (!it->is_number_integer()) {
    config_fail(std::string("\"") + key + "\" must be an integer");
  }
  // Unsigned JSON integers above INT64_MAX come back negative: rejected.
  const int64_t v = it->get<int64_t>();
  if (v < 0 || v > kMaxConfigInt) {
    config_fail(std::string("\"") + key + "\" must be in [0, " +
                std::to_string(kMaxConfigInt) + "], got " + it->dump());
  }
  return v;
}

// A number in [lo, hi] (finite), or `def` when absent; the range is
// checked here so a bad value is blamed on its key, not on the layer it
// would reach (Norm's eps, RoPE's theta).
double get_number(const json& j, const char* key, double def, double lo,
                  double hi) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_number())
    config_fail(std::string("\"") + key + "\" must be a number");
  const double v = it->get<double>();
  if (!(v >= lo && v <= hi)) {
    config_fail(std::string("\"") + key + "\" must be a finite number in [" +
                fmt_number(lo) + ", " + fmt_number(hi) + "], got " +
                it->dump());
  }
  return v;
}

bool get_bool(const json& j, const char* key, bool def) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_boolean())
    config_fail(std::string("\"") + key + "\" must be a boolean");
  return it->get<bool>();
}

std::string get_string(const json& j, const char* key, const std::string& def) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_string())
    config_fail(std::string("\"") + key + "\" must be a string");
  return it->get<std::string>();
}

Activation activation_of(const std::string& name) {
  if (name == "gelu") return Activation::kGelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" ||
      name == "gelu_fast") {
    return Activation::kGeluTanh;
  }
  if (name == "relu") return Activation::kRelu;
  if (name == "silu" || name == "swish") return Activation::kSilu;
  config_fail("unsupported activation \"" + name + "\"");
}

ModelConfig bert_config(const json& j) {
  if (get_string(j, "position_embedding_type", "absolute") != "absolute") {
    config_fail("only position_embedding_type \"absolute\" is supported");
  }
  ModelConfig c;
  const int64_t E = get_int(j, "hidden_size");
  c.vocab_size = get_int(j, "vocab_size");
  c.num_layers = get_int(j, "num_hidden_layers");
  c.max_positions = get_int(j, "max_position_embeddings");
  c.type_vocab_size = get_int(j, "type_vocab_size", 2);
  c.absolute = AbsolutePosition::kLearned;
  c.embedding_norm = true;
  c.final_norm = false;
  c.lm_head = false;
  c.block.attention = {.d_model = E,
                       .num_heads = get_int(j, "num_attention_heads")};
  c.block.mlp = {
      .d_model = E,
      .hidden = get_int(j, "intermediate_size"),
      .activation = activation_of(get_string(j, "hidden_act", "gelu"))};
  c.block.norm = NormKind::kLayerNorm;
  c.block.norm_eps =
      static_cast<float>(get_number(j, "layer_norm_eps", 1e-12, 0, kMaxEps));
  c.block.pre_norm = false;
  return c;
}

ModelConfig gpt2_config(const json& j) {
  if (get_bool(j, "scale_attn_by_inverse_layer_idx", false) ||
      get_bool(j, "reorder_and_upcast_attn", false) ||
      !get_bool(j, "scale_attn_weights", true)) {
    config_fail("GPT-2 attention scaling variants are not supported");
  }
  ModelConfig c;
  const int64_t E = get_int(j, "n_embd");
  c.vocab_size = get_int(j, "vocab_size");
  c.num_layers = get_int(j, "n_layer");
  c.max_positions = get_int(j, "n_positions");
  c.absolute = AbsolutePosition::kLearned;
  c.tied_lm_head = true;
  c.block.attention = {
      .d_model = E, .num_heads = get_int(j, "n_head"), .causal = true};
  c.block.mlp = {.d_model = E,
                 .hidden = get_int(j, "n_inner", 4 * E),
                 .activation = activation_of(
                     get_string(j, "activation_function", "gelu_new"))};
  c.block.norm_eps =
      static_cast<float>(get_number(j, "layer_norm_epsilon", 1e-5, 0, kMaxEps));
  c.block.pre_norm = true;
  return c;
}

ModelConfig llama_config(const json& j) {
  if (j.contains("sliding_window") && !j["sliding_window"].is_null()) {
    config_fail("\"sliding_window\" is not supported");
  }
  ModelConfig c;
  const int64_t E = get_int(j, "hidden_size"),
                H = get_int(j, "num_attention_heads");
  if (H == 0) config_fail("\"num_attention_heads\" must be > 0");
  c.vocab_size = get_int(j, "vocab_size");
  c.num_layers = get_int(j, "num_hidden_layers");
  c.tied_lm_head = get_bool(j, "tie_word_embeddings", false);
  const bool attention_bias = get_bool(j, "attention_bias", false);
  c.block.attention = {.d_model = E,
                       .num_heads = H,
                       .num_kv_heads = get_int(j, "num_key_value_heads", H),
                       .head_dim = get_int(j, "head_dim", E / H),
                       .qkv_bias = attention_bias,
                       .out_bias = attention_bias,
                       .causal = true,
                       .position = Position::kRope};
  RopeOptions& r = c.block.attention.rope;
  r.theta = get_number(j, "rope_theta", 10000.0, kMinPositive, kMaxFloat);
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const json& s = j["rope_scaling"];
    if (!s.is_object()) config_fail("\"rope_scaling\" must be an object");
    const std::string type =
        get_string(s, "rope_type", get_string(s, "type", ""));
    if (type != "llama3") {
      config_fail("rope_scaling type \"" + type +
                  "\" is not supported (llama3 is)");
    }
    RopeScaling sc;
    sc.factor = get_number(s, "factor", sc.factor, kMinPositive, kMaxFloat);
    sc.low_freq_factor = get_number(s, "low_freq_factor", sc.low_freq_factor,
                                    kMinPositive, kMaxFloat);
    sc.high_freq_factor = get_number(s, "high_freq_factor", sc.high_freq_factor,
                                     kMinPositive, kMaxFloat);
    sc.original_max_positions = get_int(s, "original_max_position_embeddings",
                                        sc.original_max_positions);
    r.scaling = sc;
  }
  c.block.mlp = {
      .d_model = E,
      .hidden = get_int(j, "intermediate_size"),
      .activation = activation_of(get_string(j, "hidden_act", "silu")),
      .gated = true,
      .bias = get_bool(j, "mlp_bias", false)};
  c.block.norm = NormKind::kRMSNorm;
  c.block.norm_eps =
      static_cast<float>(get_number(j, "rms_norm_eps", 1e-6, 0, kMaxEps));
  c.block.pre_norm = true;
  return c;
}

// Tensor lookup over several files, remembering what was taken.
class Source {
 public:
  explicit Source(std::span<const safetensors::File* const> files) {
    for (const safetensors::File* f : files) {
      if (f == nullptr)
        util::Check("attn::nn::load_weights").fail("files holds a null file");
      for (const std::string& n : f->names()) {
        if (!owner_.emplace(n, f).second) {
          util::Check("attn::nn::load_weights")
              .fail("tensor \"" + n + "\" appears in two files");
        }
      }
    }
  }
  bool has(const std::string& name) const { return owner_.count(name) > 0; }
  std::vector<float> take(const std::string& name, std::vector<int64_t> shape) {
    const auto it = owner_.find(name);
    if (it == owner_.end()) {
      util::Check("attn::nn::load_weights")
          .fail("the checkpoint has no tensor \"" + name + "\"");
    }
    used_.insert(name);
    return it->second->to_float(name, shape);
  }
  // [rows, cols] stored transposed ([cols, rows], GPT-2's Conv1D).
  std::vector<float> take_transposed(const std::string& name, int64_t rows,
                                     int64_t cols) {
    const std::vector<float> t = take(name, {cols, rows});
    std::vector<float> out(t.size());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = t[c * rows + r];
    }
    return out;
  }
  std::vector<std::string> unused() const {
    std::vector<std::string> out;
    for (const auto& [name, file] : owner_) {
      if (!used_.count(name)) out.push_back(name);
    }
    return out;
  }
  // The first of `prefixes` under which `probe` exists.
  std::string prefix(std::initializer_list<const char*> prefixes,
                     const std::string& probe) const {
    for (const char* p : prefixes) {
      if (has(p + probe)) return p;
    }
    util::Check("attn::nn::load_weights")
        .fail("the checkpoint has no tensor \"" + probe +
              "\" (under any known prefix)");
  }

 private:
  std::map<std::string, const safetensors::File*> owner_;
  std::set<std::string> used_;
};

std::vector<float> concat(std::vector<float> a, const std::vector<float>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

void load_norm(Source& src, const std::string& name, Norm& n,
               bool old_names = false) {
  const bool gamma =
      old_names && !src.has(name + ".weight") && src.has(name + ".gamma");
  n.weight = src.take(name + (gamma ? ".gamma" : ".weight"), {n.dim});
  if (n.kind == NormKind::kLayerNorm) {
    n.bias = src.take(name + (gamma ? ".beta" : ".bias"), {n.dim});
  }
}

void load_bert(TransformerModel& m, Source& src) {
  const std::string p =
      src.prefix({"", "bert."}, "embeddings.word_embeddings.weight");
  const int64_t E = m.d_model();
  const ModelConfig& c = m.config();
  m.token_embedding.weight =
      src.take(p + "embeddings.word_embeddings.weight", {c.vocab_size, E});
  m.position_embedding.weight = src.take(
      p + "embeddings.position_embeddings.weight", {c.max_positions, E});
  m.type_embedding.weight = src.take(
      p + "embeddings.token_type_embeddings.weight", {c.type_vocab_size, E});
  load_norm(src, p + "embeddings.LayerNorm", *m.embedding_norm, true);
  const int64_t F = c.block.mlp.hidden;
  for (size_t l = 0; l < m.layers.size(); ++l) {
    TransformerBlock& b = m.layers[l];
    const std::string q = p + "encoder.layer." + std::to_string(l) + ".";
    MultiHeadAttention& a = b.self_attn;
    a.q_proj.weight = src.take(q + "attention.self.query.weight", {E, E});
    a.q_proj.bias = src.take(q + "attention.self.query.bias", {E});
    a.kv_proj.weight =
        concat(src.take(q + "attention.self.key.weight", {E, E}),
               src.take(q + "attention.self.value.weight", {E, E}));
    a.kv_proj.bias = concat(src.take(q + "attention.self.key.bias", {E}),
                            src.take(q + "attention.self.value.bias", {E}));
    a.o_proj.weight = src.take(q + "attention.output.dense.weight", {E, E});
    a.o_proj.bias = src.take(q + "attention.output.dense.bias", {E});
    load_norm(src, q + "attention.output.LayerNorm", b.attn_norm, true);
    b.mlp.up.weight = src.take(q + "intermediate.dense.weight", {F, E});
    b.mlp.up.bias = src.take(q + "intermediate.dense.bias", {F});
    b.mlp.down.weight = src.take(q + "output.dense.weight", {E, F});
    b.mlp.down.bias = src.take(q + "output.dense.bias", {E});
    load_norm(src, q + "output.LayerNorm", b.mlp_norm, true);
  }
}

void load_gpt2(TransformerModel& m, Source& src) {
  const std::string p = src.prefix({"", "transformer."}, "wte.weight");
  const int64_t E = m.d_model();
  const ModelConfig& c = m.config();
  const int64_t F = c.block.mlp.hidden;
  m.token_embedding.weight = src.take(p + "wte.weight", {c.vocab_size, E});
  m.position_embedding.weight =
      src.take(p + "wpe.weight", {c.max_positions, E});
  for (size_t l = 0; l < m.layers.size(); ++l) {
    TransformerBlock& b = m.layers[l];
    const std::string q = p + "h." + std::to_string(l) + ".";
    load_norm(src, q + "ln_1", b.attn_norm);
    const std::vector<float> w =
        src.take_transposed(q + "attn.c_attn.weight", 3 * E, E);
    const std::vector<float> bias = src.take(q + "attn.c_attn.bias", {3 * E});
    MultiHeadAttention& a = b.self_attn;
    a.q_proj.weight.assign(w.begin(), w.begin() + E * E);
    a.kv_proj.weight.assign(w.begin() + E * E, w.end());
    a.q_proj.bias.assign(bias.begin(), bias.begin() + E);
    a.kv_proj.bias.assign(bias.begin() + E, bias.end());
    a.o_proj.weight = src.take_transposed(q + "attn.c_proj.weight", E, E);
    a.o_proj.bias = src.take(q + "attn.c_proj.bias", {E});
    load_norm(src, q + "ln_2", b.mlp_norm);
    b.mlp.up.weight = src.take_transposed(q + "mlp.c_fc.weight", F, E);
    b.mlp.up.bias = src.take(q + "mlp.c_fc.bias", {F});
    b.mlp.down.weight = src.take_transposed(q + "mlp.c_proj.weight", E, F);
    b.mlp.down.bias = src.take(q + "mlp.c_proj.bias", {E});
  }
  load_norm(src, p + "ln_f", *m.final_norm);
}

void load_llama(TransformerModel& m, Source& src) {
  const std::string p = src.prefix({"model.", ""}, "embed_tokens.weight");
  const int64_t E = m.d_model();
  const ModelConfig& c = m.config();
  const int64_t F = c.block.mlp.hidden;
  const AttentionConfig& ac = c.block.attention;
  const int64_t D = m.layers.empty() ? 0 : m.layers[0].self_attn.head_dim();
  const int64_t Hq = ac.num_heads, Hkv = ac.num_kv_heads;
  m.token_embedding.weight =
      src.take(p + "embed_tokens.weight", {c.vocab_size, E});
  for (size_t l = 0; l < m.layers.size(); ++l) {
    TransformerBlock& b = m.layers[l];
    const std::string q = p + "layers." + std::to_string(l) + ".";
    load_norm(src, q + "input_layernorm", b.attn_norm);
    MultiHeadAttention& a = b.self_attn;
    a.q_proj.weight = src.take(q + "self_attn.q_proj.weight", {Hq * D, E});
    a.kv_proj.weight =
        concat(src.take(q + "self_attn.k_proj.weight", {Hkv * D, E}),
               src.take(q + "self_attn.v_proj.weight", {Hkv * D, E}));
    a.o_proj.weight = src.take(q + "self_attn.o_proj.weight", {E, Hq * D});
    if (ac.qkv_bias) {
      a.q_proj.bias = src.take(q + "self_attn.q_proj.bias", {Hq * D});
      a.kv_proj.bias = concat(src.take(q + "self_attn.k_proj.bias", {Hkv * D}),
                              src.take(q + "self_attn.v_proj.bias", {Hkv * D}));
    }
    if (ac.out_bias) a.o_proj.bias = src.take(q + "self_attn.o_proj.bias", {E});
    load_norm(src, q + "post_attention_layernorm", b.mlp_norm);
    b.mlp.up.weight = concat(src.take(q + "mlp.gate_proj.weight", {F, E}),
                             src.take(q + "mlp.up_proj.weight", {F, E}));
    b.mlp.down.weight = src.take(q + "mlp.down_proj.weight", {E, F});
    if (c.block.mlp.bias) {
      b.mlp.up.bias = concat(src.take(q + "mlp.gate_proj.bias", {F}),
                             src.take(q + "mlp.up_proj.bias", {F}));
      b.mlp.down.bias = src.take(q + "mlp.down_proj.bias", {E});
    }
  }
  load_norm(src, p + "norm", *m.final_norm);
  if (!c.tied_lm_head)
    m.lm_head.weight = src.take("lm_head.weight", {c.vocab_size, E});
}

}  // namespace

ModelConfig config_from_json(const std::string& text, Family* family) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    config_fail(std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) config_fail("must be a JSON object");
  const std::string type = get_string(j, "model_type", "");
  Family f;
  ModelConfig c;
  if (type == "bert") {
    f = Family::kBert;
    c = bert_config(j);
  } else if (type == "gpt2") {
    f = Family::kGpt2;
    c = gpt2_config(j);
  } else if (type == "llama" || type == "mistral") {
    f = Family::kLlama;
    c = llama_config(j);
  } else {
    config_fail("model_type \"" + type +
                "\" is not supported (bert, gpt2, llama, "
                "mistral are)");
  }
  if (family != nullptr) *family = f;
  return c;
}

std::vector<std::string> load_weights(
    TransformerModel& model, Family family,
    std::span<const safetensors::File* const> files) {
  Source src(files);
  switch (family) {
    case Family::kBert:
      load_bert(model, src);
      break;
    case Family::kGpt2:
      load_gpt2(model, src);
      break;
    case Family::kLlama:
      load_llama(model, src);
      break;
  }
  return src.unused();
}

bool ignorable_tensor(Family family, const std::string& name) {
  const auto ends_with = [&](std::string_view tail) {
    return name.size() >= tail.size() &&
           name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
  };
  const auto starts_with = [&](std::string_view head) {
    return name.compare(0, head.size(), head) == 0;
  };
  if (ends_with("position_ids")) return true;
  switch (family) {
    case Family::kBert:
      return starts_with("pooler.") || starts_with("bert.pooler.") ||
             starts_with("cls.");
    case Family::kGpt2:
      return ends_with(".attn.bias") || ends_with(".attn.masked_bias");
    case Family::kLlama:
      return ends_with("rotary_emb.inv_freq");
  }
  return false;
}

TransformerModel load_model(const std::string& config_path,
                            std::span<const std::string> weight_paths,
                            const LoadOptions& options) {
  const util::Check where("attn::nn::load_model");
  const std::vector<std::byte> bytes = util::read_file(config_path, "config");
  Family family;
  const ModelConfig c = config_from_json(
      std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
      &family);
  if (weight_paths.empty()) where.fail("weight_paths is empty");
  std::vector<safetensors::File> files;
  for (const std::string& p : weight_paths)
    files.push_back(safetensors::File::load(p));
  std::vector<const safetensors::File*> ptrs;
  for (const auto& f : files) ptrs.push_back(&f);
  // The config against the files before the model is allocated: its
  // weights must be among the values present (each loaded tensor is one
  // of the files'), so a config whose sizes describe a model the files do
  // not hold is refused here, not by std::bad_alloc.
  double present = 0;
  for (const safetensors::File& f : files) {
    for (const std::string& n : f.names()) {
      double numel = 1;
      for (int64_t e : f.info(n).shape) numel *= static_cast<double>(e);
      present += numel;
    }
  }
  const double needed = TransformerModel::weight_floats(c, true);
  if (needed > present) {
    where.fail("config '" + config_path + "' describes a model of " +
               fmt_number(needed, "%.0f") +
               " weights, but the checkpoint's tensors hold " +
               fmt_number(present, "%.0f") +
               " values: its sizes (hidden size, vocabulary, layers, "
               "intermediate size) do not match the weights");
  }
  TransformerModel m(c);
  std::vector<std::string> unused = load_weights(m, family, ptrs);
  std::erase_if(unused, [&](const std::string& n) {
    return ignorable_tensor(family, n);
  });
  if (!unused.empty() && !options.allow_unused) {
    std::string names;
    for (size_t i = 0; i < unused.size() && i < 5; ++i)
      names += (i ? ", " : "") + ("\"" + unused[i] + "\"");
    if (unused.size() > 5)
      names += " and " + std::to_string(unused.size() - 5) + " more";
    std::string hint;
    if (c.tied_lm_head && std::find(unused.begin(), unused.end(),
                                    "lm_head.weight") != unused.end()) {
      hint =
          " (the config ties the LM head to the token embeddings, "
          "tie_word_embeddings, yet the file has its own lm_head.weight)";
    } else {
      hint = " (does the config's layer count, " +
             std::to_string(c.num_layers) + ", match the checkpoint?)";
    }
    where.fail(std::to_string(unused.size()) +
               " tensor(s) of the checkpoint are not used by the model the "
               "config describes: " +
               names + hint + "; allow them with LoadOptions::allow_unused");
  }
  return m;
}

}  // namespace attn::nn
