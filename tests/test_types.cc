// bfloat16 and float16 conversions: exhaustive over the 16-bit patterns,
// and against independent oracles for float -> 16-bit rounding.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>

#include "attn/types.h"

namespace attn {
namespace {

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }

TEST(BFloat16, EveryPatternRoundTrips) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const bfloat16 h = bfloat16::from_bits(static_cast<uint16_t>(b));
    const float f = h.to_float();
    const bfloat16 back = bfloat16::from_float(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(back.to_float())) << b;
      EXPECT_EQ(back.bits & 0x8000u, b & 0x8000u) << "NaN sign " << b;
      EXPECT_NE(back.bits & 0x0040u, 0u) << "NaN must be quiet " << b;
    } else {
      EXPECT_EQ(back.bits, b) << b;
    }
  }
}

// Nearest bfloat16 by explicit comparison of the two neighbours in double.
uint16_t bf16_oracle(float f) {
  const uint32_t u = bits_of(f);
  const uint16_t lo = static_cast<uint16_t>(u >> 16);  // toward zero
  const uint16_t hi = static_cast<uint16_t>(lo + 1);   // away from zero
  const double x = std::fabs(static_cast<double>(f));
  const double vlo = std::fabs(bfloat16::from_bits(lo).to_float());
  double vhi = std::fabs(bfloat16::from_bits(hi).to_float());
  if (std::isinf(vhi)) vhi = std::ldexp(1.0, 128);  // the next binade's start
  if (x - vlo < vhi - x) return lo;
  if (x - vlo > vhi - x) return hi;
  return (lo & 1u) ? hi : lo;  // tie: even mantissa
}

TEST(BFloat16, RoundsToNearestEven) {
  std::mt19937 rng(1);
  for (int n = 0; n < 2000000; ++n) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (std::isnan(f) || std::isinf(f)) continue;
    ASSERT_EQ(bfloat16::from_float(f).bits, bf16_oracle(f))
        << std::hexfloat << f;
  }
  // Exact ties in both parities, overflow, and the sign of zero.
  EXPECT_EQ(bfloat16::from_float(std::bit_cast<float>(0x3f808000u)).bits,
            0x3f80u);
  EXPECT_EQ(bfloat16::from_float(std::bit_cast<float>(0x3f818000u)).bits,
            0x3f82u);
  EXPECT_EQ(bfloat16::from_float(std::bit_cast<float>(0x7f7fffffu)).bits,
            0x7f80u);
  EXPECT_EQ(bfloat16::from_float(-0.0f).bits, 0x8000u);
  EXPECT_EQ(bfloat16::from_float(INFINITY).bits, 0x7f80u);
  EXPECT_EQ(bfloat16::from_float(-INFINITY).bits, 0xff80u);
  // A signalling NaN whose payload sits only in the dropped bits stays NaN.
  EXPECT_TRUE(std::isnan(
      bfloat16::from_float(std::bit_cast<float>(0x7f800001u)).to_float()));
}

TEST(Float16, EveryPatternMatchesCompiler) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float16 h = float16::from_bits(static_cast<uint16_t>(b));
    const _Float16 c = std::bit_cast<_Float16>(static_cast<uint16_t>(b));
    const float f = h.to_float();
    if (std::isnan(static_cast<float>(c))) {
      EXPECT_TRUE(std::isnan(f)) << b;
      const float16 back = float16::from_float(f);
      EXPECT_TRUE(std::isnan(back.to_float())) << b;
      EXPECT_EQ(back.bits & 0x8000u, b & 0x8000u) << b;
      continue;
    }
    EXPECT_EQ(bits_of(f), bits_of(static_cast<float>(c))) << b;
    EXPECT_EQ(float16::from_float(f).bits, b) << b;
  }
}

TEST(Float16, RoundsLikeCompiler) {
  // GCC's _Float16 conversion is IEEE round-to-nearest-even: an
  // independent oracle. Random patterns plus every float near the float16
  // range's edges (subnormals, overflow threshold).
  auto check = [](float f) {
    const uint16_t want = std::bit_cast<uint16_t>(static_cast<_Float16>(f));
    ASSERT_EQ(float16::from_float(f).bits, want) << std::hexfloat << f;
  };
  std::mt19937 rng(2);
  for (int n = 0; n < 2000000; ++n) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (!std::isnan(f)) check(f);
  }
  // Dense sweep of magnitudes from 2^-26 to 2^17, where every branch lives.
  for (uint32_t u = 0x32800000u; u < 0x48000000u; u += 97) {
    check(std::bit_cast<float>(u));
    check(-std::bit_cast<float>(u));
  }
  for (float f :
       {65504.0f, 65519.99f, 65520.0f, 6.1035156e-05f, 5.9604645e-08f,
        2.9802322e-08f, 2.9802326e-08f, 0.0f, -0.0f, INFINITY, -INFINITY}) {
    check(f);
  }
}

}  // namespace
}  // namespace attn
