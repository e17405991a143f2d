// attn::KVCache: page pools, block tables, forks with copy-on-write, and the
// conversions between the caller's rows and the cache's element type.
//
// A sequence id is a row of the block table. Its pages are a prefix of that
// row (pages_held), shared by every layer: page i holds tokens
// [i P, (i + 1) P) of each layer. An append first works out how many pages
// it needs (new blocks, plus copies of shared pages it would write into),
// fails before touching anything if the pool cannot give them, then copies
// shared pages, takes new ones and writes the rows.
#include "attn/kv_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "attn/error.h"
#include "src/cache/kv_cache_impl.h"
#include "src/core/row_codec.h"
#include "src/core/views.h"
#include "src/util/check.h"

namespace attn {
namespace {

// The most one cache may hold (pools and tables together): far above any
// machine's memory, and below what one allocation may ask for.
constexpr uint64_t kMaxCacheBytes = uint64_t{1} << 40;

// The cache's entry points, named as its messages name them.
constexpr util::Check kConstruct("attn::KVCache::KVCache");

std::size_t element_size(CacheType t) {
  switch (t) {
    case CacheType::kFloat32:
      return 4;
    case CacheType::kBFloat16:
    case CacheType::kFloat16:
      return 2;
    case CacheType::kInt8:
      return 1;
  }
  return 0;
}

// A pool, aligned to 2 MiB and, where the kernel offers transparent huge
// pages on request (madvise mode, the common default), asked for them:
// decode reads every page of the pool, and 4 KiB pages cost a TLB miss per
// 4 KiB of K or V (one 16-token page of one head at D 128, bfloat16).
KVCache::Impl::Buffer allocate(uint64_t bytes) {
  if (bytes == 0) return {};
  constexpr std::size_t huge = KVCache::Impl::kHugePage;
  void* p = ::operator new[](bytes, std::align_val_t(huge), std::nothrow);
  if (p == nullptr) {
    kConstruct.fail("cannot reserve " + std::to_string(bytes) + " bytes");
  }
#ifdef MADV_HUGEPAGE
  if (bytes >= huge) madvise(p, bytes / huge * huge, MADV_HUGEPAGE);
#endif
  return KVCache::Impl::Buffer(static_cast<std::byte*>(p));
}

// a * b, or an error naming what overflowed.
uint64_t mul(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    kConstruct.fail("cache size overflows 64 bits");
  return r;
}

// a + b, or an error naming what overflowed.
uint64_t add(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r))
    kConstruct.fail("cache size overflows 64 bits");
  return r;
}

// Calls f with a value of the cache's element type (its type is all that
// matters).
template <class F>
decltype(auto) with_element(CacheType t, F&& f) {
  switch (t) {
    case CacheType::kBFloat16:
      return f(bfloat16{});
    case CacheType::kFloat16:
      return f(float16{});
    case CacheType::kInt8:
      return f(int8_t{});
    case CacheType::kFloat32:
      break;
  }
  return f(float{});
}

void check_sequence(const KVCache::Impl& c, const util::Check& check,
                    int64_t seq) {
  if (seq < 0 || seq >= c.options.max_sequences || !c.alive[seq]) {
    check.fail("sequence " + std::to_string(seq) + " is not a live sequence");
  }
}

void check_layer(const KVCache::Impl& c, const util::Check& check,
                 int64_t layer) {
  if (layer < 0 || layer >= c.options.num_layers) {
    check.fail("layer must be in [0, " + std::to_string(c.options.num_layers) +
               "), got " + std::to_string(layer));
  }
}

// k or v of an append: the shape the cache expects, a valid view (no data
// needed when there are no new tokens).
template <class T>
void check_rows(const util::Check& check, const std::string& arg,
                const TensorView<T>& x, const Extents& want) {
  if (x.extents() != want) {
    check.fail(arg, "expected shape " + detail::shape_str(want) + ", got " +
                        detail::shape_str(x.extents()));
  }
  detail::check_view(check, arg, x, {.empty_seq_ok = true});
}

int32_t take_page(KVCache::Impl& c) {
  const int32_t page = c.free_pages.back();
  c.free_pages.pop_back();
  c.refcount[page] = 1;
  return page;
}

void drop_page(KVCache::Impl& c, int32_t page) {
  if (--c.refcount[page] == 0) c.free_pages.push_back(page);
}

