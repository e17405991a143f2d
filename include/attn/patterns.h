// Built-in attention patterns (attn/pattern.h functors): Sparse Transformer
// strided and fixed (Child et al. 2019), Longformer sliding window with
// dilation and global tokens (Beltagy et al. 2020), block-sparse layouts,
// and packed documents given by cumulative lengths (varlen). Each has an
// exact classifier and a 64-key mask_bits, so it costs the tiles it covers.
// Definitions, with pictures: docs/patterns.md.
//
// Use: keep the object alive and point AttentionOptions::pattern at it.
//
//   attn::Longformer lf(/*window=*/256, /*global=*/{0});
//   attn::AttentionOptions o;
//   o.pattern = lf;
//
// Positions i are query positions (attn/pattern.h): row indices for
// self-attention, positions in the sequence against a KV cache.
#ifndef ATTN_PATTERNS_H_
#define ATTN_PATTERNS_H_

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "attn/pattern.h"

namespace attn {

// Pattern parameters (windows, strides, blocks) above this are refused by
// check(): far beyond any sequence, and small enough that positions plus or
// minus them cannot overflow.
inline constexpr int64_t kMaxPatternExtent = int64_t{1} << 40;

namespace pattern_math {

// a * b * c for non-negative factors, or -1 when it exceeds 2^40.
constexpr int64_t checked_product(int64_t a, int64_t b, int64_t c) {
  if (a < 0 || b < 0 || c < 0) return -1;
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r) || __builtin_mul_overflow(r, c, &r) ||
      r > kMaxPatternExtent) {
    return -1;
  }
  return r;
}

// Floor division and the matching non-negative remainder (y > 0).
constexpr int64_t floor_div(int64_t x, int64_t y) {
  return x >= 0 ? x / y : -((-x + y - 1) / y);
}
constexpr int64_t floor_mod(int64_t x, int64_t y) {
  return x - floor_div(x, y) * y;
}

// Is some multiple of m (> 0) in [a, b]?
constexpr bool has_multiple(int64_t a, int64_t b, int64_t m) {
  return a <= b && floor_div(b, m) * m >= a;
}

// Bits phase, phase + period, phase + 2 period, ... below n (n <= 64,
// phase >= 0, period > 0).
constexpr uint64_t periodic_bits(int64_t phase, int64_t period, int n) {
  if (phase >= n) return 0;
  uint64_t bits = uint64_t{1} << phase;
  for (int64_t shift = period; shift < 64; shift *= 2) bits |= bits << shift;
  return bits & key_bits(0, n);
}

// The kind of a rectangle over which mask(i, j) depends only on the
// difference d = i - j and is true exactly on the set described by
// `visible_in(a, b)` (is any d in [a, b] visible?) and `all_visible(a, b)`.
// Every difference in [i0 - (j1 - 1), (i1 - 1) - j0] occurs in the
// rectangle [i0, i1) x [j0, j1).
template <class Any, class All>
constexpr TileKind classify_by_difference(int64_t i0, int64_t i1, int64_t j0,
                                          int64_t j1, Any visible_in,
                                          All all_visible) {
  const int64_t lo = i0 - (j1 - 1), hi = (i1 - 1) - j0;
  if (!visible_in(lo, hi)) return TileKind::kEmpty;
  return all_visible(lo, hi) ? TileKind::kFull : TileKind::kPartial;
}

}  // namespace pattern_math

// Sparse Transformer, strided (Child et al. 2019, eq. A(1) and A(2) in one
// head): query i sees key j when |i - j| <= local, or when i - j is a
// multiple of stride; with causal, only j <= i. The paper sets local =
// stride = l ~ sqrt(n); a fixed budget keeps local and n / stride constant.
struct SparseStrided {
  int64_t stride = 128;  // > 0
  int64_t local = 128;   // >= 0
  bool causal = false;   // as AttentionOptions::causal: only when asked

