// KV-cache memory arithmetic: how many bytes a cache of keys and values
// takes for a model shape, context length, batch and element type. The
// numbers the KV cache itself will reserve, and what `attn kv-memory`
// prints.
#ifndef ATTN_KV_MEMORY_H_
#define ATTN_KV_MEMORY_H_

#include <cstdint>
#include <string>
#include <vector>

namespace attn {

enum class CacheType { kFloat32, kBFloat16, kFloat16, kInt8 };

const char* cache_type_name(CacheType type);
// Parses "float32", "bfloat16", "float16" or "int8"; throws attn::Error.
CacheType parse_cache_type(const std::string& name);

// Bytes for K and V of `layers` layers x `kv_heads` heads x `head_dim` x
// `tokens` x `batch`. int8 stores one symmetric float32 scale per token and
// head beside each of K and V. Throws attn::Error for non-positive sizes or
// a product that overflows 64 bits.
uint64_t kv_cache_bytes(int64_t layers, int64_t kv_heads, int64_t head_dim,
                        int64_t tokens, int64_t batch, CacheType type);

// Published attention shapes of well-known models (decoder self-attention
// for encoder-decoder models).
struct ModelShape {
  std::string name;
  int64_t layers, q_heads, kv_heads, head_dim;
};
const std::vector<ModelShape>& model_shapes();

}  // namespace attn

#endif  // ATTN_KV_MEMORY_H_