// Copies page `from` to a fresh page in every layer; returns the new page.
int32_t copy_page(KVCache::Impl& c, int32_t from) {
  const int32_t to = take_page(c);
  const std::size_t rows =
      static_cast<std::size_t>(c.layout.Hkv * c.layout.page_size);
  for (auto& layer : c.layers) {
    std::memcpy(layer.k.get() + to * rows * c.D * c.element_bytes,
                layer.k.get() + from * rows * c.D * c.element_bytes,
                rows * c.D * c.element_bytes);
    std::memcpy(layer.v.get() + to * rows * c.Dv * c.element_bytes,
                layer.v.get() + from * rows * c.Dv * c.element_bytes,
                rows * c.Dv * c.element_bytes);
    if (layer.k_scales) {
      std::memcpy(layer.k_scales.get() + to * rows * sizeof(float),
                  layer.k_scales.get() + from * rows * sizeof(float),
                  rows * sizeof(float));
      std::memcpy(layer.v_scales.get() + to * rows * sizeof(float),
                  layer.v_scales.get() + from * rows * sizeof(float),
                  rows * sizeof(float));
    }
  }
  drop_page(c, from);
  return to;
}

template <class T>
void append_impl(KVCache::Impl& c, int64_t layer, std::span<const int64_t> seqs,
                 TensorView<const T> k, TensorView<const T> v) {
  const util::Check check("attn::KVCache::append");
  check_layer(c, check, layer);
  if (seqs.empty()) check.fail("sequences: expected at least one id");
  const int64_t B = static_cast<int64_t>(seqs.size());
  for (int64_t b = 0; b < B; ++b) {
    check_sequence(c, check, seqs[b]);
    for (int64_t e = 0; e < b; ++e) {
      if (seqs[e] == seqs[b]) {
        check.fail("sequences: id " + std::to_string(seqs[b]) +
                   " listed twice");
      }
    }
  }
  const int64_t n = k.extent(kSeq);
  check_rows(check, "k", k, {B, c.layout.Hkv, n, c.D});
  check_rows(check, "v", v, {B, c.layout.Hkv, n, c.Dv});
  if (n == 0) return;
  if (c.options.type == CacheType::kInt8) {  // a scale cannot hold inf/NaN
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < c.layout.Hkv; ++h)
        for (int64_t t = 0; t < n; ++t) {
          for (int64_t d = 0; d < c.D; ++d) {
            if (!std::isfinite(to_float(k(b, h, t, d)))) {
              check.fail("k: int8 caches need finite values, found " +
                         std::to_string(to_float(k(b, h, t, d))));
            }
          }
          for (int64_t d = 0; d < c.Dv; ++d) {
            if (!std::isfinite(to_float(v(b, h, t, d)))) {
              check.fail("v: int8 caches need finite values, found " +
                         std::to_string(to_float(v(b, h, t, d))));
            }
          }
        }
  }

  // Capacity, then the exact page count: new blocks plus a copy of each
  // shared page written into (counted on scratch reference counts, as the
  // writes will happen, so two forks appending together are counted right).
  const int64_t P = c.layout.page_size;
  c.touched.clear();
  struct ClearPending {  // also when a check below throws
    KVCache::Impl& c;
    ~ClearPending() {
      for (const int32_t page : c.touched) c.pending[page] = 0;
    }
  } clear_pending{c};
  int64_t needed = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t seq = seqs[b], len = c.length(seq, layer);
    if (len + n > c.options.max_tokens) {
      check.fail(
          "sequence " + std::to_string(seq) + " layer " +
          std::to_string(layer) + ": " + std::to_string(len) + " tokens + " +
          std::to_string(n) +
          " new exceed max_tokens = " + std::to_string(c.options.max_tokens));
    }
    const int64_t first = len / P, last = (len + n - 1) / P;
    for (int64_t blk = first; blk <= last; ++blk) {
      if (blk >= c.pages_held[seq]) {
        ++needed;
        continue;
      }
      const int32_t page = c.tables[seq * c.layout.table_width + blk];
      if (c.refcount[page] - c.pending[page] > 1) {
        if (c.pending[page]++ == 0) c.touched.push_back(page);
        ++needed;
      }
    }
  }
  if (needed > static_cast<int64_t>(c.free_pages.size())) {
    check.fail("out of pages: this append needs " + std::to_string(needed) +
               " pages of " + std::to_string(P) + " tokens, " +
               std::to_string(c.free_pages.size()) + " of " +
               std::to_string(c.options.num_pages) + " are free");
  }

  std::vector<float>& kf = c.append_keys;
  std::vector<float>& row = c.append_row;
  kf.resize(static_cast<std::size_t>(c.layout.Hkv * n * c.D));
  row.resize(static_cast<std::size_t>(c.Dv));
  auto& pools = c.layers[layer];
  for (int64_t b = 0; b < B; ++b) {
    const int64_t seq = seqs[b];
    int64_t& len = c.length(seq, layer);
    int32_t* table = c.tables.data() + seq * c.layout.table_width;
    for (int64_t blk = len / P; blk <= (len + n - 1) / P; ++blk) {
      if (blk >= c.pages_held[seq]) {
        table[blk] = take_page(c);
        c.pages_held[seq] = blk + 1;
      } else if (c.refcount[table[blk]] > 1) {
        table[blk] = copy_page(c, table[blk]);
      }
    }
    // Keys as float [Hkv, n, D], rotated at positions len .. len + n - 1.
    for (int64_t h = 0; h < c.layout.Hkv; ++h)
      for (int64_t t = 0; t < n; ++t)
        for (int64_t d = 0; d < c.D; ++d)
          kf[(h * n + t) * c.D + d] = to_float(k(b, h, t, d));
    if (c.options.rope) {
      apply_rope(TensorView<float>::bhsd(kf.data(), 1, c.layout.Hkv, n, c.D),
                 *c.options.rope, len);
    }
    with_element(c.options.type, [&](auto tag) {
      using E = decltype(tag);
      E* kpool = reinterpret_cast<E*>(pools.k.get());
      E* vpool = reinterpret_cast<E*>(pools.v.get());
      float* ks = reinterpret_cast<float*>(pools.k_scales.get());
      float* vs = reinterpret_cast<float*>(pools.v_scales.get());
      for (int64_t h = 0; h < c.layout.Hkv; ++h) {
        for (int64_t t = 0; t < n; ++t) {
          const int64_t pos = len + t;
          const int64_t r = c.layout.row(table[pos / P], h, pos % P);
          const float sk = detail::encode_row(kf.data() + (h * n + t) * c.D,
                                              c.D, kpool + r * c.D);
          for (int64_t d = 0; d < c.Dv; ++d) row[d] = to_float(v(b, h, t, d));
          const float sv =
              detail::encode_row(row.data(), c.Dv, vpool + r * c.Dv);
          if (ks != nullptr) {
            ks[r] = sk;
            vs[r] = sv;
          }
        }
      }
    });
    len += n;
  }
}

}  // namespace

