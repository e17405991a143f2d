// attn::KVCache: the keys and values of past tokens, per layer and
// sequence, for generation; and attention of new queries against it.
//
// Storage is a pool of pages per layer, each page holding P tokens of every
// KV head ([pages, Hkv, P, D] for keys, [pages, Hkv, P, Dv] for values),
// and a block table per sequence mapping its i-th block of P tokens to a
// page (as in vLLM's paged attention). Two configurations:
//   contiguous (page_size = 0): each sequence owns one page of max_tokens
//                               tokens (every pool is allocated when the
//                               cache is made);
//   paged (page_size = P > 0):  sequences take pages of P tokens from a
//                               shared pool as they grow.
// Sequences are added, freed and forked. A fork shares its parent's pages;
// the first append to a shared page copies it (copy-on-write), so forks of
// a long prompt cost one page each until they diverge.
//
// Element types (CacheType): float32, bfloat16, float16, and int8 with one
// float32 scale per token and head for each of K and V (symmetric:
// x ~ scale * q, scale = max|x| / 127, q = round(x / scale)); the kernels
// dequantise as they read. Appended keys and values arrive as float32,
// bfloat16 or float16 and are rounded (RNE) or quantised to the cache type.
// With `rope` set, keys are rotated at their positions (0, 1, ... per
// sequence) as they are appended; queries are the caller's to rotate
// (attn::apply_rope with offset = the sequence's length before the append).
//
// Every call checks its arguments and capacity before writing anything and
// throws attn::Error naming what is wrong (unknown sequence, layer out of
// range, max_tokens or the page pool exceeded, shape mismatch); a failed
// call leaves the cache as it was. A KVCache is not thread-safe: one caller
// at a time (attention calls only read it).
#ifndef ATTN_KV_CACHE_H_
#define ATTN_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "attn/kv_cache_type.h"
#include "attn/kv_memory.h"
#include "attn/options.h"
#include "attn/rope.h"
#include "attn/tensor.h"
#include "attn/types.h"

namespace attn {

struct KVCacheOptions {
  int64_t num_layers = 1;
  int64_t num_kv_heads = 0;    // Hkv
  int64_t head_dim = 0;        // D of keys (and queries)
  int64_t value_head_dim = 0;  // Dv; 0 = head_dim
  CacheType type = CacheType::kFloat32;
  int64_t max_sequences = 1;  // sequences alive at once
  int64_t max_tokens = 0;     // per sequence
  // 0: contiguous. > 0: paged, with pages of this many tokens (a power of
  // two reads fastest).
  int64_t page_size = 0;
  // Paged: pages in each layer's pool; 0 = enough for max_sequences full
  // sequences. Contiguous: ignored (one page per sequence slot).
  int64_t num_pages = 0;
  // Rotate keys as they are appended.
  std::optional<RopeOptions> rope;
};

class KVCache {
 public:
  // Reserves every page up front (bytes_reserved()); throws attn::Error for
  // a bad option or when the memory cannot be had.
  explicit KVCache(const KVCacheOptions& options);
  ~KVCache();
  KVCache(KVCache&&) noexcept;
  KVCache& operator=(KVCache&&) noexcept;
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  // A new, empty sequence; returns its id (ids of freed sequences are
  // reused). Throws when max_sequences are alive.
  int64_t add_sequence();
  // A new sequence holding the same tokens as `sequence` in every layer,
  // sharing its pages. Throws when max_sequences are alive.
  int64_t fork(int64_t sequence);
  // Frees a sequence; its pages return to the pool when no fork shares them.
  void free_sequence(int64_t sequence);

