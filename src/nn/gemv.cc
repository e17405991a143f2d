// Projections of 1..4 rows (decode steps): y = x W^T (+ b), memory bound.
//
// Each task owns a block of kBlock consecutive outputs; inside it, 4 rows
// of W at a time are dotted with every x row (4 x R accumulators), so each
// W element is loaded once per call and the x rows stay in L1. Lanes are
// reduced once per output, then the bias is added; W is prefetched 4 KiB
// ahead per row (into L2). Measured against OpenBLAS 0.3.21's sgemv on [4096, 4096],
// 2 threads: 58-60 GB/s against 45-56 GB/s before the prefetch (the
// machine's read bandwidth: 70-80 GB/s).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/nn/gemv.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include <algorithm>

#include "hwy/highway.h"
#include "src/nn/gemv.h"

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// How far ahead each W row is prefetched: 4 KiB, into L2 (prefetcht1 on
// x86, as PrefetchRow in src/kernels/row_ops-inl.h). In a stand-alone copy
// of this loop ([4096, 4096], 2 threads) the hardware prefetcher alone kept
// the 4 row streams per core at 57 GB/s, and 67 GB/s with prefetches into
// L1. On an AVX-512 AMD EPYC (Zen 4, 2 cores, [12288, 4096], variants
// alternating in one process, medians of 15): no prefetch 27.8-31.5 GB/s,
// into L1 26.8-28.4, into L2 29.6-34.7; 8 KiB ahead into L2 32 GB/s, 1 KiB
// into L1 24.5-25.9.
constexpr int64_t kPrefetchFloats = 1024;
// Lanes of the widest float vector (AVX-512).
constexpr int64_t kMaxFloatLanes = HWY_MAX_BYTES / sizeof(float);

// y rows r < R, outputs [o0, o1): W rows M at a time (M = 4, then 1).
template <int R, int M>
HWY_INLINE void DotRows(const float* HWY_RESTRICT x, int64_t ldx,
                        const float* HWY_RESTRICT w, int64_t in, int64_t o,
                        float (&dots)[M][R]) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  VF acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = hn::Zero(df);
  const float* wr[M];
  for (int m = 0; m < M; ++m) wr[m] = w + (o + m) * in;
  int64_t i = 0;
  for (; i + N <= in; i += N) {
    VF xv[R];
    for (int r = 0; r < R; ++r) xv[r] = hn::LoadU(df, x + r * ldx + i);
    for (int m = 0; m < M; ++m) {
      // Past a row's end this touches the next rows (read soon) or
      // nothing: a prefetch never faults.
      __builtin_prefetch(wr[m] + i + kPrefetchFloats, /*rw=*/0,
                         /*locality=*/2);
      const VF wv = hn::LoadU(df, wr[m] + i);
      for (int r = 0; r < R; ++r) acc[m][r] = hn::MulAdd(wv, xv[r], acc[m][r]);
    }
  }
  if (i < in) {
    // The tail through a zero-padded copy: Highway 1.0.3's MaskedLoad is a
    // full load plus a blend on SSE4/SSSE3, which faulted reading past the
    // end of the last row (found when the tests forced each target).
    HWY_ALIGN float tail[kMaxFloatLanes];
    const auto load_tail = [&](const float* src) {
      std::fill(tail, tail + N, 0.0f);
      std::copy(src, src + (in - i), tail);
      return hn::Load(df, tail);
    };
    VF xv[R];
    for (int r = 0; r < R; ++r) xv[r] = load_tail(x + r * ldx + i);
    for (int m = 0; m < M; ++m) {
      const VF wv = load_tail(wr[m] + i);
      for (int r = 0; r < R; ++r) acc[m][r] = hn::MulAdd(wv, xv[r], acc[m][r]);
    }
  }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r)
      dots[m][r] = hn::GetLane(hn::SumOfLanes(df, acc[m][r]));
}

template <int R>
void GemvBlock(const float* x, int64_t ldx, const float* w, int64_t in,
               int64_t o0, int64_t o1, const float* bias, float* y, int64_t ldy,
               bool accumulate) {
  auto put = [&](int64_t o, int r, float v) {
    if (bias != nullptr) v += bias[o];
    float& dst = y[r * ldy + o];
    dst = accumulate ? dst + v : v;
  };
  int64_t o = o0;
  for (; o + 4 <= o1; o += 4) {
    float d[4][R];
    DotRows<R, 4>(x, ldx, w, in, o, d);
    for (int m = 0; m < 4; ++m)
      for (int r = 0; r < R; ++r) put(o + m, r, d[m][r]);
  }
  for (; o < o1; ++o) {
    float d[1][R];
    DotRows<R, 1>(x, ldx, w, in, o, d);
    for (int r = 0; r < R; ++r) put(o, r, d[0][r]);
  }
}

void Gemv(const float* x, int64_t rows, int64_t ldx, const float* w, int64_t in,
          int64_t o0, int64_t o1, const float* bias, float* y, int64_t ldy,
          bool accumulate) {
  switch (rows) {
    case 1:
      return GemvBlock<1>(x, ldx, w, in, o0, o1, bias, y, ldy, accumulate);
    case 2:
      return GemvBlock<2>(x, ldx, w, in, o0, o1, bias, y, ldy, accumulate);
    case 3:
      return GemvBlock<3>(x, ldx, w, in, o0, o1, bias, y, ldy, accumulate);
    default:
      return GemvBlock<4>(x, ldx, w, in, o0, o1, bias, y, ldy, accumulate);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "src/util/parallel.h"

namespace attn::kernels {

HWY_EXPORT(Gemv);

void gemv_rows(const float* x, int64_t rows, int64_t ldx, const float* w,
               int64_t in, int64_t out, const float* bias, float* y,
               int64_t ldy, bool accumulate) {
  // One contiguous range of outputs per thread (a multiple of 4): each
  // core streams its own part of W. Each output's sum is the same
  // whichever task computes it.
  const int64_t threads = util::resolve_threads(0);
  const int64_t block =
      std::max<int64_t>(4, (out + 4 * threads - 1) / (4 * threads) * 4);
  const int64_t tasks = (out + block - 1) / block;
  const auto kernel = HWY_DYNAMIC_DISPATCH(Gemv);
  util::ParallelFor(tasks, 0, [&](int64_t t, int) {
    const int64_t o0 = t * block, o1 = std::min(out, o0 + block);
    kernel(x, rows, ldx, w, in, o0, o1, bias, y, ldy, accumulate);
  });
}

}  // namespace attn::kernels
#endif  // HWY_ONCE