std::size_t KVCache::Impl::page_bytes() const {
  const std::size_t rows =
      static_cast<std::size_t>(layout.Hkv * layout.page_size);
  std::size_t bytes = rows * (D + Dv) * element_bytes;
  if (options.type == CacheType::kInt8) bytes += 2 * rows * sizeof(float);
  return bytes;
}

KVCache::KVCache(const KVCacheOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& c = *impl_;
  c.options = options;
  KVCacheOptions& o = c.options;
  const util::Check& check = kConstruct;
  auto positive = [&](const char* name, int64_t x) {
    if (x < 1 || x > (int64_t{1} << 40)) {
      check.fail(std::string("options.") + name +
                 " must be in [1, 2^40], got " + std::to_string(x));
    }
  };
  positive("num_layers", o.num_layers);
  positive("num_kv_heads", o.num_kv_heads);
  positive("head_dim", o.head_dim);
  if (o.value_head_dim == 0) o.value_head_dim = o.head_dim;
  positive("value_head_dim", o.value_head_dim);
  positive("max_sequences", o.max_sequences);
  positive("max_tokens", o.max_tokens);
  if (o.max_sequences > (int64_t{1} << 30)) {
    check.fail("options.max_sequences must be <= 2^30");
  }
  if (o.type != CacheType::kFloat32 && o.type != CacheType::kBFloat16 &&
      o.type != CacheType::kFloat16 && o.type != CacheType::kInt8) {
    check.fail("options.type is not a CacheType");
  }
  if (o.page_size < 0) {
    check.fail("options.page_size must be >= 0 (0 = contiguous), got " +
               std::to_string(o.page_size));
  }
  if (o.num_pages < 0) {
    check.fail(
        "options.num_pages must be >= 0 (0 = enough for every "
        "sequence), got " +
        std::to_string(o.num_pages));
  }
  if (o.rope) {
    const int64_t r = o.rope->rotary_dim == 0 ? o.head_dim : o.rope->rotary_dim;
    if (r > o.head_dim) {
      check.fail("options.rope.rotary_dim " + std::to_string(r) +
                 " exceeds head_dim " + std::to_string(o.head_dim));
    }
    rope_inverse_frequencies(r, *o.rope);  // throws for bad RoPE options
  }
  c.D = o.head_dim;
  c.Dv = o.value_head_dim;
  c.layout.Hkv = o.num_kv_heads;
  c.element_bytes = element_size(o.type);
  if (o.page_size == 0) {  // contiguous: a page per sequence slot
    c.layout.page_size = o.max_tokens;
    c.layout.table_width = 1;
    o.num_pages = o.max_sequences;
  } else {
    c.layout.page_size = o.page_size;
    c.layout.table_width = (o.max_tokens + o.page_size - 1) / o.page_size;
    if (o.num_pages == 0)
      o.num_pages = mul(o.max_sequences, c.layout.table_width);
  }
  if (o.num_pages > (int64_t{1} << 31) - 1) {
    check.fail("options.num_pages must be < 2^31, got " +
               std::to_string(o.num_pages));
  }
  if ((c.layout.page_size & (c.layout.page_size - 1)) == 0) {
    c.layout.page_shift =
        std::countr_zero(static_cast<uint64_t>(c.layout.page_size));
  }
  const uint64_t rows = mul(mul(o.num_pages, c.layout.Hkv), c.layout.page_size);
  // Every byte the cache will hold, counted (overflow-checked) before any
  // is allocated: pools, scales, and the bookkeeping arrays.
  uint64_t bytes = mul(mul(rows, c.D + c.Dv), c.element_bytes);
  if (o.type == CacheType::kInt8) {
    bytes = add(bytes, mul(rows, 2 * sizeof(float)));
  }
  bytes = mul(bytes, o.num_layers);
  uint64_t bookkeeping = mul(o.num_layers, sizeof(KVCache::Impl::Layer));
  bookkeeping = add(bookkeeping,
                    mul(mul(o.max_sequences, o.num_layers), sizeof(int64_t)));
  bookkeeping = add(bookkeeping, mul(mul(o.max_sequences, c.layout.table_width),
                                     sizeof(int32_t)));
  bookkeeping = add(bookkeeping, mul(o.num_pages, 3 * sizeof(int32_t)));
  bookkeeping = add(bookkeeping, mul(o.max_sequences, 16));
  if (add(bytes, bookkeeping) > kMaxCacheBytes) {
    check.fail("the options need " + std::to_string(bytes + bookkeeping) +
               " bytes (" + std::to_string(bytes) + " of pages, " +
               std::to_string(bookkeeping) +
               " of tables), over the 2^40-byte limit of one cache");
  }
  c.layers.resize(o.num_layers);
  for (auto& layer : c.layers) {
    layer.k = allocate(rows * c.D * c.element_bytes);
    layer.v = allocate(rows * c.Dv * c.element_bytes);
    if (o.type == CacheType::kInt8) {
      layer.k_scales = allocate(rows * sizeof(float));
      layer.v_scales = allocate(rows * sizeof(float));
    }
  }
  c.alive.assign(o.max_sequences, 0);
  c.pages_held.assign(o.max_sequences, 0);
  c.lengths.assign(mul(o.max_sequences, o.num_layers), 0);
  c.tables.assign(mul(o.max_sequences, c.layout.table_width), -1);
  c.refcount.assign(o.num_pages, 0);
  c.pending.assign(o.num_pages, 0);
  c.free_pages.resize(o.num_pages);
  for (int64_t p = 0; p < o.num_pages; ++p) {  // page 0 handed out first
    c.free_pages[p] = static_cast<int32_t>(o.num_pages - 1 - p);
  }
}

