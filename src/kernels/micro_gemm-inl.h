// The one register-blocked micro-GEMM of the kernel family (per Highway
// target), used by the flash forward (S = Q Kt, O += P V), the flash
// backward (S, dP, dV, dK, dQ) and linear attention (its chunk products):
//
//   C[r, col + x N] (+)= sum_{k0 <= k < k1} A[r sm + k sk] * B_k[col + x N]
//
// for r < R rows and x < C vectors of N lanes: R x C accumulators live in
// registers, each k broadcasts one element of A per row and loads C vectors
// of B's row k (through load_b(k, offset), so B may be a packed tile, the
// rows of a cache or a strided matrix). A and C are float.
//
// Long sums are cut into chains of `chain` terms, each started from zero
// and added into C, so a partial sum is not rounded D times in a row (one
// chain over D = 128 made flash's scores 2.6x less accurate than the naive
// path's; see kDotChain). Included once per Highway target.
#if defined(ATTN_SRC_KERNELS_MICRO_GEMM_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SRC_KERNELS_MICRO_GEMM_INL_H_
#undef ATTN_SRC_KERNELS_MICRO_GEMM_INL_H_
#else
#define ATTN_SRC_KERNELS_MICRO_GEMM_INL_H_
#endif

#include <algorithm>
#include <cstdint>

#include "hwy/highway.h"
#include "src/kernels/row_ops-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Vectors per register block along the SIMD axis: 4 x 16 lanes with
// AVX-512's 32 registers, 2 vectors on narrower targets (16 registers).
constexpr int kVecs = HWY_MAX_BYTES >= 64 ? 4 : 2;

// Terms per chain for dot products over a head dim (and the backward's
// other sums). Measured on causal GQA, D 128, scale 0.756 (logits of std
// ~8.5): one chain gave flash 2.7-4.0e-6 relative error against float64
// where naive had 1.0-1.4e-6; chains of 16 (naive sums 8 chains of D/8) bring
// flash to naive's level at one load-add-store of the block per 16 terms.
constexpr int64_t kDotChain = 16;
// No cut: for sums of non-negative weights (O += P V over a 64-key tile).
constexpr int64_t kOneChain = int64_t{1} << 62;

// B's row k as a packed float matrix with leading dimension ld.
struct MatrixB {
  const float* HWY_RESTRICT b;
  int64_t ld;
  HWY_INLINE VF operator()(int64_t k, int64_t offset) const {
    return hn::LoadU(DF(), b + k * ld + offset);
  }
};

// Row k of B as a stored row of E (float, 16-bit or int8 without scale),
// rows[k] its first element: widened as it is loaded.
template <class E>
struct RowsB {
  const E* const* rows;
  HWY_INLINE VF operator()(int64_t k, int64_t offset) const {
    return LoadAsFloat(DF(), rows[k] + offset);
  }
};

// One R x C block at columns [col, col + C N). accumulate: add into C
// (else overwrite it).
template <int R, int C, class LoadB>
HWY_INLINE void MicroGemm(DF df, const float* HWY_RESTRICT a, int64_t sm,
                          int64_t sk, int64_t k0, int64_t k1,
                          const LoadB& load_b, int64_t col,
                          float* HWY_RESTRICT c, int64_t ldc, bool accumulate,
                          int64_t chain) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t c0 = k0; c0 < k1 || c0 == k0; c0 += chain) {
    const int64_t c1 = std::min(k1, c0 + chain);
    VF acc[R][C];
    // The first chain starts from C when accumulating (as a single chain
    // would); later ones start from zero and are added at their end.
    const bool from_c = accumulate && c0 == k0;
    for (int r = 0; r < R; ++r) {
      for (int x = 0; x < C; ++x) {
        acc[r][x] =
            from_c ? hn::LoadU(df, c + r * ldc + col + x * N) : hn::Zero(df);
      }
    }
    for (int64_t k = c0; k < c1; ++k) {
      VF bv[C];
      for (int x = 0; x < C; ++x) bv[x] = load_b(k, col + x * N);
      for (int r = 0; r < R; ++r) {
        const VF av = hn::Set(df, a[r * sm + k * sk]);
        for (int x = 0; x < C; ++x)
          acc[r][x] = hn::MulAdd(av, bv[x], acc[r][x]);
      }
    }
    const bool add = c0 > k0;
    for (int r = 0; r < R; ++r) {
      for (int x = 0; x < C; ++x) {
        float* out = c + r * ldc + col + x * N;
        hn::StoreU(add ? hn::Add(hn::LoadU(df, out), acc[r][x]) : acc[r][x], df,
                   out);
      }
    }
    if (c1 >= k1) break;
  }
}

// MicroGemm over `vecs` vectors of columns from col0, in blocks of up to
// kVecs vectors.
template <int R, class LoadB>
HWY_INLINE void MicroGemmCols(DF df, const float* a, int64_t sm, int64_t sk,
                              int64_t k0, int64_t k1, const LoadB& load_b,
                              int64_t col0, int64_t vecs, float* c, int64_t ldc,
                              bool accumulate, int64_t chain) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t v = 0; v < vecs; v += kVecs) {
    const int64_t col = col0 + v * N;
    switch (std::min<int64_t>(kVecs, vecs - v)) {
      case 1:
        MicroGemm<R, 1>(df, a, sm, sk, k0, k1, load_b, col, c, ldc, accumulate,
                        chain);
        break;
      case 2:
        MicroGemm<R, 2>(df, a, sm, sk, k0, k1, load_b, col, c, ldc, accumulate,
                        chain);
        break;
#if HWY_MAX_BYTES >= 64
      case 3:
        MicroGemm<R, 3>(df, a, sm, sk, k0, k1, load_b, col, c, ldc, accumulate,
                        chain);
        break;
      case 4:
        MicroGemm<R, 4>(df, a, sm, sk, k0, k1, load_b, col, c, ldc, accumulate,
                        chain);
        break;
#endif
      default:
        break;
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SRC_KERNELS_MICRO_GEMM_INL_H_
