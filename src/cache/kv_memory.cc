#include "attn/kv_memory.h"

#include "attn/error.h"

namespace attn {

const char* cache_type_name(CacheType type) {
  switch (type) {
    case CacheType::kFloat32:
      return "float32";
    case CacheType::kBFloat16:
      return "bfloat16";
    case CacheType::kFloat16:
      return "float16";
    case CacheType::kInt8:
      return "int8";
  }
  return "unknown";
}

CacheType parse_cache_type(const std::string& name) {
  for (CacheType t : {CacheType::kFloat32, CacheType::kBFloat16,
                      CacheType::kFloat16, CacheType::kInt8}) {
    if (name == cache_type_name(t)) return t;
  }
  throw Error("cache type: expected float32, bfloat16, float16 or int8, got '" +
              name + "'");
}

uint64_t kv_cache_bytes(int64_t layers, int64_t kv_heads, int64_t head_dim,
                        int64_t tokens, int64_t batch, CacheType type) {
  const int64_t args[] = {layers, kv_heads, head_dim, tokens, batch};
  const char* names[] = {"layers", "kv_heads", "head_dim", "tokens", "batch"};
  for (int i = 0; i < 5; ++i) {
    if (args[i] < 1) {
      throw Error(std::string("attn::kv_cache_bytes: ") + names[i] +
                  " must be >= 1, got " + std::to_string(args[i]));
    }
  }
  const uint64_t elem = type == CacheType::kFloat32 ? 4
                        : type == CacheType::kInt8  ? 1
                                                    : 2;
  // Per token, layer and head: K and V rows, plus int8's two scales.
  uint64_t per_head_token = 2 * (uint64_t(head_dim) * elem);
  if (type == CacheType::kInt8) per_head_token += 2 * sizeof(float);
  uint64_t total = per_head_token;
  for (int64_t f : {layers, kv_heads, tokens, batch}) {
    if (__builtin_mul_overflow(total, uint64_t(f), &total)) {
      throw Error("attn::kv_cache_bytes: size overflows 64 bits");
    }
  }
  return total;
}

}  // namespace attn
