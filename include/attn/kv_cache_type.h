// The element types a KV cache stores (attn/kv_cache.h), their names, and
// parsing them (for the CLI and config files).
#ifndef ATTN_KV_CACHE_TYPE_H_
#define ATTN_KV_CACHE_TYPE_H_

#include <string>

namespace attn {

enum class CacheType { kFloat32, kBFloat16, kFloat16, kInt8 };

const char* cache_type_name(CacheType type);
// Parses "float32", "bfloat16", "float16" or "int8"; throws attn::Error.
CacheType parse_cache_type(const std::string& name);

}  // namespace attn

#endif  // ATTN_KV_CACHE_TYPE_H_
