// KVCache::Impl: the page pools, block tables and reference counts behind
// attn::KVCache (include/attn/kv_cache.h), shared with the attention entry
// points that read the cache in place.
#ifndef ATTN_SRC_CACHE_KV_CACHE_IMPL_H_
#define ATTN_SRC_CACHE_KV_CACHE_IMPL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

#include "attn/kv_cache.h"
#include "src/core/page_layout.h"
#include "src/kernels/kv_source.h"

namespace attn {

struct KVCache::Impl {
  // Pools are aligned to kHugePage (and offered to the kernel for huge
  // pages: see allocate in kv_cache.cc).
  static constexpr std::size_t kHugePage = std::size_t{2} << 20;
  struct Free {
    void operator()(std::byte* p) const {
      ::operator delete[](p, std::align_val_t(kHugePage));
    }
  };
  using Buffer = std::unique_ptr<std::byte[], Free>;

  // One layer's pools: K [pages, Hkv, P, D], V [pages, Hkv, P, Dv] in the
  // cache's element type; int8 scales [pages, Hkv, P] for each.
  struct Layer {
    Buffer k, v, k_scales, v_scales;
  };

  KVCacheOptions options;  // value_head_dim and num_pages resolved
  int64_t D = 0, Dv = 0;
  // Hkv, P (max_tokens when contiguous), log2(P), blocks per sequence.
  detail::PageLayout layout;
  std::size_t element_bytes = 0;
  std::vector<Layer> layers;

  // Per sequence slot (id): alive, pages held (a prefix of its table row),
  // tokens per layer.
  std::vector<uint8_t> alive;
  std::vector<int64_t> pages_held;
  std::vector<int64_t> lengths;     // [max_sequences, num_layers]
  std::vector<int32_t> tables;      // [max_sequences, table_width]
  std::vector<int32_t> refcount;    // per page
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
  // Scratch of append, grown to the largest append and kept, so a decode
  // step allocates nothing: keys as float [Hkv, n, D] (rotated before they
  // are stored), one value row, and the pages an append would copy
  // (pending[page] = copies counted so far, nonzero only for `touched`).
  std::vector<float> append_keys, append_row;
  std::vector<int32_t> pending, touched;

  // Layer `layer` of the cache as the kernels' paged source, for the batch
  // entries whose sequence ids are `sequences` (which must outlive it).
  template <class E>
  kernels::PagedKV<E> paged(int64_t layer, const int64_t* sequences) const {
    const Layer& pools = layers[layer];
    kernels::PagedKV<E> kv;
    kv.k = reinterpret_cast<const E*>(pools.k.get());
    kv.v = reinterpret_cast<const E*>(pools.v.get());
    kv.k_scales = reinterpret_cast<const float*>(pools.k_scales.get());
    kv.v_scales = reinterpret_cast<const float*>(pools.v_scales.get());
    kv.tables = tables.data();
    kv.sequences = sequences;
    kv.layout = layout;
    kv.D = D;
    kv.Dv = Dv;
    return kv;
  }
};

}  // namespace attn

#endif  // ATTN_SRC_CACHE_KV_CACHE_IMPL_H_
