// Linear projections through BLAS (OpenBLAS from Debian, found by FindBLAS):
//   y[r, o] = sum_i x[r, i] * W[o, i] + b[o]     (x W^T + b, torch layout)
// One SGEMM over all rows; up to 4 rows (decoding: matrix-vector products,
// memory bound) go to src/nn/gemv.cc instead.
//
// BLAS is loaded on the first SGEMM (dlopen), not linked: OpenBLAS's
// library constructor allocates its buffers and starts its threads at
// process start, and under a small address-space limit it spins forever,
// so every process linking attn::nn would pay for it even when it never
// multiplies (attn --version, attn run). The library found at build time
// is tried first (ATTN_BLAS_LIBRARY), then the usual sonames; CBLAS's ABI
// is the standard one, so only its prototype is declared here.
#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "attn/error.h"
#include "attn/nn/layers.h"
#include "src/nn/gemv.h"
#include "src/nn/rows.h"

#ifndef ATTN_BLAS_LIBRARY
#define ATTN_BLAS_LIBRARY ""
#endif

namespace attn::nn {
namespace {

enum CblasOrderT { kCblasRowMajor = 101 };
enum CblasTransposeT { kCblasNoTrans = 111, kCblasTrans = 112 };
using SgemmFn = void (*)(int order, int trans_a, int trans_b, int m, int n,
                         int k, float alpha, const float* a, int lda,
                         const float* b, int ldb, float beta, float* c,
                         int ldc);
using InfoFn = char* (*)();

struct Blas {
  SgemmFn sgemm = nullptr;
  InfoFn config = nullptr, corename = nullptr;
  std::string library, error;
};

const Blas& blas() {
  static const Blas loaded = [] {
    Blas b;
    for (const char* name :
         {ATTN_BLAS_LIBRARY, "libopenblas.so.0", "libblas.so.3"}) {
      if (*name == '\0') continue;
      void* handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (handle == nullptr) {
        const char* why = dlerror();
        b.error += std::string(b.error.empty() ? "" : "; ") +
                   (why != nullptr ? why : name);
        continue;
      }
      b.sgemm = reinterpret_cast<SgemmFn>(dlsym(handle, "cblas_sgemm"));
      if (b.sgemm == nullptr) {
        b.error += std::string(b.error.empty() ? "" : "; ") + name +
                   " has no cblas_sgemm";
        continue;  // the handle stays: dlclose of a BLAS is not worth it
      }
      b.config = reinterpret_cast<InfoFn>(dlsym(handle, "openblas_get_config"));
      b.corename =
          reinterpret_cast<InfoFn>(dlsym(handle, "openblas_get_corename"));
      b.library = name;
      break;
    }
    return b;
  }();
  return loaded;
}

void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k,
                 float alpha, const float* a, int lda, const float* b, int ldb,
                 float beta, float* c, int ldc) {
  const Blas& lib = blas();
  if (lib.sgemm == nullptr) {
    throw Error("attn::nn: cannot load a BLAS library for the projections (" +
                lib.error + "); install libopenblas0");
  }
  lib.sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
            ldc);
}

}  // namespace
namespace detail {

template <class T>
void check_rows(const TensorView<T>& x, const util::Check& where,
                const char* name, int64_t features, int64_t batch,
                int64_t seq) {
  if (x.empty() && x.numel() != 0) where.fail(name, "is empty");
  if (x.extent(1) != 1) {
    where.fail(name, "must be [B, 1, S, E] (extent 1 on axis 1), got extent " +
                         std::to_string(x.extent(1)));
  }
  if (x.extent(3) != features) {
    where.fail(name, "must have " + std::to_string(features) +
                         " features, got " + std::to_string(x.extent(3)));
  }
  if (batch >= 0 && x.extent(0) != batch) {
    where.fail(name, "must have batch " + std::to_string(batch) + ", got " +
                         std::to_string(x.extent(0)));
  }
  if (seq >= 0 && x.extent(2) != seq) {
    where.fail(name, "must have " + std::to_string(seq) + " rows, got " +
                         std::to_string(x.extent(2)));
  }
  for (int a = 0; a < 4; ++a) {
    if (x.stride(a) < 0) where.fail(name, "strides must be >= 0");
  }
  if (features > 1 && x.stride(3) != 1)
    where.fail(name, "feature stride must be 1");
  if (x.extent(2) > 1 && x.stride(2) < features) {
    where.fail(name, "row stride must be >= the feature count (rows overlap)");
  }
  if (x.extent(2) == 1 && x.extent(0) > 1 && x.stride(0) < features) {
    where.fail(name,
               "batch stride must be >= the feature count (rows overlap)");
  }
  if (x.numel() > 0 && x.data() == nullptr) where.fail(name, "has no data");
}

template void check_rows(const TensorView<float>&, const util::Check&,
                         const char*, int64_t, int64_t, int64_t);
template void check_rows(const TensorView<const float>&, const util::Check&,
                         const char*, int64_t, int64_t, int64_t);

}  // namespace detail

