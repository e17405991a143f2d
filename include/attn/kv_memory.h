// KV-cache memory arithmetic: how many bytes a cache of keys and values
// takes for a model shape, context length, batch and element type. The
// numbers the KV cache itself will reserve, and what `attn kv-memory`
// prints.
#ifndef ATTN_KV_MEMORY_H_
#define ATTN_KV_MEMORY_H_

#include <cstdint>

#include "attn/kv_cache_type.h"

namespace attn {

// Bytes for K and V of `layers` layers x `kv_heads` heads x `head_dim` x
// `tokens` x `batch`. int8 stores one symmetric float32 scale per token and
// head beside each of K and V. Throws attn::Error for non-positive sizes or
// a product that overflows 64 bits.
uint64_t kv_cache_bytes(int64_t layers, int64_t kv_heads, int64_t head_dim,
                        int64_t tokens, int64_t batch, CacheType type);

}  // namespace attn

#endif  // ATTN_KV_MEMORY_H_
