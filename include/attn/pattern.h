// Attention patterns: masks and score changes as functors, in the sense of
// FlexAttention's mask_mod / score_mod, plus a tile classifier so a sparse
// pattern costs what it covers.
//
// A pattern is any object with some of these const members (b batch entry,
// h query head, i the query's position, j a key index; docs/patterns.md):
//
//   bool mask(int64_t b, int64_t h, int64_t i, int64_t j)
//       key j visible to query i (ANDed with every other visibility rule);
//   float score(float s, int64_t b, int64_t h, int64_t i, int64_t j)
//       the score after scale, softcap, ALiBi and bias; returns the new one;
//   float score_grad(float s, int64_t b, int64_t h, int64_t i, int64_t j)
//       d score(s) / ds at the score s that score() receives; needed by
//       attn::attention_backward for a pattern with a score (1 for an
//       additive bias); optional otherwise;
//   TileKind classify(int64_t b, int64_t h, int64_t i_begin, int64_t i_end,
//                     int64_t j_begin, int64_t j_end)
//       what mask() gives over the rectangle [i_begin, i_end) x [j_begin,
//       j_end): kEmpty (false everywhere) and kFull (true everywhere) must be
//       exact, kPartial is always a safe answer; optional;
//   uint64_t mask_bits(int64_t b, int64_t h, int64_t i, int64_t j0, int n)
//       bit c (c < n <= 64) = mask(b, h, i, j0 + c), higher bits 0;
//       optional, a faster way to say what 64 calls of mask() say;
//   std::string check(int64_t batch, int64_t heads, int64_t q_len,
//                     int64_t kv_len)
//       empty if the pattern fits a call of that shape (heads = Hq), else
//       what is wrong; attention() throws attn::Error with it; optional.
//
// At least one of mask and score is required. `attn::Pattern` refers to
// such an object (it does not own it: keep the object alive during the
// call) and is what AttentionOptions::pattern takes. The functor is
// compiled into small adapters here, in the caller's translation unit; the
// kernels call them once per row of a tile (64 keys) or once per tile,
// never once per element, and skip tiles the classifier calls empty.
//
// The query's position i is its key coordinate, the one the causal rule
// uses: i = row + (Skv - Sq) under bottom-right alignment, i = row under
// top-left. For self-attention (Sq == Skv) that is the row index; against a
// KV cache it is the token's position in its sequence. Positions are
// negative for the first rows when Sq > Skv under bottom-right alignment.
#ifndef ATTN_PATTERN_H_
#define ATTN_PATTERN_H_

#include <concepts>
#include <cstdint>
#include <string>
#include <type_traits>