void linear_rows(const float* x, int64_t rows, int64_t ldx, const float* w,
                 int64_t in, int64_t out, const float* bias, float* y,
                 int64_t ldy, bool accumulate) {
  if (rows <= 0 || out <= 0) return;
  if (in == 0) {
    for (int64_t r = 0; r < rows; ++r) {
      float* yr = y + r * ldy;
      if (!accumulate) std::fill(yr, yr + out, 0.0f);
    }
  } else if (rows <= kernels::kGemvMaxRows) {
    // Decode steps: memory bound; our kernel streams W once for all rows
    // (faster than OpenBLAS's sgemv here: src/nn/gemv.cc).
    kernels::gemv_rows(x, rows, ldx, w, in, out, bias, y, ldy, accumulate);
    return;
  } else {
    cblas_sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans,
                static_cast<int>(rows), static_cast<int>(out),
                static_cast<int>(in), 1.0f, x, static_cast<int>(ldx), w,
                static_cast<int>(in), accumulate ? 1.0f : 0.0f, y,
                static_cast<int>(ldy));
  }
  if (bias != nullptr) {
    for (int64_t r = 0; r < rows; ++r) {
      float* yr = y + r * ldy;
      for (int64_t o = 0; o < out; ++o) yr[o] += bias[o];
    }
  }
}

namespace detail {

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
           float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t r = 0; r < m; ++r) {
      float* cr = c + r * ldc;
      for (int64_t x = 0; x < n; ++x)
        cr[x] = beta == 0.0f ? 0.0f : cr[x] * beta;
    }
    return;
  }
  cblas_sgemm(kCblasRowMajor, trans_a ? kCblasTrans : kCblasNoTrans,
              trans_b ? kCblasTrans : kCblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), 1.0f, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
              static_cast<int>(ldc));
}

}  // namespace detail

void Linear::backward(TensorView<const float> x, TensorView<const float> dy,
                      TensorView<float> dx, std::vector<float>& grad_weight,
                      std::vector<float>& grad_bias, bool accumulate) const {
  const util::Check where("attn::nn::Linear::backward");
  detail::check_rows(x, where, "x", in_features);
  const int64_t B = x.extent(0), S = x.extent(2);
  detail::check_rows(dy, where, "dy", out_features, B, S);
  if (!dx.empty()) detail::check_rows(dx, where, "dx", in_features, B, S);
  const size_t nw = static_cast<size_t>(in_features * out_features);
  if (grad_weight.empty()) grad_weight.assign(nw, 0.0f);
  if (grad_weight.size() != nw) {
    where.fail("grad_weight must be empty or hold out * in floats");
  }
  if (!bias.empty()) {
    if (grad_bias.empty()) grad_bias.assign(bias.size(), 0.0f);
    if (grad_bias.size() != bias.size()) {
      where.fail("grad_bias must be empty or hold out floats");
    }
  }
  for (int64_t b = 0; b < B; ++b) {
    const float* xb = detail::row(x, b, 0);
    const float* dyb = detail::row(dy, b, 0);
    const int64_t ldx = detail::leading_dim(x), ldy = detail::leading_dim(dy);
    // grad_weight [out, in] += dy^T [out, S] x [S, in].
    detail::sgemm(true, false, out_features, in_features, S, dyb, ldy, xb, ldx,
                  1.0f, grad_weight.data(), in_features);
    if (!bias.empty()) {
      for (int64_t s = 0; s < S; ++s) {
        const float* r = dyb + s * ldy;
        for (int64_t o = 0; o < out_features; ++o) grad_bias[o] += r[o];
      }
    }
    if (!dx.empty()) {
      // dx [S, in] (+)= dy [S, out] W [out, in].
      detail::sgemm(false, false, S, in_features, out_features, dyb, ldy,
                    weight.data(), in_features, accumulate ? 1.0f : 0.0f,
                    detail::row(dx, b, 0), detail::leading_dim(dx));
    }
  }
}

std::string blas_info() {
  const Blas& b = blas();
  if (b.sgemm == nullptr) return "no BLAS (" + b.error + ")";
  if (b.config == nullptr || b.corename == nullptr) return b.library;
  return std::string(b.config()) + " | core " + b.corename();
}

Linear::Linear(int64_t in, int64_t out, bool with_bias)
    : in_features(in), out_features(out) {
  if (in < 0 || out < 0)
    util::Check("attn::nn::Linear").fail("sizes must be >= 0");
  weight.assign(static_cast<size_t>(in * out), 0.0f);
  if (with_bias) bias.assign(static_cast<size_t>(out), 0.0f);
}

void Linear::forward(TensorView<const float> x, TensorView<float> y,
                     bool accumulate) const {
  const util::Check where("attn::nn::Linear::forward");
  if (weight.size() != static_cast<size_t>(in_features * out_features)) {
    where.fail("weight must hold out_features * in_features = " +
               std::to_string(in_features * out_features) + " floats, has " +
               std::to_string(weight.size()));
  }
  if (!bias.empty() && bias.size() != static_cast<size_t>(out_features)) {
    where.fail("bias must be empty or hold out_features floats");
  }
  detail::check_rows(x, where, "x", in_features);
  detail::check_rows(y, where, "y", out_features, x.extent(0), x.extent(2));
  if (x.data() == y.data() && x.numel() > 0) {
    where.fail(
        "y must not alias x (the product reads x while "
        "writing y)");
  }
  const float* b = bias.empty() ? nullptr : bias.data();
  detail::for_each_block(
      x, y,
      [&](const float* xr, int64_t ldx, float* yr, int64_t ldy, int64_t rows) {
        linear_rows(xr, rows, ldx, weight.data(), in_features, out_features, b,
                    yr, ldy, accumulate);
      });
}

}  // namespace attn::nn
