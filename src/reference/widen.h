// The references read each head's rows once into contiguous float64 arrays
// (bfloat16 / float16 widened exactly) and compute from those: the same
// products in the same order as reading the views element by element, so
// the same bits, without a strided index computation per multiply.
#ifndef ATTN_SRC_REFERENCE_WIDEN_H_
#define ATTN_SRC_REFERENCE_WIDEN_H_

#include <cstdint>
#include <vector>

#include "attn/tensor.h"
#include "attn/types.h"

namespace attn::reference {

// Rows [0, rows) of head h of batch entry b of a [B, H, rows, cols] view, as
// a contiguous [rows, cols] float64 array.
template <class T>
std::vector<double> widen_head(TensorView<const T> x, int64_t b, int64_t h) {
  const int64_t rows = x.extent(2), cols = x.extent(3);
  std::vector<double> out(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t d = 0; d < cols; ++d) {
      out[i * cols + d] = static_cast<double>(to_float(x(b, h, i, d)));
    }
  }
  return out;
}

}  // namespace attn::reference

#endif  // ATTN_SRC_REFERENCE_WIDEN_H_