  std::string check(int64_t, int64_t, int64_t, int64_t) const {
    if (stride < 1 || stride > kMaxPatternExtent) {
      return "SparseStrided: stride must be in [1, 2^40], got " +
             std::to_string(stride);
    }
    if (local < 0 || local > kMaxPatternExtent) {
      return "SparseStrided: local must be in [0, 2^40], got " +
             std::to_string(local);
    }
    return {};
  }
  bool mask(int64_t, int64_t, int64_t i, int64_t j) const {
    const int64_t d = i - j;
    if (causal && d < 0) return false;
    return (d <= local && d >= -local) || d % stride == 0;
  }
  TileKind classify(int64_t, int64_t, int64_t i0, int64_t i1, int64_t j0,
                    int64_t j1) const {
    const int64_t floor_d = causal ? 0 : -local;
    return pattern_math::classify_by_difference(
        i0, i1, j0, j1,
        [&](int64_t a, int64_t b) {
          if (causal) a = std::max<int64_t>(a, 0);
          return std::max(a, floor_d) <= std::min(b, local) ||
                 pattern_math::has_multiple(a, b, stride);
        },
        [&](int64_t a, int64_t b) {
          return (a >= floor_d && b <= local) ||
                 (stride == 1 && (!causal || a >= 0));
        });
  }
  uint64_t mask_bits(int64_t, int64_t, int64_t i, int64_t j0, int n) const {
    const int64_t d0 = i - j0;  // key j0 + c has difference d0 - c
    uint64_t bits = key_bits(d0 - local, d0 + local + 1) |
                    pattern_math::periodic_bits(
                        pattern_math::floor_mod(d0, stride), stride, n);
    if (causal) bits &= key_bits(0, d0 + 1);
    return bits & key_bits(0, n);
  }
};

// Sparse Transformer, fixed (Child et al. 2019): positions are cut into
// blocks of `block`; query i sees the keys of its own block and the last
// `summary` keys (columns) of every block; with causal, only j <= i.
struct SparseFixed {
  int64_t block = 128;  // > 0
  int64_t summary = 8;  // in [0, block]
  bool causal = false;  // as AttentionOptions::causal: only when asked

  std::string check(int64_t, int64_t, int64_t, int64_t) const {
    if (block < 1 || block > kMaxPatternExtent) {
      return "SparseFixed: block must be in [1, 2^40], got " +
             std::to_string(block);
    }
    if (summary < 0 || summary > block) {
      return "SparseFixed: summary must be in [0, block = " +
             std::to_string(block) + "], got " + std::to_string(summary);
    }
    return {};
  }
  bool is_summary(int64_t j) const {
    return pattern_math::floor_mod(j, block) >= block - summary;
  }
  bool mask(int64_t, int64_t, int64_t i, int64_t j) const {
    if (causal && j > i) return false;
    return pattern_math::floor_div(i, block) ==
               pattern_math::floor_div(j, block) ||
           is_summary(j);
  }
  // The first summary key >= j.
  int64_t next_summary(int64_t j) const {
    if (summary == 0) return INT64_MAX;
    return is_summary(j)
               ? j
               : pattern_math::floor_div(j, block) * block + block - summary;
  }
  TileKind classify(int64_t, int64_t, int64_t i0, int64_t i1, int64_t j0,
                    int64_t j1) const {
    using pattern_math::floor_div;
    const bool causal_full = !causal || j1 - 1 <= i0;
    if (causal) {
      j1 = std::min(j1, i1);  // keys any row may see
      if (j0 >= j1) return TileKind::kEmpty;
    }
    const int64_t qb0 = floor_div(i0, block), qb1 = floor_div(i1 - 1, block);
    const int64_t kb0 = floor_div(j0, block), kb1 = floor_div(j1 - 1, block);
    const bool same_block = qb0 <= kb1 && kb0 <= qb1;
    if (!same_block && next_summary(j0) >= j1) return TileKind::kEmpty;
    if (!causal_full) return TileKind::kPartial;
    if (qb0 == qb1 && kb0 == kb1 && qb0 == kb0) return TileKind::kFull;
    // Every key a summary column: within one block, all at its end.
    if (kb0 == kb1 && is_summary(j0)) return TileKind::kFull;
    return TileKind::kPartial;
  }
  uint64_t mask_bits(int64_t, int64_t, int64_t i, int64_t j0, int n) const {
    using pattern_math::floor_div;
    const int64_t qb = floor_div(i, block);
    uint64_t bits = key_bits(qb * block - j0, qb * block + block - j0);
    if (summary > 0) {
      for (int64_t kb = floor_div(j0, block); kb * block < j0 + n; ++kb) {
        bits |= key_bits(kb * block + block - summary - j0,
                         kb * block + block - j0);
      }
    }
    if (causal) bits &= key_bits(0, i - j0 + 1);
    return bits & key_bits(0, n);
  }
};