  // Appends n tokens to layer `layer` of each listed sequence:
  //   k [B, Hkv, n, D], v [B, Hkv, n, Dv], B = sequences.size(),
  // batch entry b going to sequences[b] (distinct ids). Any strides with a
  // contiguous innermost axis.
  void append(int64_t layer, std::span<const int64_t> sequences,
              TensorView<const float> k, TensorView<const float> v);
  void append(int64_t layer, std::span<const int64_t> sequences,
              TensorView<const bfloat16> k, TensorView<const bfloat16> v);
  void append(int64_t layer, std::span<const int64_t> sequences,
              TensorView<const float16> k, TensorView<const float16> v);

  // Copies layer `layer` of a sequence out as float32 (dequantised):
  //   k [1, Hkv, length, D], v [1, Hkv, length, Dv].
  void read(int64_t sequence, int64_t layer, TensorView<float> k,
            TensorView<float> v) const;

  // Tokens stored in layer `layer` of a sequence.
  int64_t length(int64_t sequence, int64_t layer = 0) const;
  bool alive(int64_t sequence) const;
  int64_t num_sequences() const;  // alive
  int64_t pages_free() const;
  int64_t pages_total() const;
  const KVCacheOptions& options() const;

  // Bytes of the pages that live sequences hold (shared pages counted
  // once), over all layers, K, V and int8 scales.
  uint64_t bytes_used() const;
  // Bytes the cache holds from the system: every page plus the tables.
  uint64_t bytes_reserved() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Attention of new queries against the cache. Batch entry b reads layer
// `layer` of sequences[b]: its keys are that sequence's L_b tokens, and
// under bottom-right alignment query i sits at position L_b - Sq + i, so a
// chunk of Sq tokens appended just before the call attends causally to the
// whole prefix and to itself (chunked prefill; Sq = 1 is one decode step).
//   q [B, Hq, Sq, D], out [B, Hq, Sq, Dv], lse [B, Hq, Sq, 1] (optional),
// Hq a multiple of the cache's Hkv. Every option applies as in
// attn::attention with Skv = max_b L_b (masks and biases broadcast to
// [B, Hq, Sq, Skv]); key_lengths, when given, must not exceed L_b and
// shorten sequence b to that many keys. Algorithms: decode (what auto picks
// for Sq <= 16) and flash read the pages in place; reference and naive copy
// the keys out first. Query types: float32 with any cache type, or
// bfloat16 / float16 with a cache of the same type.
Algorithm attention(TensorView<const float> q, const KVCache& cache,
                    int64_t layer, std::span<const int64_t> sequences,
                    TensorView<float> out, const AttentionOptions& options = {},
                    TensorView<float> lse = {});
Algorithm attention(TensorView<const bfloat16> q, const KVCache& cache,
                    int64_t layer, std::span<const int64_t> sequences,
                    TensorView<bfloat16> out,
                    const AttentionOptions& options = {},
                    TensorView<float> lse = {});
Algorithm attention(TensorView<const float16> q, const KVCache& cache,
                    int64_t layer, std::span<const int64_t> sequences,
                    TensorView<float16> out,
                    const AttentionOptions& options = {},
                    TensorView<float> lse = {});

// Merges partial attention results over disjoint key sets, e.g. computed
// by the caller on different machines or against different caches:
//   outs[s] [B, Hq, Sq, Dv], lses[s] [B, Hq, Sq, 1] for s < n,
//   out [B, Hq, Sq, Dv], lse [B, Hq, Sq, 1] (optional)
// out = sum_s w_s outs[s] / sum_s w_s with w_s = exp(lses[s] - max_s lses[s]),
// lse = log sum_s exp(lses[s]); parts with lse = -inf (or a weight that
// underflows to 0) weigh nothing and their outs are not read, a row where
// all are -inf is 0 with lse -inf, and a part with lse NaN or +inf makes
// the row NaN with lse NaN (docs/semantics.md, rule 8). out may be one of
// the outs.
void merge(std::span<const TensorView<const float>> outs,
           std::span<const TensorView<const float>> lses, TensorView<float> out,
           TensorView<float> lse = {});

}  // namespace attn

#endif  // ATTN_KV_CACHE_H_
