// Benchmark and test support, not library API: the query an int8 KV
// cache's decode computes with. Against an int8 cache, work items of at
// most 4 query rows (G * Sq <= 4: decode of up to 4 heads per KV head)
// quantise each query row as the cache quantises keys, q8 = round(q / s)
// with s = max|q| / 127, and compute q8 . k8 on integers
// (docs/kv-cache.md). Checks compare such calls with the float64 reference
// on this quantised query, which is what they compute.
#ifndef ATTN_BENCH_SUPPORT_INT8_QUERY_H_
#define ATTN_BENCH_SUPPORT_INT8_QUERY_H_

#include <cstdint>
#include <vector>

#include "attn/kv_cache_type.h"
#include "attn/tensor.h"

namespace attn::bench {

// Whether a call of Sq query positions and G query heads per KV head
// against a cache of `type` quantises its query rows.
inline bool int8_query_path(CacheType type, int64_t G, int64_t Sq) {
  return type == CacheType::kInt8 && G * Sq <= 4;
}

// q's rows (any strides with a contiguous last axis) quantised as above and
// dequantised, s * q8, as a dense [B, H, S, D] copy. Rows with a non-finite
// value are copied as they are (the kernels do not quantise them).
std::vector<float> int8_quantised_query(TensorView<const float> q);

}  // namespace attn::bench

#endif  // ATTN_BENCH_SUPPORT_INT8_QUERY_H_
