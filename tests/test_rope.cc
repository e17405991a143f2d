// RoPE against a float64 implementation of the formula, written here
// independently: both conventions, partial rotary dims, Llama 3.1 scaling,
// positions by offset and explicit, strided views, 16-bit types, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include "attn/error.h"
#include "attn/rope.h"
#include "tests/test_util.h"

namespace attn {
namespace {

// Llama 3.1's published recipe, in float64.
std::vector<double> reference_inv_freq(int64_t R, double theta,
                                       const std::optional<RopeScaling>& sc) {
  std::vector<double> f(R / 2);
  for (int64_t i = 0; i < R / 2; ++i)
    f[i] = 1.0 / std::pow(theta, double(2 * i) / R);
  if (!sc) return f;
  const double low = sc->original_max_positions / sc->low_freq_factor;
  const double high = sc->original_max_positions / sc->high_freq_factor;
  for (double& x : f) {
    const double wl = 2 * std::numbers::pi / x;
    if (wl < high) continue;
    if (wl > low) {
      x /= sc->factor;
    } else {
      const double smooth =
          (sc->original_max_positions / wl - sc->low_freq_factor) /
          (sc->high_freq_factor - sc->low_freq_factor);
      x = (1 - smooth) * x / sc->factor + smooth * x;
    }
  }
  return f;
}

// Rotates one row in float64.
std::vector<double> reference_row(const std::vector<double>& x, double pos,
                                  const RopeOptions& o) {
  const int64_t D = x.size(), R = o.rotary_dim ? o.rotary_dim : D;
  const auto f = reference_inv_freq(R, o.theta, o.scaling);
  std::vector<double> y = x;
  for (int64_t i = 0; i < R / 2; ++i) {
    const int64_t a = o.style == RopeStyle::kInterleaved ? 2 * i : i;
    const int64_t b =
        o.style == RopeStyle::kInterleaved ? 2 * i + 1 : i + R / 2;
    const double c = std::cos(pos * f[i]), s = std::sin(pos * f[i]);
    y[a] = x[a] * c - x[b] * s;
    y[b] = x[b] * c + x[a] * s;
  }
  return y;
}

struct Case {
  int64_t B, H, S, D;
  RopeOptions o;
  int64_t offset;
  std::vector<int64_t> positions;
};

// Applies RoPE to a BSHD view inside a padded buffer and compares every row
// with the float64 formula; the padding must stay untouched.
template <class T>
void check(const Case& c, double tol) {
  SCOPED_TRACE(
      "D=" + std::to_string(c.D) + " R=" + std::to_string(c.o.rotary_dim) +
      (c.o.style == RopeStyle::kInterleaved ? " interleaved" : " half") +
      (c.o.scaling ? " scaled" : ""));
  std::mt19937 rng(7);
  auto buf =
      testing::make_buffer<T>(c.B, c.H, c.S, c.D, testing::Layout::kBSHD, 3, 2);
  testing::poison(buf.storage);
  testing::fill_normal(buf.view, rng);
  std::vector<T> before = buf.storage;
  apply_rope(buf.view, c.o, c.offset, c.positions);
  double worst = 0;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t s = 0; s < c.S; ++s) {
        std::vector<double> x(c.D);
        const T* orig =
            before.data() + (buf.view.row(b, h, s) - buf.storage.data());
        for (int64_t d = 0; d < c.D; ++d) x[d] = to_float(orig[d]);
        const double pos = c.positions.empty()
                               ? double(c.offset + s)
                               : double(c.positions.size() == size_t(c.S)
                                            ? c.positions[s]
                                            : c.positions[b * c.S + s]);
        const auto want = reference_row(x, pos, c.o);
        for (int64_t d = 0; d < c.D; ++d) {
          const double got = to_float(buf.view(b, h, s, d));
          worst = std::max(worst, std::fabs(got - want[d]));
          if (std::isnan(got)) worst = INFINITY;
        }
      }
  EXPECT_LE(worst, tol);
  // Padding between rows and before the view is still NaN.
  size_t nan_count = 0;
  for (const T& e : buf.storage) nan_count += std::isnan(to_float(e));
  EXPECT_EQ(nan_count, buf.storage.size() - size_t(c.B * c.H * c.S * c.D));
}

TEST(Rope, BothStylesPartialDimsAndScaling) {
  const RopeScaling llama31;  // factor 8, 1, 4, 8192
  for (RopeStyle style : {RopeStyle::kRotateHalf, RopeStyle::kInterleaved}) {
    for (int64_t R : {0, 2, 32, 64}) {
      for (bool scaled : {false, true}) {
        RopeOptions o;
        o.style = style;
        o.rotary_dim = R;
        o.theta = scaled ? 500000.0 : 10000.0;
        if (scaled) o.scaling = llama31;
        // Positions up to ~130K: the angle is computed in float64, so the
        // error stays at float32 rounding of the result.
        check<float>({2, 3, 5, 64, o, 131000, {}}, 2e-6);
        check<float>({1, 2, 7, 64, o, 0, {}}, 2e-6);
      }
    }
  }
}

TEST(Rope, ExplicitPositions) {
  RopeOptions o;
  check<float>({2, 2, 3, 16, o, 0, {5, 0, 9}}, 1e-6);  // per row
  check<float>({2, 2, 3, 16, o, 0, {1, 2, 3, 100, 200, 300}},
               1e-6);  // per batch
}

TEST(Rope, SixteenBitTypes) {
  RopeOptions o;
  o.rotary_dim = 24;
  // One rounding of the result to the type (values ~ N(0, 1), |x| < 5).
  check<bfloat16>({1, 2, 9, 32, o, 17, {}}, 5.0 / 128);
  check<float16>({1, 2, 9, 32, o, 17, {}}, 5.0 / 1024);
}

TEST(Rope, MatchesPublishedScaledFrequencies) {
  // Llama 3.1: theta 500000, head dim 128. The highest frequency is kept,
  // the lowest divided by 8.
  RopeOptions o;
  o.theta = 500000.0;
  o.scaling = RopeScaling{};
  const auto f = rope_inverse_frequencies(128, o);
  EXPECT_DOUBLE_EQ(f[0], 1.0);
  EXPECT_NEAR(f[63], std::pow(500000.0, -126.0 / 128) / 8, 1e-18);
  const auto ref = reference_inv_freq(128, 500000.0, RopeScaling{});
  for (size_t i = 0; i < f.size(); ++i) EXPECT_DOUBLE_EQ(f[i], ref[i]) << i;
}

TEST(Rope, RelativePositionProperty) {
  // q at position m and k at n give a dot product that depends on m - n only.
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> q(32), k(32);
  for (float& x : q) x = normal(rng);
  for (float& x : k) x = normal(rng);
  auto dot_at = [&](int64_t m, int64_t n) {
    std::vector<float> a = q, b = k;
    apply_rope(TensorView<float>::bhsd(a.data(), 1, 1, 1, 32), {}, m);
    apply_rope(TensorView<float>::bhsd(b.data(), 1, 1, 1, 32), {}, n);
    double s = 0;
    for (int d = 0; d < 32; ++d) s += double(a[d]) * b[d];
    return s;
  };
  EXPECT_NEAR(dot_at(10, 3), dot_at(1007, 1000), 1e-4);
  EXPECT_NEAR(dot_at(0, 0), dot_at(500, 500), 1e-4);
}

TEST(Rope, Errors) {
  std::vector<float> x(2 * 4 * 8, 1.0f);
  const auto v = TensorView<float>::bhsd(x.data(), 1, 2, 4, 8);
  auto expect = [&](TensorView<float> view, RopeOptions o,
                    std::vector<int64_t> pos, const std::string& fragment) {
    try {
      apply_rope(view, o, 0, pos);
      ADD_FAILURE() << "accepted; expected '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
          << e.what();
    }
  };
  RopeOptions odd;
  odd.rotary_dim = 3;
  expect(v, odd, {}, "options.rotary_dim");
  RopeOptions wide;
  wide.rotary_dim = 10;
  expect(v, wide, {}, "exceeds the head dim 8");
  RopeOptions bad_theta;
  bad_theta.theta = 0;
  expect(v, bad_theta, {}, "options.theta");
  RopeOptions bad_scale;
  bad_scale.scaling = RopeScaling{8, 4, 1, 8192};
  expect(v, bad_scale, {}, "options.scaling");
  expect(v, {}, {1, 2}, "positions");
  expect(TensorView<float>(x.data(), {1, 2, 4, 8}, {64, 0, 8, 1}), {}, {},
         "share memory");
  expect(TensorView<float>::bhsd(nullptr, 1, 2, 4, 8), {}, {}, "null");
  for (float e : x) EXPECT_EQ(e, 1.0f) << "written before an error";
}

}  // namespace
}  // namespace attn
