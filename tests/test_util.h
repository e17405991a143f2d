// Shared helpers for the unit tests: random inputs, poisoning, and error
// measures against the float64 reference.
#ifndef ATTN_TESTS_TEST_UTIL_H_
#define ATTN_TESTS_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attn/attention.h"
#include "src/api/validate.h"
#include "src/reference/reference.h"

namespace attn::testing {

// A buffer of `n` elements and a [B, H, S, D] view of it in BHSD or BSHD
// order, optionally inside a larger buffer (padding on the seq stride and a
// leading offset) so views with gaps are exercised.
template <class T>
struct Buffer {
  std::vector<T> storage;
  TensorView<T> view;
};

enum class Layout { kBHSD, kBSHD };

template <class T>
Buffer<T> make_buffer(int64_t B, int64_t H, int64_t S, int64_t D, Layout layout,
                      int64_t row_pad = 0, int64_t lead = 0) {
  Buffer<T> buf;
  const int64_t row = D + row_pad;  // elements between consecutive rows
  Strides st;
  if (layout == Layout::kBHSD) {
    st = {H * S * row, S * row, row, 1};
  } else {
    st = {S * H * row, row, H * row, 1};
  }
  buf.storage.assign(lead + B * H * S * row + 1, T{});
  buf.view = TensorView<T>(buf.storage.data() + lead, {B, H, S, D}, st);
  return buf;
}

template <class T>
void fill_normal(TensorView<T> v, std::mt19937& rng, float stddev = 1.0f) {
  std::normal_distribution<float> normal(0.0f, stddev);
  for (int64_t b = 0; b < v.extent(0); ++b)
    for (int64_t h = 0; h < v.extent(1); ++h)
      for (int64_t s = 0; s < v.extent(2); ++s)
        for (int64_t d = 0; d < v.extent(3); ++d)
          v(b, h, s, d) = from_float<T>(normal(rng));
}

// Fills the whole storage (elements outside the view too) with NaN so an
// element a kernel forgets to write fails every comparison.
template <class T>
void poison(std::vector<T>& storage) {
  for (T& x : storage)
    x = from_float<T>(std::numeric_limits<float>::quiet_NaN());
}

// Error of an output against the float64 reference, per element relative to
// the output's scale (max |ref|, at least 1e-6 so all-zero outputs compare
// absolutely), plus the lse error. NaN anywhere makes the error infinite.
struct ErrorStats {
  double max_abs = 0.0;       // max |out - ref|
  double max_rel = 0.0;       // max_abs / output scale
  double nmse = 0.0;          // sum (out-ref)^2 / sum ref^2
  double lse_max_abs = 0.0;   // max |lse - ref_lse| over finite rows
  bool lse_inf_match = true;  // -inf exactly where the reference has it
  std::string worst;          // where max_rel happened
};

template <class T>
ErrorStats compare(const reference::Result& ref, TensorView<const T> out,
                   TensorView<const float> lse) {
  ErrorStats e;
  const int64_t B = out.extent(0), H = out.extent(1), S = out.extent(2),
                Dv = out.extent(3);
  double scale = 1e-6, num = 0.0, den = 0.0;
  for (double x : ref.out) scale = std::max(scale, std::fabs(x));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < S; ++i) {
        const int64_t row = (b * H + h) * S + i;
        for (int64_t d = 0; d < Dv; ++d) {
          const double got = to_float(out(b, h, i, d));
          const double want = ref.out[row * Dv + d];
          double diff = std::fabs(got - want);
          if (std::isnan(diff)) diff = std::numeric_limits<double>::infinity();
          if (diff > e.max_abs) {
            e.max_abs = diff;
            e.worst = "b=" + std::to_string(b) + " h=" + std::to_string(h) +
                      " i=" + std::to_string(i) + " d=" + std::to_string(d) +
                      " got " + std::to_string(got) + " want " +
                      std::to_string(want);
          }
          num += diff * diff;
          den += want * want;
        }
        if (!lse.empty()) {
          const double got = lse(b, h, i, 0), want = ref.lse[row];
          if (std::isinf(want)) {
            if (got != want) e.lse_inf_match = false;
          } else {
            double diff =
                std::fabs(got - want) / std::max(1.0, std::fabs(want));
            if (std::isnan(diff))
              diff = std::numeric_limits<double>::infinity();
            e.lse_max_abs = std::max(e.lse_max_abs, diff);
          }
        }
      }
  e.max_rel = e.max_abs / scale;
  e.nmse = den > 0 ? num / den : num;
  return e;
}

// The reference result for a call, through the same validation the public
// API applies (so shapes and options mean the same thing).
template <class T>
reference::Result reference_result(TensorView<const T> q, TensorView<const T> k,
                                   TensorView<const T> v, TensorView<T> out,
                                   AttentionOptions options) {
  options.algorithm = Algorithm::kReference;
  return reference::attention_f64(
      detail::validate(q, k, v, out, options, TensorView<float>{}));
}

}  // namespace attn::testing

#endif  // ATTN_TESTS_TEST_UTIL_H_