KVCache::~KVCache() = default;
KVCache::KVCache(KVCache&&) noexcept = default;
KVCache& KVCache::operator=(KVCache&&) noexcept = default;

int64_t KVCache::add_sequence() {
  Impl& c = *impl_;
  if (c.live == c.options.max_sequences) {
    util::Check("attn::KVCache::add_sequence")
        .fail("all max_sequences = " + std::to_string(c.options.max_sequences) +
              " sequences are alive; free one first");
  }
  const int64_t seq =
      std::find(c.alive.begin(), c.alive.end(), 0) - c.alive.begin();
  c.alive[seq] = 1;
  ++c.live;
  return seq;
}

int64_t KVCache::fork(int64_t sequence) {
  Impl& c = *impl_;
  check_sequence(c, util::Check("attn::KVCache::fork"), sequence);
  if (c.live == c.options.max_sequences) {
    util::Check("attn::KVCache::fork")
        .fail("all max_sequences = " + std::to_string(c.options.max_sequences) +
              " sequences are alive; free one first");
  }
  const int64_t seq = add_sequence();
  c.pages_held[seq] = c.pages_held[sequence];
  for (int64_t blk = 0; blk < c.pages_held[seq]; ++blk) {
    const int32_t page = c.tables[sequence * c.layout.table_width + blk];
    c.tables[seq * c.layout.table_width + blk] = page;
    ++c.refcount[page];
  }
  for (int64_t l = 0; l < c.options.num_layers; ++l) {
    c.length(seq, l) = c.length(sequence, l);
  }
  return seq;
}

