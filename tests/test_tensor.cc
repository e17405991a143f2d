// TensorView and Tensor: layouts, const conversion, alignment.
#include <gtest/gtest.h>

#include <cstdint>

#include "attn/tensor.h"

namespace attn {
namespace {

TEST(TensorView, BshdSeesLogicalBhsd) {
  // Memory [B=2, S=3, H=4, D=5]; element (b, h, s, d) sits at
  // ((b * 3 + s) * 4 + h) * 5 + d.
  float buf[2 * 3 * 4 * 5];
  for (int i = 0; i < 120; ++i) buf[i] = static_cast<float>(i);
  const auto v = TensorView<float>::bshd(buf, 2, 3, 4, 5);
  EXPECT_EQ(v.extents(), (Extents{2, 4, 3, 5}));
  for (int b = 0; b < 2; ++b)
    for (int h = 0; h < 4; ++h)
      for (int s = 0; s < 3; ++s)
        for (int d = 0; d < 5; ++d)
          EXPECT_EQ(v(b, h, s, d), ((b * 3 + s) * 4 + h) * 5 + d);
}

TEST(TensorView, ConvertsToConstOnly) {
  float x = 0;
  TensorView<float> v = TensorView<float>::bhsd(&x, 1, 1, 1, 1);
  TensorView<const float> c = v;
  EXPECT_EQ(c.data(), &x);
  static_assert(
      !std::is_convertible_v<TensorView<const float>, TensorView<float>>);
  static_assert(
      !std::is_convertible_v<TensorView<float>, TensorView<const bfloat16>>);
  static_assert(std::is_trivially_copyable_v<TensorView<float>>);
}

TEST(Tensor, AlignedZeroedContiguous) {
  Tensor<bfloat16> t(2, 3, 5, 7);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
  EXPECT_EQ(t.numel(), 210);
  for (int64_t i = 0; i < t.numel(); ++i) EXPECT_EQ(t.data()[i].bits, 0);
  const auto v = t.view();
  EXPECT_EQ(v.strides(), (Strides{105, 35, 7, 1}));
  EXPECT_EQ(&v(1, 2, 4, 6), t.data() + 209);
}

}  // namespace
}  // namespace attn

#include "attn/version.h"

namespace attn {
namespace {

TEST(Version, HeaderMatchesLibrary) {
  EXPECT_STREQ(version(), ATTN_VERSION_STRING);
  EXPECT_GE(ATTN_VERSION_MAJOR * 10000 + ATTN_VERSION_MINOR * 100, 100);
}

}  // namespace
}  // namespace attn
