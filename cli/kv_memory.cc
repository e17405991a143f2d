// `attn kv-memory`: what a KV cache costs. For each model (or an explicit
// shape) and cache type, prints the bytes at the given context and batch
// with the model's own KV heads (GQA where it has fewer than its query
// heads), with one KV head per query head (MHA) and with one KV head (MQA).
#include "cli/kv_memory.h"

#include <attn/attn.h>
#include <fmt/core.h>

#include "bench/support/model_shapes.h"

namespace attn_cli {
namespace {

std::string human(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{:.2f} {}", v, units[u]);
}

}  // namespace

void add_kv_memory_options(CLI::App& cmd, KvMemoryArgs& a) {
  std::string names;
  for (const auto& m : attn::bench::model_shapes())
    names += (names.empty() ? "" : ", ") + m.name;
  cmd.add_option("--model", a.models, "models (default all): " + names);
  cmd.add_option("--layers", a.layers, "explicit shape: layers")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--q-heads", a.q_heads, "explicit shape: query heads")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--kv-heads", a.kv_heads, "explicit shape: KV heads")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--head-dim", a.head_dim, "explicit shape: head dim")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--context", a.context,
                 "tokens cached per sequence (default 131072)")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--batch", a.batch, "sequences (default 1)")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--dtype", a.dtypes,
                 "cache types: float32, bfloat16 (default), float16, int8");
}

int kv_memory_command(const KvMemoryArgs& a) {
  std::vector<attn::bench::ModelShape> models;
  const bool explicit_shape = a.layers || a.q_heads || a.kv_heads || a.head_dim;
  if (explicit_shape) {
    if (!a.layers || !a.q_heads || !a.head_dim) {
      throw attn::Error(
          "--layers, --q-heads and --head-dim go together (--kv-heads "
          "defaults to --q-heads)");
    }
    const int64_t kv = a.kv_heads ? a.kv_heads : a.q_heads;
    if (a.q_heads % kv != 0) {
      throw attn::Error("--q-heads must be a multiple of --kv-heads");
    }
    models.push_back({"custom", a.layers, a.q_heads, kv, a.head_dim});
  }
  for (const std::string& name : a.models) {
    bool found = false;
    for (const auto& m : attn::bench::model_shapes()) {
      if (m.name == name) {
        models.push_back(m);
        found = true;
      }
    }
    if (!found) throw attn::Error("--model: unknown model '" + name + "'");
  }
  if (models.empty()) models = attn::bench::model_shapes();
  std::vector<attn::CacheType> types;
  for (const std::string& t : a.dtypes)
    types.push_back(attn::parse_cache_type(t));

  fmt::print("KV cache for {} tokens x batch {} (K and V, all layers)\n\n",
             a.context, a.batch);
  fmt::print("{:<18} {:>7} {:>6} {:>9} {:>5} {:<9} {:>14} {:>14} {:>14}\n",
             "model", "layers", "heads", "kv heads", "dim", "dtype", "MHA",
             "as published", "MQA");
  for (const auto& m : models) {
    for (attn::CacheType t : types) {
      auto bytes = [&](int64_t kv) {
        return human(attn::kv_cache_bytes(m.layers, kv, m.head_dim, a.context,
                                          a.batch, t));
      };
      fmt::print("{:<18} {:>7} {:>6} {:>9} {:>5} {:<9} {:>14} {:>14} {:>14}\n",
                 m.name, m.layers, m.q_heads, m.kv_heads, m.head_dim,
                 attn::cache_type_name(t), bytes(m.q_heads), bytes(m.kv_heads),
                 bytes(1));
    }
  }
  return 0;
}

}  // namespace attn_cli