// Longformer (Beltagy et al. 2020): a sliding window of `window` keys on
// each side (only the left one with causal) with a dilation per head (keys
// at i - k * dilation for |k| <= window), plus global tokens: a global
// position sees every key and every query sees the global keys (with
// causal, still only keys j <= i).
class Longformer {
 public:
  // dilation: empty (1 everywhere), one value for every head, or one per
  // query head. global: key positions, any order, duplicates allowed.
  Longformer(int64_t window, std::vector<int64_t> global = {},
             std::vector<int64_t> dilation = {}, bool causal = false)
      : window_(window),
        causal_(causal),
        global_(std::move(global)),
        dilation_(std::move(dilation)) {
    std::sort(global_.begin(), global_.end());
    global_.erase(std::unique(global_.begin(), global_.end()), global_.end());
  }

  int64_t window() const { return window_; }
  bool causal() const { return causal_; }
  std::span<const int64_t> global() const { return global_; }
  int64_t dilation(int64_t h) const {
    if (dilation_.empty()) return 1;
    return dilation_.size() == 1 ? dilation_[0] : dilation_[h];
  }
  // Dilation values given (0, 1 or Hq); checked against the call's heads.
  int64_t dilation_count() const {
    return static_cast<int64_t>(dilation_.size());
  }

  std::string check(int64_t, int64_t heads, int64_t, int64_t) const {
    // Bounded so that window * dilation and positions +- it cannot overflow.
    if (window_ < 0 || window_ > kMaxPatternExtent) {
      return "Longformer: window must be in [0, 2^40], got " +
             std::to_string(window_);
    }
    if (dilation_.size() > 1 &&
        static_cast<int64_t>(dilation_.size()) != heads) {
      return "Longformer: expected 0, 1 or one dilation per query head (" +
             std::to_string(heads) + "), got " +
             std::to_string(dilation_.size());
    }
    for (int64_t d : dilation_) {
      if (d < 1 || d > (int64_t{1} << 20)) {
        return "Longformer: dilations must be in [1, 2^20], got " +
               std::to_string(d);
      }
    }
    return {};
  }

  // Global positions in [a, b).
  int64_t globals_in(int64_t a, int64_t b) const {
    if (a >= b) return 0;
    return std::lower_bound(global_.begin(), global_.end(), b) -
           std::lower_bound(global_.begin(), global_.end(), a);
  }
  bool is_global(int64_t x) const { return globals_in(x, x + 1) > 0; }

