// Per-target row helpers of the tiled kernels (flash forward and backward,
// decode): base-2 exponential, bfloat16 rounding, key masks, loads that
// widen or dequantise stored rows, dropout bits, prefetch. Included by the
// other *-inl.h files of src/kernels once per Highway target.
#if defined(ATTN_SRC_KERNELS_ROW_OPS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SRC_KERNELS_ROW_OPS_INL_H_
#undef ATTN_SRC_KERNELS_ROW_OPS_INL_H_
#else
#define ATTN_SRC_KERNELS_ROW_OPS_INL_H_
#endif

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "attn/types.h"
#include "hwy/highway.h"
#include "src/core/dropout.h"
#include "src/kernels/flash.h"

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// 2^x for x in [-127, 127] (arguments below -127 give 0): x = n + f with n
// integer and |f| <= 1/2; 2^f by its degree-7 Taylor polynomial in f ln 2
// (truncation error < 6e-9, under half an ulp), 2^n through the exponent
// bits. About half the work of a general exp.
HWY_INLINE VF Exp2(DF df, VF x) {
  const hn::RebindToSigned<DF> di;
  x = hn::Max(x, hn::Set(df, -127.0f));
  const VF n = hn::Round(x);
  const VF f = hn::Sub(x, n);
  // c_k = ln(2)^k / k!
  VF p = hn::Set(df, 1.5252733804059841e-5f);
  p = hn::MulAdd(p, f, hn::Set(df, 1.5403530393381606e-4f));
  p = hn::MulAdd(p, f, hn::Set(df, 1.3333558146428443e-3f));
  p = hn::MulAdd(p, f, hn::Set(df, 9.6181291076284772e-3f));
  p = hn::MulAdd(p, f, hn::Set(df, 5.5504108664821580e-2f));
  p = hn::MulAdd(p, f, hn::Set(df, 2.4022650695910071e-1f));
  p = hn::MulAdd(p, f, hn::Set(df, 6.9314718055994531e-1f));
  p = hn::MulAdd(p, f, hn::Set(df, 1.0f));
  // n + 127 in [0, 254]: exponent field 0 makes 2^n = 0 for n = -127.
  const auto bits =
      hn::ShiftLeft<23>(hn::Add(hn::ConvertTo(di, n), hn::Set(di, 127)));
  return hn::Mul(p, hn::BitCast(df, bits));
}

// v, opaque to the optimiser: GCC contracts a * b - c into one fused
// multiply-add by default (-ffp-contract=fast in C++), which is wrong
// where the product must be rounded first.
HWY_INLINE VF Rounded(VF v) {
#if HWY_ARCH_X86
  asm("" : "+x"(v.raw));
#endif
  return v;
}

// Rounds finite, non-negative floats to the nearest bfloat16 value (ties to
// even), kept as float: the probabilities the bfloat16 PV product uses, so
// the row sum l matches the weights actually applied.
HWY_INLINE VF RoundToBFloat16(DF df, VF x) {
  const hn::RebindToUnsigned<DF> du;
  const auto bits = hn::BitCast(du, x);
  const auto odd = hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1u));
  const auto rounded =
      hn::And(hn::Add(bits, hn::Add(hn::Set(du, 0x7fffu), odd)),
              hn::Set(du, 0xffff0000u));
  return hn::BitCast(df, rounded);
}

// The lanes of keys j .. j + N - 1 whose bits are set in `keep`.
HWY_INLINE hn::Mask<DF> KeepMask(DF df, uint64_t keep, int64_t j) {
  const uint64_t bits = keep >> j;
  uint8_t bytes[8];
  for (int x = 0; x < 8; ++x) bytes[x] = static_cast<uint8_t>(bits >> (8 * x));
  return hn::LoadMaskBits(df, bytes);
}

// One vector of a stored row as float: float loaded, 16-bit types widened,
// int8 converted (its scale is applied by the caller).
template <class E>
HWY_INLINE VF LoadAsFloat(DF df, const E* HWY_RESTRICT p) {
  if constexpr (std::is_same_v<E, float>) {
    return hn::LoadU(df, p);
  } else if constexpr (std::is_same_v<E, int8_t>) {
    const hn::Rebind<int8_t, DF> d8;
    return hn::ConvertTo(
        df, hn::PromoteTo(hn::RebindToSigned<DF>(), hn::LoadU(d8, p)));
  } else {
    using H = std::conditional_t<std::is_same_v<E, bfloat16>, hwy::bfloat16_t,
                                 hwy::float16_t>;
    const hn::Rebind<H, DF> dh;
    return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const H*>(p)));
  }
}