void KVCache::free_sequence(int64_t sequence) {
  Impl& c = *impl_;
  check_sequence(c, util::Check("attn::KVCache::free_sequence"), sequence);
  for (int64_t blk = 0; blk < c.pages_held[sequence]; ++blk) {
    int32_t& page = c.tables[sequence * c.layout.table_width + blk];
    drop_page(c, page);
    page = -1;
  }
  c.pages_held[sequence] = 0;
  for (int64_t l = 0; l < c.options.num_layers; ++l) c.length(sequence, l) = 0;
  c.alive[sequence] = 0;
  --c.live;
}

void KVCache::append(int64_t layer, std::span<const int64_t> sequences,
                     TensorView<const float> k, TensorView<const float> v) {
  append_impl(*impl_, layer, sequences, k, v);
}
void KVCache::append(int64_t layer, std::span<const int64_t> sequences,
                     TensorView<const bfloat16> k,
                     TensorView<const bfloat16> v) {
  append_impl(*impl_, layer, sequences, k, v);
}
void KVCache::append(int64_t layer, std::span<const int64_t> sequences,
                     TensorView<const float16> k, TensorView<const float16> v) {
  append_impl(*impl_, layer, sequences, k, v);
}

void KVCache::read(int64_t sequence, int64_t layer, TensorView<float> k,
                   TensorView<float> v) const {
  const Impl& c = *impl_;
  const util::Check check("attn::KVCache::read");
  check_sequence(c, check, sequence);
  check_layer(c, check, layer);
  const int64_t len = c.length(sequence, layer);
  check_rows(check, "k", k, {1, c.layout.Hkv, len, c.D});
  check_rows(check, "v", v, {1, c.layout.Hkv, len, c.Dv});
  detail::check_writable(check, "k", k);
  detail::check_writable(check, "v", v);
  const int32_t* table = c.tables.data() + sequence * c.layout.table_width;
  const auto& pools = c.layers[layer];
  with_element(c.options.type, [&](auto tag) {
    using E = decltype(tag);
    const E* kpool = reinterpret_cast<const E*>(pools.k.get());
    const E* vpool = reinterpret_cast<const E*>(pools.v.get());
    const float* ks = reinterpret_cast<const float*>(pools.k_scales.get());
    const float* vs = reinterpret_cast<const float*>(pools.v_scales.get());
    for (int64_t h = 0; h < c.layout.Hkv; ++h) {
      for (int64_t t = 0; t < len; ++t) {
        const int64_t r = c.layout.row(table[t / c.layout.page_size], h,
                                       t % c.layout.page_size);
        detail::decode_row(kpool + r * c.D, c.D, ks ? ks[r] : 1.0f,
                           k.row(0, h, t));
        detail::decode_row(vpool + r * c.Dv, c.Dv, vs ? vs[r] : 1.0f,
                           v.row(0, h, t));
      }
    }
  });
}

int64_t KVCache::length(int64_t sequence, int64_t layer) const {
  check_sequence(*impl_, util::Check("attn::KVCache::length"), sequence);
  check_layer(*impl_, util::Check("attn::KVCache::length"), layer);
  return impl_->length(sequence, layer);
}

bool KVCache::alive(int64_t sequence) const {
  return sequence >= 0 && sequence < impl_->options.max_sequences &&
         impl_->alive[sequence];
}
int64_t KVCache::num_sequences() const { return impl_->live; }
int64_t KVCache::pages_free() const {
  return static_cast<int64_t>(impl_->free_pages.size());
}
int64_t KVCache::pages_total() const { return impl_->options.num_pages; }
const KVCacheOptions& KVCache::options() const { return impl_->options; }

uint64_t KVCache::bytes_used() const {
  const Impl& c = *impl_;
  const uint64_t used = c.options.num_pages - c.free_pages.size();
  return used * c.page_bytes() * c.options.num_layers;
}

uint64_t KVCache::bytes_reserved() const {
  const Impl& c = *impl_;
  return static_cast<uint64_t>(c.options.num_pages) * c.page_bytes() *
             c.options.num_layers +
         c.tables.size() * sizeof(int32_t) +
         c.refcount.size() * sizeof(int32_t) +
         c.free_pages.capacity() * sizeof(int32_t) +
         c.lengths.size() * sizeof(int64_t) +
         c.pages_held.size() * sizeof(int64_t) + c.alive.size();
}

}  // namespace attn