  bool mask(int64_t, int64_t h, int64_t i, int64_t j) const {
    const int64_t d = i - j;
    if (causal_ && d < 0) return false;
    if (is_global(i) || is_global(j)) return true;
    const int64_t dil = dilation(h);
    return d <= window_ * dil && d >= -window_ * dil && d % dil == 0;
  }
  TileKind classify(int64_t, int64_t h, int64_t i0, int64_t i1, int64_t j0,
                    int64_t j1) const {
    const bool causal_full = !causal_ || j1 - 1 <= i0;
    if (causal_) {
      j1 = std::min(j1, i1);  // keys any row may see
      if (j0 >= j1) return TileKind::kEmpty;
    }
    const int64_t dil = dilation(h), reach = window_ * dil;
    const int64_t floor_d = causal_ ? 0 : -reach;
    const TileKind band = pattern_math::classify_by_difference(
        i0, i1, j0, j1,
        [&](int64_t a, int64_t b) {
          a = std::max(a, floor_d);
          b = std::min(b, reach);
          return pattern_math::has_multiple(a, b, dil);
        },
        [&](int64_t a, int64_t b) {
          return a >= floor_d && b <= reach && dil == 1;
        });
    const int64_t grows = globals_in(i0, i1), gcols = globals_in(j0, j1);
    if (band == TileKind::kEmpty && grows == 0 && gcols == 0) {
      return TileKind::kEmpty;
    }
    if (causal_full &&
        (band == TileKind::kFull || grows == i1 - i0 || gcols == j1 - j0)) {
      return TileKind::kFull;
    }
    return TileKind::kPartial;
  }
  uint64_t mask_bits(int64_t, int64_t h, int64_t i, int64_t j0, int n) const {
    const uint64_t in_range = key_bits(0, n);
    const uint64_t causal_bits =
        causal_ ? key_bits(0, i - j0 + 1) : ~uint64_t{0};
    if (is_global(i)) return in_range & causal_bits;
    const int64_t dil = dilation(h), reach = window_ * dil;
    const int64_t d0 = i - j0;  // key j0 + c has difference d0 - c
    uint64_t bits = key_bits(d0 - reach, d0 + reach + 1);
    if (dil > 1) {
      bits &=
          pattern_math::periodic_bits(pattern_math::floor_mod(d0, dil), dil, n);
    }
    for (auto it = std::lower_bound(global_.begin(), global_.end(), j0);
         it != global_.end() && *it < j0 + n; ++it) {
      bits |= uint64_t{1} << (*it - j0);
    }
    return bits & in_range & causal_bits;
  }

 private:
  int64_t window_;
  bool causal_;
  std::vector<int64_t> global_;  // sorted, unique
  std::vector<int64_t> dilation_;
};