// Dropout::keep_bits (dropout.h) with eight SplitMix64 draws per vector
// where 64-bit lanes multiply natively (AVX-512); the scalar loop elsewhere.
// The same bits either way.
HWY_INLINE uint64_t DropoutKeepBits(const Dropout& drop, uint64_t row,
                                    int64_t j0, int n) {
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  const hn::ScalableTag<uint64_t> du;
  const hn::RebindToSigned<decltype(du)> di;
  const int L = static_cast<int>(hn::Lanes(du));
  const auto base = hn::Add(
      hn::Iota(du, 0),
      hn::Set(du, row + static_cast<uint64_t>(j0) + 0x9E3779B97F4A7C15ull));
  const auto c1 = hn::Set(du, 0xBF58476D1CE4E5B9ull);
  const auto c2 = hn::Set(du, 0x94D049BB133111EBull);
  const auto threshold = hn::Set(di, static_cast<int64_t>(drop.threshold));
  uint64_t bits = 0;
  for (int c = 0; c < n; c += L) {
    auto x = hn::Add(base, hn::Set(du, static_cast<uint64_t>(c)));
    x = hn::Mul(hn::Xor(x, hn::ShiftRight<30>(x)), c1);
    x = hn::Mul(hn::Xor(x, hn::ShiftRight<27>(x)), c2);
    x = hn::Xor(x, hn::ShiftRight<31>(x));
    // The high 32 bits, compared as non-negative int64.
    const auto u = hn::BitCast(di, hn::ShiftRight<32>(x));
    uint8_t lane_bits[8] = {};
    hn::StoreMaskBits(di, hn::Not(hn::Lt(u, threshold)), lane_bits);
    bits |= static_cast<uint64_t>(lane_bits[0]) << c;
  }
  return bits & key_bits(0, n);
#else
  return drop.keep_bits(row, j0, n);
#endif
}

// Requests every cache line of a row of n elements into L2, not L1
// (prefetcht1 on x86, locality 2 of __builtin_prefetch). A request into
// L1 holds one of the core's few L1 miss buffers until its line arrives,
// which caps how many scattered rows (pages of 16 tokens, one head's 4 KiB
// each) can be in flight; into L2 more are, and the load that follows finds
// its line in L2. Measured on AVX-512 (AMD EPYC Zen 4, 2
// cores, one decode step, Hq 32 / Hkv 8 / D 128, 16K tokens paged by 16,
// T0 and T1 calls alternating in one process): bfloat16 cache 4.47 ms with
// T0 against 3.27 with T1, float32 8.16 against 5.87, int8 3.02 against
// 2.86; contiguous bfloat16 3.55 against 2.91; chunked prefill (512 rows)
// unchanged. A one-core stream of random 4 KiB chunks: 8-10 GB/s with T0,
// 14-17.6 GB/s with T1.
template <class E>
HWY_INLINE void PrefetchRow(const E* row, int64_t n) {
  constexpr int64_t kLine = 64 / sizeof(E) > 0 ? 64 / sizeof(E) : 1;
  for (int64_t d = 0; d < n; d += kLine) {
    __builtin_prefetch(row + d, /*rw=*/0, /*locality=*/2);
  }
}

template <class T>
HWY_INLINE void widen_row(const T* HWY_RESTRICT src, int64_t n,
                          float* HWY_RESTRICT dst) {
  int64_t d = 0;
  if constexpr (!std::is_same_v<T, float>) {
    using H = std::conditional_t<std::is_same_v<T, bfloat16>, hwy::bfloat16_t,
                                 hwy::float16_t>;
    const DF df;
    const hn::Rebind<H, DF> dh;
    const int64_t N = static_cast<int64_t>(hn::Lanes(df));
    const H* hsrc = reinterpret_cast<const H*>(src);
    for (; d + N <= n; d += N) {
      hn::StoreU(hn::PromoteTo(df, hn::LoadU(dh, hsrc + d)), df, dst + d);
    }
  }
  for (; d < n; ++d) dst[d] = to_float(src[d]);
}

// A stored row as float: widened, or for int8 multiplied by its scale.
template <class E>
HWY_INLINE void dequant_row(const E* HWY_RESTRICT src, int64_t n, float scale,
                            float* HWY_RESTRICT dst) {
  if constexpr (std::is_same_v<E, int8_t>) {
    const DF df;
    const hn::RebindToSigned<DF> di;
    const hn::Rebind<int8_t, DF> d8;
    const int64_t N = static_cast<int64_t>(hn::Lanes(df));
    const VF vs = hn::Set(df, scale);
    int64_t d = 0;
    for (; d + N <= n; d += N) {
      const VF x = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, src + d)));
      hn::StoreU(hn::Mul(x, vs), df, dst + d);
    }
    for (; d < n; ++d) dst[d] = static_cast<float>(src[d]) * scale;
  } else {
    widen_row(src, n, dst);
  }
}

// Packs n bfloat16 values as n/2 pairs (odd n: the last pair's high half is
// 0) into dst[0], dst[stride], ...; for the vdpbf16ps path.
template <class T>
HWY_INLINE void pack_pairs(const T* src, int64_t n, uint32_t* dst,
                           int64_t stride) {
  if constexpr (std::is_same_v<T, bfloat16>) {
    for (int64_t x = 0; x < n / 2; ++x) {
      dst[x * stride] = static_cast<uint32_t>(src[2 * x].bits) |
                        (static_cast<uint32_t>(src[2 * x + 1].bits) << 16);
    }
    if (n % 2) dst[(n / 2) * stride] = src[n - 1].bits;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SRC_KERNELS_ROW_OPS_INL_H_
