// Element types of attn's tensors: float, bfloat16 and float16.
//
// bfloat16 and float16 are storage types: 16 bits, converted to float for
// arithmetic. Conversion from float rounds to nearest, ties to even; NaN stays
// NaN (quiet, sign kept) and never rounds to infinity; values beyond the
// largest finite number round to infinity as IEEE 754 prescribes.
#ifndef ATTN_TYPES_H_
#define ATTN_TYPES_H_

#include <bit>
#include <cstdint>
#include <type_traits>

namespace attn {

struct bfloat16 {
  uint16_t bits = 0;

  static constexpr bfloat16 from_bits(uint16_t b) {
    bfloat16 h;
    h.bits = b;
    return h;
  }
  static constexpr bfloat16 from_float(float f) {
    const uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep sign, force quiet
      return from_bits(static_cast<uint16_t>((u >> 16) | 0x0040u));
    }
    // Round to nearest even on the 16 dropped bits; a carry into the exponent
    // is the correct result (including overflow to infinity).
    const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return from_bits(static_cast<uint16_t>((u + rounding) >> 16));
  }
  constexpr float to_float() const {
    return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
  }
  constexpr explicit operator float() const { return to_float(); }
  friend constexpr bool operator==(bfloat16 a, bfloat16 b) {
    return a.bits == b.bits;
  }
};

struct float16 {
  uint16_t bits = 0;

  static constexpr float16 from_bits(uint16_t b) {
    float16 h;
    h.bits = b;
    return h;
  }
  static constexpr float16 from_float(float f) {
    const uint32_t u = std::bit_cast<uint32_t>(f);
    const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    const uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) {  // NaN: keep sign and top payload bits, quiet
      return from_bits(sign | 0x7e00u | ((abs >> 13) & 0x03ffu));
    }
    if (abs >= 0x477ff000u) {  // >= 65520 rounds to infinity
      return from_bits(sign | 0x7c00u);
    }
    if (abs < 0x38800000u) {  // below 2^-14: float16 subnormal or zero
      // Value in units of 2^-24 (the float16 subnormal step), rounded RNE.
      if (abs < 0x33000000u) return from_bits(sign);  // < 2^-25: rounds to 0
      const uint32_t mant = (abs & 0x007fffffu) | 0x00800000u;
      const int shift = 126 - static_cast<int>(abs >> 23);  // 14..24 -> >= 14
      const uint32_t whole = mant >> shift;
      const uint32_t rest = mant & ((1u << shift) - 1u);
      const uint32_t half = 1u << (shift - 1);
      const uint32_t r =
          whole + ((rest > half || (rest == half && (whole & 1u))) ? 1u : 0u);
      return from_bits(static_cast<uint16_t>(sign | r));
    }
    // Normal: rebias exponent (127 -> 15) and round the 13 dropped bits.
    const uint32_t rebased = abs - (112u << 23);
    const uint32_t rounding = 0x0fffu + ((rebased >> 13) & 1u);
    return from_bits(
        static_cast<uint16_t>(sign | ((rebased + rounding) >> 13)));
  }
  constexpr float to_float() const {
    const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
    const uint32_t exp = (bits >> 10) & 0x1fu;
    const uint32_t mant = bits & 0x03ffu;
    if (exp == 0x1fu) {  // inf or NaN
      return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
    }
    if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
      const float mag = static_cast<float>(mant) * 5.9604644775390625e-8f;
      return sign ? -mag : mag;
    }
    return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
  }
  constexpr explicit operator float() const { return to_float(); }
  friend constexpr bool operator==(float16 a, float16 b) {
    return a.bits == b.bits;
  }
};

// Conversions used by generic code: to_float(x) and from_float<T>(f).
constexpr float to_float(float x) { return x; }
constexpr float to_float(bfloat16 x) { return x.to_float(); }
constexpr float to_float(float16 x) { return x.to_float(); }

template <class T>
constexpr T from_float(float f) {
  if constexpr (std::is_same_v<T, float>) {
    return f;
  } else {
    return T::from_float(f);
  }
}

// Name of an element type, for messages and tables.
template <class T>
constexpr const char* dtype_name() {
  if constexpr (std::is_same_v<T, float>) return "float32";
  if constexpr (std::is_same_v<T, bfloat16>) return "bfloat16";
  if constexpr (std::is_same_v<T, float16>) return "float16";
  return "unknown";
}

}  // namespace attn

#endif  // ATTN_TYPES_H_