// Block-sparse attention from a layout: layout[h][qb][kb] (h over 1 or Hq
// heads) says whether the block of query positions [qb * block, qb * block
// + block) sees the block of keys [kb * block, kb * block + block). The
// layout covers every key block (ceil(Skv / block)) and at least
// ceil(Sq / block) query blocks: query blocks are blocks of positions, so
// a few queries at the end of a long sequence (bottom-right alignment)
// use the layout's last rows. Positions outside the layout see nothing.
class BlockSparse {
 public:
  // layout: heads * q_blocks * kv_blocks values, row-major, nonzero = on.
  BlockSparse(int64_t block, int64_t heads, int64_t q_blocks, int64_t kv_blocks,
              std::vector<uint8_t> layout)
      : block_(block),
        heads_(heads),
        q_blocks_(q_blocks),
        kv_blocks_(kv_blocks),
        layout_(std::move(layout)) {
    // Dimensions below 1, or not matching the layout's size, make an
    // invalid, empty pattern rather than an allocation (check() then names
    // the problem): with all three >= 1 the prefix-sum table below has at
    // most 4x the layout's cells, so its size follows the data given.
    const int64_t cells =
        pattern_math::checked_product(heads, q_blocks, kv_blocks);
    if (heads < 1 || q_blocks < 1 || kv_blocks < 1 || cells < 0 ||
        layout_.size() != static_cast<size_t>(cells)) {
      heads_ = q_blocks_ = kv_blocks_ = 0;
      layout_.clear();
      valid_ = false;
      return;
    }
    sums_.assign(static_cast<size_t>(heads * (q_blocks + 1) * (kv_blocks + 1)),
                 0);
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t q = 0; q < q_blocks; ++q) {
        for (int64_t k = 0; k < kv_blocks; ++k) {
          sum(h, q + 1, k + 1) = sum(h, q, k + 1) + sum(h, q + 1, k) -
                                 sum(h, q, k) + (on(h, q, k) ? 1 : 0);
        }
      }
    }
  }

  int64_t block() const { return block_; }
  int64_t heads() const { return heads_; }
  int64_t q_blocks() const { return q_blocks_; }
  int64_t kv_blocks() const { return kv_blocks_; }
  // False when the layout's size did not match its dimensions (then it
  // is all off; attention calls reject it).
  bool valid() const { return valid_; }
  bool on(int64_t h, int64_t qb, int64_t kb) const {
    return layout_[static_cast<size_t>((h * q_blocks_ + qb) * kv_blocks_ +
                                       kb)] != 0;
  }
  // Blocks switched on over every head.
  int64_t count() const {
    int64_t n = 0;
    for (int64_t h = 0; h < heads_; ++h) n += sum(h, q_blocks_, kv_blocks_);
    return n;
  }

  std::string check(int64_t, int64_t heads, int64_t q_len,
                    int64_t kv_len) const {
    const auto str = [](int64_t x) { return std::to_string(x); };
    if (block_ < 1 || block_ > kMaxPatternExtent) {
      return "BlockSparse: block must be in [1, 2^40], got " + str(block_);
    }
    if (!valid_) {
      return "BlockSparse: layout dimensions must be >= 1 and hold heads x "
             "q_blocks x kv_blocks values";
    }
    const int64_t qb = (q_len + block_ - 1) / block_,
                  kb = (kv_len + block_ - 1) / block_;
    if ((heads_ != 1 && heads_ != heads) || q_blocks_ < qb ||
        kv_blocks_ != kb) {
      return "BlockSparse: layout is [" + str(heads_) + ", " + str(q_blocks_) +
             ", " + str(kv_blocks_) + "], expected [1 or " + str(heads) +
             ", >= " + str(qb) + ", " + str(kb) + "] for block " + str(block_);
    }
    return {};
  }
  bool mask(int64_t, int64_t h, int64_t i, int64_t j) const {
    const int64_t qb = pattern_math::floor_div(i, block_), kb = j / block_;
    if (qb < 0 || qb >= q_blocks_ || kb >= kv_blocks_) return false;
    return on(head(h), qb, kb);
  }
  TileKind classify(int64_t, int64_t h, int64_t i0, int64_t i1, int64_t j0,
                    int64_t j1) const {
    using pattern_math::floor_div;
    const int64_t q0 = std::max<int64_t>(floor_div(i0, block_), 0);
    const int64_t q1 = std::min(floor_div(i1 - 1, block_) + 1, q_blocks_);
    const int64_t k0 = j0 / block_,
                  k1 = std::min((j1 - 1) / block_ + 1, kv_blocks_);
    if (q0 >= q1 || k0 >= k1) return TileKind::kEmpty;
    const int64_t hh = head(h);
    const int64_t n =
        sum(hh, q1, k1) - sum(hh, q0, k1) - sum(hh, q1, k0) + sum(hh, q0, k0);
    if (n == 0) return TileKind::kEmpty;
    // Full only if the rectangle lies inside the layout and every block is on.
    const bool inside =
        i0 >= 0 && i1 <= q_blocks_ * block_ && j1 <= kv_blocks_ * block_;
    return inside && n == (q1 - q0) * (k1 - k0) ? TileKind::kFull
                                                : TileKind::kPartial;
  }
  uint64_t mask_bits(int64_t, int64_t h, int64_t i, int64_t j0, int n) const {
    const int64_t qb = pattern_math::floor_div(i, block_);
    if (qb < 0 || qb >= q_blocks_) return 0;
    const int64_t hh = head(h);
    uint64_t bits = 0;
    for (int64_t kb = j0 / block_; kb * block_ < j0 + n && kb < kv_blocks_;
         ++kb) {
      if (on(hh, qb, kb))
        bits |= key_bits(kb * block_ - j0, kb * block_ + block_ - j0);
    }
    return bits & key_bits(0, n);
  }

 private:
  int64_t head(int64_t h) const { return heads_ == 1 ? 0 : h; }
  int64_t& sum(int64_t h, int64_t q, int64_t k) {
    return sums_[static_cast<size_t>(
        (h * (q_blocks_ + 1) + q) * (kv_blocks_ + 1) + k)];
  }
  int64_t sum(int64_t h, int64_t q, int64_t k) const {
    return sums_[static_cast<size_t>(
        (h * (q_blocks_ + 1) + q) * (kv_blocks_ + 1) + k)];
  }

  int64_t block_, heads_, q_blocks_, kv_blocks_;
  std::vector<uint8_t> layout_;
  std::vector<int64_t> sums_;  // 2-D prefix sums per head, for classify
  bool valid_ = true;
};

