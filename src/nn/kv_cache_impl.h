// KVCache::Impl: the page pools, block tables and reference counts behind
// attn::KVCache (include/attn/kv_cache.h), shared with the attention entry
// points that read the cache in place.
#ifndef ATTN_SRC_NN_KV_CACHE_IMPL_H_
#define ATTN_SRC_NN_KV_CACHE_IMPL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

#include "attn/kv_cache.h"

namespace attn {

struct KVCache::Impl {
  struct Free {
    void operator()(std::byte* p) const {
      ::operator delete[](p, std::align_val_t(64));
    }
  };
  using Buffer = std::unique_ptr<std::byte[], Free>;

  // One layer's pools: K [pages, Hkv, P, D], V [pages, Hkv, P, Dv] in the
  // cache's element type; int8 scales [pages, Hkv, P] for each.
  struct Layer {
    Buffer k, v, k_scales, v_scales;
  };

  KVCacheOptions options;  // value_head_dim and num_pages resolved
  int64_t D = 0, Dv = 0, Hkv = 0;
  int64_t page_size = 0;    // P (max_tokens when contiguous)
  int page_shift = -1;      // log2(P) when a power of two
  int64_t table_width = 0;  // blocks per sequence: ceil(max_tokens / P)
  std::size_t element_bytes = 0;
  std::vector<Layer> layers;

  // Per sequence slot (id): alive, pages held (a prefix of its table row),
  // tokens per layer.
  std::vector<uint8_t> alive;
  std::vector<int64_t> pages_held;
  std::vector<int64_t> lengths;  // [max_sequences, num_layers]
  std::vector<int32_t> tables;   // [max_sequences, table_width]
  std::vector<int32_t> refcount;  // per page
  std::vector<int32_t> free_pages;  // a stack; pages handed out from the back
  int64_t live = 0;

  int64_t& length(int64_t seq, int64_t layer) {
    return lengths[seq * options.num_layers + layer];
  }
  int64_t length(int64_t seq, int64_t layer) const {
    return lengths[seq * options.num_layers + layer];
  }
  // Bytes of one page in one layer: K, V and (int8) their scales.
  std::size_t page_bytes() const;
  // Element offset of row (page, head, slot within the page) in a K pool;
  // multiply by Dv instead of D for V.
  int64_t row(int64_t page, int64_t h, int64_t within) const {
    return (page * Hkv + h) * page_size + within;
  }
};

}  // namespace attn

#endif  // ATTN_SRC_NN_KV_CACHE_IMPL_H_
