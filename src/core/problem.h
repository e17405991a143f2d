// Problem: one attention call after validation, in the form every algorithm
// takes. Filled only by validate() (src/api/validate.cc), so an algorithm may
// assume every invariant stated here.
#ifndef ATTN_SRC_CORE_PROBLEM_H_
#define ATTN_SRC_CORE_PROBLEM_H_

#include <cmath>
#include <cstdint>
#include <span>

#include "attn/options.h"
#include "attn/pattern.h"
#include "attn/tensor.h"
#include "src/core/dropout.h"

namespace attn::detail {

// Glossary: B batch, Hq query heads, Hkv KV heads, G = Hq / Hkv, Sq query
// length, Skv key length, D head dim of q and k, Dv head dim of v and out.
struct Shape {
  int64_t B = 0, Hq = 0, Hkv = 0, Sq = 0, Skv = 0, D = 0, Dv = 0;
  int64_t group() const { return Hq / Hkv; }
};

// The options with every default resolved and every view normalised: mask
// and bias views are either empty or have extents [B, Hq, Sq, Skv] with
// stride 0 along broadcast axes.
struct Params {
  Shape shape;
  float scale = 1.0f;
  bool causal = false;
  int64_t offset = 0;  // Skv - Sq under bottom-right alignment, else 0
  // KV-cache calls: each batch entry is its own sequence, its queries the
  // last Sq positions of its key_length(b) keys, so bottom-right alignment
  // puts query i at position i + key_length(b) - Sq.
  bool per_sequence_offset = false;
  int64_t window_left = -1, window_right = -1;
  float softcap = 0.0f;
  std::span<const float> alibi_slopes;  // empty or Hq
  TensorView<const bool> mask;
  TensorView<const float> bias;
  std::span<const int64_t> key_lengths;  // empty or B
  // Functor mask and score (attn/pattern.h); sees query positions.
  Pattern pattern;
  Algorithm algorithm = Algorithm::kAuto;  // never kAuto after validation
  // The exact rewrite `algorithm` runs through (validation decides it).
  Rewrite rewrite = Rewrite::kNone;
  int num_threads = 0;
  int kv_splits = 0;  // decode: 0 = automatic
  // Rule 7: off unless options.dropout_p > 0.
  detail::Dropout dropout;

  int64_t key_length(int64_t b) const {
    return key_lengths.empty() ? shape.Skv : key_lengths[b];
  }
  // Query i of batch entry b sits at key position i + offset_of(b).
  int64_t offset_of(int64_t b) const {
    return per_sequence_offset ? key_length(b) - shape.Sq : offset;
  }

  // Rule 4 of docs/semantics.md: is key j visible to query i?
  bool visible(int64_t b, int64_t h, int64_t i, int64_t j) const {
    if (j >= key_length(b)) return false;
    const int64_t pos = i + offset_of(b);  // query i's position among keys
    if (causal && j > pos) return false;
    // Written as distances so huge windows cannot overflow.
    if (window_left >= 0 && pos - j > window_left) return false;
    if (window_right >= 0 && j - pos > window_right) return false;
    if (!mask.empty() && !mask(b, h, i, j)) return false;
    if (!pattern.mask(b, h, pos, j)) return false;
    return true;
  }

  // Rules 1-3 of docs/semantics.md on a raw dot product, in the precision of
  // F (double in the reference, float in the float32 paths), the pattern's
  // score last.
  template <class F>
  F score(F dot, int64_t b, int64_t h, int64_t i, int64_t j) const {
    return pattern.score(score_builtin(dot, b, h, i, j), b, h, i + offset_of(b),
                         j);
  }
  // The same without the pattern's score (tiled kernels apply that once per
  // row of a tile).
  template <class F>
  F score_builtin(F dot, int64_t b, int64_t h, int64_t i, int64_t j) const {
    F s = static_cast<F>(scale) * dot;
    if (softcap > 0.0f) {
      const F cap = static_cast<F>(softcap);
      s = cap * std::tanh(s / cap);
    }
    if (!alibi_slopes.empty()) {
      const int64_t dist = i + offset_of(b) - j;
      s -= static_cast<F>(alibi_slopes[h]) *
           static_cast<F>(dist < 0 ? -dist : dist);
    }
    if (!bias.empty()) s += static_cast<F>(bias(b, h, i, j));
    return s;
  }
};

template <class T>
struct Problem {
  Params params;
  TensorView<const T> q, k, v;
  TensorView<T> out;
  TensorView<float> lse;  // may be empty
};

// One attention_backward call after validation: lse is [B, Hq, Sq, 1], out
// and dout [B, Hq, Sq, Dv], the gradients shaped like q, k and v; no output
// overlaps another view.
template <class T>
struct BackwardProblem {
  Params params;
  TensorView<const T> q, k, v, out, dout;
  TensorView<const float> lse;
  TensorView<T> dq, dk, dv;
};

}  // namespace attn::detail

#endif  // ATTN_SRC_CORE_PROBLEM_H_