// Packed documents (varlen): document d holds queries [cu_q[d], cu_q[d+1])
// and keys [cu_k[d], cu_k[d+1]); a query sees the keys of its own document
// only, and with causal those up to its own position aligned bottom-right
// within the document (the last query of a document sees its last key).
// cu_k empty: the same as cu_q (self-attention on packed sequences). With
// cu_k != cu_q, use top-left alignment so positions are row indices.
class Documents {
 public:
  Documents(std::vector<int64_t> cu_seqlens_q,
            std::vector<int64_t> cu_seqlens_k = {}, bool causal = false)
      : cu_q_(std::move(cu_seqlens_q)),
        cu_k_(cu_seqlens_k.empty() ? cu_q_ : std::move(cu_seqlens_k)),
        causal_(causal) {}

  std::span<const int64_t> cu_seqlens_q() const { return cu_q_; }
  std::span<const int64_t> cu_seqlens_k() const { return cu_k_; }
  bool causal() const { return causal_; }
  int64_t documents() const {
    return cu_q_.empty() ? 0 : static_cast<int64_t>(cu_q_.size()) - 1;
  }

  std::string check(int64_t, int64_t, int64_t, int64_t kv_len) const {
    const auto sorted = [](const std::vector<int64_t>& cu) {
      return !cu.empty() && cu.front() >= 0 &&
             std::is_sorted(cu.begin(), cu.end());
    };
    if (!sorted(cu_q_) || !sorted(cu_k_)) {
      return "Documents: cumulative lengths must be non-empty, start at >= 0 "
             "and never decrease";
    }
    if (cu_q_.size() != cu_k_.size()) {
      return "Documents: cu_seqlens_q has " + std::to_string(cu_q_.size()) +
             " entries, cu_seqlens_k " + std::to_string(cu_k_.size());
    }
    if (cu_k_.back() > kv_len) {
      return "Documents: documents end at key " + std::to_string(cu_k_.back()) +
             ", past Skv = " + std::to_string(kv_len);
    }
    return {};
  }

  // The keys [begin, end) query position i sees.
  struct Range {
    int64_t begin = 0, end = 0;
  };
  Range keys_of(int64_t i) const {
    const int64_t d = doc_q(i);
    if (d < 0) return {};
    Range r{cu_k_[d], cu_k_[d + 1]};
    if (causal_) {
      // Bottom-right within the document.
      const int64_t shift =
          (cu_k_[d + 1] - cu_k_[d]) - (cu_q_[d + 1] - cu_q_[d]);
      r.end = std::min(
          r.end, std::max(r.begin, cu_k_[d] + (i - cu_q_[d]) + shift + 1));
    }
    return r;
  }

  bool mask(int64_t, int64_t, int64_t i, int64_t j) const {
    const Range r = keys_of(i);
    return j >= r.begin && j < r.end;
  }
  // A query's keys are an interval whose ends never decrease with i (over
  // the positions inside the documents), so the first and last rows bound
  // the union and the intersection of all rows' keys.
  TileKind classify(int64_t, int64_t, int64_t i0, int64_t i1, int64_t j0,
                    int64_t j1) const {
    if (cu_q_.size() < 2) return TileKind::kEmpty;
    const int64_t a = std::max(i0, cu_q_.front()),
                  b = std::min(i1, cu_q_.back());
    if (a >= b) return TileKind::kEmpty;
    const Range first = keys_of(a), last = keys_of(b - 1);
    if (j1 <= first.begin || j0 >= last.end) return TileKind::kEmpty;
    const bool every_row = a == i0 && b == i1;
    return every_row && last.begin <= j0 && first.end >= j1
               ? TileKind::kFull
               : TileKind::kPartial;
  }
  uint64_t mask_bits(int64_t, int64_t, int64_t i, int64_t j0, int n) const {
    const Range r = keys_of(i);
    return key_bits(r.begin - j0, r.end - j0) & key_bits(0, n);
  }

 private:
  // The document holding query position i, or -1.
  int64_t doc_q(int64_t i) const {
    if (cu_q_.size() < 2 || i < cu_q_.front() || i >= cu_q_.back()) return -1;
    return std::upper_bound(cu_q_.begin(), cu_q_.end(), i) - cu_q_.begin() - 1;
  }
  std::vector<int64_t> cu_q_, cu_k_;
  bool causal_;
};

}  // namespace attn

#endif  // ATTN_PATTERNS_H_
