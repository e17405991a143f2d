// KV-cache byte counts: exact arithmetic, published figures, errors.
#include <gtest/gtest.h>

#include "attn/error.h"
#include "attn/kv_memory.h"
#include "bench/support/model_shapes.h"

namespace attn {
namespace {

TEST(KvMemory, ExactCounts) {
  // 2 (K, V) x layers x heads x dim x tokens x batch x bytes.
  EXPECT_EQ(kv_cache_bytes(2, 3, 5, 7, 11, CacheType::kFloat32),
            2ull * 2 * 3 * 5 * 7 * 11 * 4);
  EXPECT_EQ(kv_cache_bytes(2, 3, 5, 7, 11, CacheType::kBFloat16),
            2ull * 2 * 3 * 5 * 7 * 11 * 2);
  EXPECT_EQ(kv_cache_bytes(2, 3, 5, 7, 11, CacheType::kFloat16),
            2ull * 2 * 3 * 5 * 7 * 11 * 2);
  // int8: 1 byte per element plus a float32 scale per token and head, for
  // each of K and V.
  EXPECT_EQ(kv_cache_bytes(2, 3, 5, 7, 11, CacheType::kInt8),
            2ull * 3 * 7 * 11 * (2 * 5 + 2 * 4));
}

TEST(KvMemory, PublishedLlamaFigures) {
  // Llama-3.1-8B, 128K tokens, bf16: 16 GiB; 70B: 40 GiB.
  for (const auto& m : bench::model_shapes()) {
    const uint64_t b = kv_cache_bytes(m.layers, m.kv_heads, m.head_dim, 131072,
                                      1, CacheType::kBFloat16);
    if (m.name == "llama-3.1-8b") {
      EXPECT_EQ(b, 16ull << 30);
    }
    if (m.name == "llama-3.1-70b") {
      EXPECT_EQ(b, 40ull << 30);
    }
    EXPECT_EQ(m.q_heads % m.kv_heads, 0) << m.name;
  }
}

TEST(KvMemory, Errors) {
  EXPECT_THROW(kv_cache_bytes(0, 1, 1, 1, 1, CacheType::kInt8), Error);
  EXPECT_THROW(kv_cache_bytes(1, 1, 1, -5, 1, CacheType::kInt8), Error);
  EXPECT_THROW(kv_cache_bytes(int64_t{1} << 40, int64_t{1} << 20, 128, 1 << 20,
                              1, CacheType::kFloat32),
               Error);
  EXPECT_EQ(parse_cache_type("int8"), CacheType::kInt8);
  EXPECT_THROW(parse_cache_type("int4"), Error);
}

}  // namespace
}  // namespace attn