namespace attn {

enum class TileKind : uint8_t { kEmpty = 0, kPartial = 1, kFull = 2 };

// Bits [lo, hi) of a 64-bit key mask, lo and hi clamped to [0, 64].
constexpr uint64_t key_bits(int64_t lo, int64_t hi) {
  lo = lo < 0 ? 0 : lo;
  hi = hi > 64 ? 64 : hi;
  if (lo >= hi) return 0;
  const uint64_t upto_hi = hi == 64 ? ~uint64_t{0} : (uint64_t{1} << hi) - 1;
  return upto_hi & ~((uint64_t{1} << lo) - 1);
}

// Combines the kinds of two parts of one rectangle.
constexpr TileKind combine(TileKind a, TileKind b) {
  return a == b ? a : TileKind::kPartial;
}

namespace pattern_detail {
template <class F>
concept HasMask = requires(const F& f, int64_t x) {
  { f.mask(x, x, x, x) } -> std::convertible_to<bool>;
};
template <class F>
concept HasScore = requires(const F& f, float s, int64_t x) {
  { f.score(s, x, x, x, x) } -> std::convertible_to<float>;
};
template <class F>
concept HasScoreGrad = requires(const F& f, float s, int64_t x) {
  { f.score_grad(s, x, x, x, x) } -> std::convertible_to<float>;
};
template <class F>
concept HasClassify = requires(const F& f, int64_t x) {
  { f.classify(x, x, x, x, x, x) } -> std::convertible_to<TileKind>;
};
template <class F>
concept HasCheck = requires(const F& f, int64_t x) {
  { f.check(x, x, x, x) } -> std::convertible_to<std::string>;
};
template <class F>
concept HasMaskBits = requires(const F& f, int64_t x, int n) {
  { f.mask_bits(x, x, x, x, n) } -> std::convertible_to<uint64_t>;
};
}  // namespace pattern_detail

class Pattern;
struct SparseStrided;  // attn/patterns.h
namespace pattern_detail {
template <class F>
concept Functor = !std::is_same_v<F, Pattern> && (HasMask<F> || HasScore<F>);
}  // namespace pattern_detail

// A non-owning, trivially copyable reference to a pattern functor. Empty
// (the default) means no pattern.
class Pattern {
 public:
  Pattern() = default;
  template <class F>
  requires(pattern_detail::Functor<F>)
      Pattern(const F& f)  // NOLINT(google-explicit-constructor): like a view
      : self_(&f),
        mask_(pattern_detail::HasMask<F> ? &mask_of<F> : nullptr),
        mask_bits_(pattern_detail::HasMask<F> ? &mask_bits_of<F> : nullptr),
        score_(pattern_detail::HasScore<F> ? &score_of<F, float> : nullptr),
        score64_(pattern_detail::HasScore<F> ? &score_of<F, double> : nullptr),
        score_row_(pattern_detail::HasScore<F> ? &score_row_of<F> : nullptr),
        score_grad_(pattern_detail::HasScoreGrad<F> ? &score_grad_of<F, float>
                                                    : nullptr),
        score_grad64_(pattern_detail::HasScoreGrad<F>
                          ? &score_grad_of<F, double>
                          : nullptr),
        classify_(pattern_detail::HasMask<F> && pattern_detail::HasClassify<F>
                      ? &classify_of<F>
                      : nullptr),
        check_(pattern_detail::HasCheck<F> ? &check_of<F> : nullptr) {
    // attention() runs this one as a window plus attention within residue
    // classes on strided views (dense tiles) when the call allows.
    if constexpr (std::is_same_v<F, SparseStrided>) strided_ = &f;
  }
  // A pattern must outlive the calls that use it: no temporaries.
  template <class F>
  requires(pattern_detail::Functor<F>) Pattern(const F&&)
  = delete;

  bool empty() const { return self_ == nullptr; }
  bool has_mask() const { return mask_ != nullptr; }
  bool has_score() const { return score_ != nullptr; }
  bool has_classify() const { return classify_ != nullptr; }
  bool has_score_grad() const { return score_grad_ != nullptr; }
  // The SparseStrided this refers to, if it is one.
  const SparseStrided* strided() const { return strided_; }

  bool mask(int64_t b, int64_t h, int64_t i, int64_t j) const {
    return mask_ == nullptr || mask_(self_, b, h, i, j);
  }
  // Keys j0 .. j0 + n - 1 (n <= 64) as bits; all ones without a mask.
  uint64_t mask_bits(int64_t b, int64_t h, int64_t i, int64_t j0, int n) const {
    return mask_bits_ == nullptr ? key_bits(0, n)
                                 : mask_bits_(self_, b, h, i, j0, n);
  }
  float score(float s, int64_t b, int64_t h, int64_t i, int64_t j) const {
    return score_ == nullptr ? s : score_(self_, s, b, h, i, j);
  }
  double score(double s, int64_t b, int64_t h, int64_t i, int64_t j) const {
    return score64_ == nullptr ? s : score64_(self_, s, b, h, i, j);
  }
  // d score(s) / ds: 1 without a score functor or without score_grad.
  float score_grad(float s, int64_t b, int64_t h, int64_t i, int64_t j) const {
    return score_grad_ == nullptr ? 1.0f : score_grad_(self_, s, b, h, i, j);
  }
  double score_grad(double s, int64_t b, int64_t h, int64_t i,
                    int64_t j) const {
    return score_grad64_ == nullptr ? 1.0 : score_grad64_(self_, s, b, h, i, j);
  }
  // s[c] = score(s[c], b, h, i, j0 + c) for c < n.
  void score_row(float* s, int64_t b, int64_t h, int64_t i, int64_t j0,
                 int64_t n) const {
    if (score_row_ != nullptr) score_row_(self_, s, b, h, i, j0, n);
  }
  // Empty if the pattern fits a call with these extents, else why not.
  std::string check(int64_t batch, int64_t heads, int64_t q_len,
                    int64_t kv_len) const {
    return check_ == nullptr ? std::string()
                             : check_(self_, batch, heads, q_len, kv_len);
  }
  // kFull without a mask; kPartial for a non-empty rectangle without a
  // classifier.
  TileKind classify(int64_t b, int64_t h, int64_t i_begin, int64_t i_end,
                    int64_t j_begin, int64_t j_end) const {
    if (i_begin >= i_end || j_begin >= j_end) return TileKind::kEmpty;
    if (mask_ == nullptr) return TileKind::kFull;
    if (classify_ == nullptr) return TileKind::kPartial;
    return classify_(self_, b, h, i_begin, i_end, j_begin, j_end);
  }

