// Checks and addressing for the nn modules' activations: float32 views
// [B, 1, S, E] with a contiguous feature axis, seen as B blocks of S rows.
#ifndef ATTN_SRC_NN_ROWS_H_
#define ATTN_SRC_NN_ROWS_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "attn/error.h"
#include "attn/tensor.h"
#include "src/util/check.h"

namespace attn::nn::detail {

// Throws (through `where`, the checking entry point) unless `x` is [*, 1, *,
// features] with stride 1 on the feature axis and non-negative strides; `batch`
// / `seq` >= 0 are required extents.
template <class T>
void check_rows(const TensorView<T>& x, const util::Check& where,
                const char* name, int64_t features, int64_t batch = -1,
                int64_t seq = -1);

// Row r of batch b of a checked view.
template <class T>
T* row(const TensorView<T>& x, int64_t b, int64_t s) {
  return x.data() + b * x.stride(0) + s * x.stride(2);
}

// The distance between consecutive rows of one batch entry (of batch
// entries when S == 1): a GEMM's leading dimension.
template <class T>
int64_t leading_dim(const TensorView<T>& x) {
  if (x.extent(2) > 1) return x.stride(2);
  return x.extent(0) > 1 ? x.stride(0) : x.extent(3);
}

// True when the B blocks of S rows form one matrix with leading dimension
// leading_dim(x) (one GEMM instead of B).
template <class T>
bool single_matrix(const TensorView<T>& x) {
  return x.extent(0) <= 1 || x.extent(2) == 1 ||
         x.stride(0) == x.extent(2) * x.stride(2);
}

// Calls fn(x_rows, ldx, y_rows, ldy, rows) once over all B * S rows when
// both views are single matrices, else once per batch entry.
template <class X, class Y, class F>
void for_each_block(const TensorView<X>& x, const TensorView<Y>& y, F&& fn) {
  if (single_matrix(x) && single_matrix(y)) {
    fn(x.data(), leading_dim(x), y.data(), leading_dim(y),
       x.extent(0) * x.extent(2));
    return;
  }
  for (int64_t b = 0; b < x.extent(0); ++b) {
    fn(row(x, b, 0), leading_dim(x), row(y, b, 0), leading_dim(y), x.extent(2));
  }
}

// C [m, n] = op(A) op(B) + beta C, row-major, through BLAS (op: transposed
// when asked; A is m x k after op, B k x n).
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
           float* c, int64_t ldc);

// Adds the seconds since `start` to *slot (when profiling).
class Timer {
 public:
  explicit Timer(double* slot) : slot_(slot) {
    if (slot_ != nullptr) start_ = std::chrono::steady_clock::now();
  }
  ~Timer() { stop(); }
  void stop() {
    if (slot_ == nullptr) return;
    *slot_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
            .count();
    slot_ = nullptr;
  }

 private:
  double* slot_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace attn::nn::detail

#endif  // ATTN_SRC_NN_ROWS_H_
