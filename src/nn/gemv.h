// Matrix-vector products for projections of a few rows (decoding):
//   y[r, o] (+)= sum_i x[r, i] W[o, i] (+ b[o]),  r < rows <= 4
// W [out, in] row-major is streamed once for all rows. See gemv.cc.
#ifndef ATTN_SRC_NN_GEMV_H_
#define ATTN_SRC_NN_GEMV_H_

#include <cstdint>

namespace attn::kernels {

inline constexpr int64_t kGemvMaxRows = 4;

// rows in [1, kGemvMaxRows]; ldx >= in, ldy >= out; bias may be null.
// Sums in a fixed order per output (the same bits for any thread count).
void gemv_rows(const float* x, int64_t rows, int64_t ldx, const float* w,
               int64_t in, int64_t out, const float* bias, float* y,
               int64_t ldy, bool accumulate);

}  // namespace attn::kernels

#endif  // ATTN_SRC_NN_GEMV_H_