 private:
  template <class F>
  static bool mask_of(const void* f, int64_t b, int64_t h, int64_t i,
                      int64_t j) {
    if constexpr (pattern_detail::HasMask<F>) {
      return static_cast<const F*>(f)->mask(b, h, i, j);
    } else {
      return true;
    }
  }
  template <class F>
  static uint64_t mask_bits_of(const void* f, int64_t b, int64_t h, int64_t i,
                               int64_t j0, int n) {
    const F& fn = *static_cast<const F*>(f);
    if constexpr (pattern_detail::HasMaskBits<F>) {
      return fn.mask_bits(b, h, i, j0, n);
    } else if constexpr (pattern_detail::HasMask<F>) {
      uint64_t bits = 0;
      for (int c = 0; c < n; ++c) {
        bits |= static_cast<uint64_t>(fn.mask(b, h, i, j0 + c) ? 1 : 0) << c;
      }
      return bits;
    } else {
      return key_bits(0, n);
    }
  }
  template <class F, class S>
  static S score_of(const void* f, S s, int64_t b, int64_t h, int64_t i,
                    int64_t j) {
    if constexpr (pattern_detail::HasScore<F>) {
      return static_cast<S>(static_cast<const F*>(f)->score(s, b, h, i, j));
    } else {
      return s;
    }
  }
  template <class F, class S>
  static S score_grad_of(const void* f, S s, int64_t b, int64_t h, int64_t i,
                         int64_t j) {
    if constexpr (pattern_detail::HasScoreGrad<F>) {
      return static_cast<S>(
          static_cast<const F*>(f)->score_grad(s, b, h, i, j));
    } else {
      return S(1);
    }
  }
  template <class F>
  static void score_row_of(const void* f, float* s, int64_t b, int64_t h,
                           int64_t i, int64_t j0, int64_t n) {
    if constexpr (pattern_detail::HasScore<F>) {
      const F& fn = *static_cast<const F*>(f);
      for (int64_t c = 0; c < n; ++c) {
        s[c] = static_cast<float>(fn.score(s[c], b, h, i, j0 + c));
      }
    }
  }
  template <class F>
  static TileKind classify_of(const void* f, int64_t b, int64_t h,
                              int64_t i_begin, int64_t i_end, int64_t j_begin,
                              int64_t j_end) {
    if constexpr (pattern_detail::HasClassify<F>) {
      return static_cast<const F*>(f)->classify(b, h, i_begin, i_end, j_begin,
                                                j_end);
    } else {
      return TileKind::kPartial;
    }
  }

  template <class F>
  static std::string check_of(const void* f, int64_t batch, int64_t heads,
                              int64_t q_len, int64_t kv_len) {
    if constexpr (pattern_detail::HasCheck<F>) {
      return static_cast<const F*>(f)->check(batch, heads, q_len, kv_len);
    } else {
      return {};
    }
  }

  const void* self_ = nullptr;
  bool (*mask_)(const void*, int64_t, int64_t, int64_t, int64_t) = nullptr;
  uint64_t (*mask_bits_)(const void*, int64_t, int64_t, int64_t, int64_t,
                         int) = nullptr;
  float (*score_)(const void*, float, int64_t, int64_t, int64_t,
                  int64_t) = nullptr;
  double (*score64_)(const void*, double, int64_t, int64_t, int64_t,
                     int64_t) = nullptr;
  void (*score_row_)(const void*, float*, int64_t, int64_t, int64_t, int64_t,
                     int64_t) = nullptr;
  float (*score_grad_)(const void*, float, int64_t, int64_t, int64_t,
                       int64_t) = nullptr;
  double (*score_grad64_)(const void*, double, int64_t, int64_t, int64_t,
                          int64_t) = nullptr;
  TileKind (*classify_)(const void*, int64_t, int64_t, int64_t, int64_t,
                        int64_t, int64_t) = nullptr;
  std::string (*check_)(const void*, int64_t, int64_t, int64_t,
                        int64_t) = nullptr;
  const SparseStrided* strided_ = nullptr;
};

}  // namespace attn

#endif  // ATTN_PATTERN_H_
