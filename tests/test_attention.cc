// Every algorithm against the float64 reference over the grid of shapes,
// layouts, GQA ratios and options (tests/attention_grid.h), plus the
// invariants each must keep. Parameterised by algorithm: naive alone must
// meet its float32 tolerance; flash must stay within twice naive's error
// plus 1e-6 on the same inputs.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "tests/attention_grid.h"

namespace attn {
namespace {

using namespace attn::testing;  // NOLINT: test-local helpers

constexpr int64_t kLengths[] = {1, 2, 17, 63, 64, 65, 300};
constexpr std::pair<int64_t, int64_t> kHeadDims[] = {
    {1, 1},     {3, 3},     {8, 8},   {64, 64}, {72, 72},
    {128, 128}, {256, 256}, {64, 32}, {3, 8},   {128, 72}};

std::string name_of(Algorithm a) { return algorithm_name(a); }

// Shapes x options: every (Sq, Skv) pair for one (D, Dv); options, layout,
// GQA ratio and batch cycle with the case number.
class Grid : public ::testing::TestWithParam<std::tuple<Algorithm, int>> {};

TEST_P(Grid, MatchesReference) {
  const auto [algorithm, dims_index] = GetParam();
  const auto [D, Dv] = kHeadDims[dims_index];
  std::mt19937 rng(1000 + dims_index);
  const auto& sets = option_sets();
  int n = dims_index * 7;
  for (int64_t Sq : kLengths) {
    for (int64_t Skv : kLengths) {
      ++n;
      const int64_t G = int64_t{1} << ((n / 3) % 3);  // 1, 2, 4
      const int64_t Hkv = 1 + (n / 9) % 2;
      const Dims d{1 + n % 2, Hkv * G, Hkv, Sq, Skv, D, Dv};
      const Placement place{n % 3 == 0 ? Layout::kBHSD : Layout::kBSHD,
                            n % 3 == 2};
      const auto& [name, build] = sets[n % sets.size()];
      check<float>(d, name, build, place, rng, algorithm);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    HeadDims, Grid,
    ::testing::Combine(::testing::Values(Algorithm::kNaive, Algorithm::kFlash),
                       ::testing::Range(0, int(std::size(kHeadDims)))),
    [](const auto& info) {
      const auto dims = kHeadDims[std::get<1>(info.param)];
      return name_of(std::get<0>(info.param)) + "_D" +
             std::to_string(dims.first) + "_Dv" + std::to_string(dims.second);
    });

// Every option set on awkward shapes, both layouts, K/V as views.
class Options : public ::testing::TestWithParam<std::tuple<Algorithm, size_t>> {
};

TEST_P(Options, MatchesReference) {
  const auto [algorithm, set] = GetParam();
  const auto& [name, build] = option_sets()[set];
  std::mt19937 rng(2000 + set);
  const Dims shapes[] = {
      {1, 1, 1, 1, 1, 8, 8},      {2, 4, 1, 1, 65, 64, 64},
      {1, 2, 2, 17, 63, 3, 5},    {2, 8, 2, 64, 64, 72, 72},
      {1, 4, 4, 65, 17, 128, 64}, {1, 3, 1, 300, 300, 16, 16}};
  for (const Dims& d : shapes) {
    for (Placement place :
         {Placement{Layout::kBHSD, false}, Placement{Layout::kBSHD, true}}) {
      check<float>(d, name, build, place, rng, algorithm);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Sets, Options,
    ::testing::Combine(::testing::Values(Algorithm::kNaive, Algorithm::kFlash),
                       ::testing::Range(size_t{0}, option_sets().size())),
    [](const auto& info) {
      return name_of(std::get<0>(info.param)) + "_" +
             option_sets()[std::get<1>(info.param)].first;
    });

class Invariants : public ::testing::TestWithParam<Algorithm> {};

// 16-bit inputs: compared with the reference on the same rounded inputs.
template <class T>
void sixteen_bit_grid(unsigned seed, Algorithm algorithm) {
  std::mt19937 rng(seed);
  const auto& sets = option_sets();
  int n = 0;
  for (auto [D, Dv] :
       {std::pair<int64_t, int64_t>{64, 64}, {3, 8}, {128, 72}}) {
    for (int64_t Sq : {1, 17, 65}) {
      for (int64_t Skv : {1, 64, 300}) {
        ++n;
        const Dims d{1, 2 * (1 + n % 2), 2, Sq, Skv, D, Dv};
        const auto& [name, build] = sets[n % sets.size()];
        check<T>(d, name, build,
                 {n % 2 ? Layout::kBSHD : Layout::kBHSD, n % 3 == 0}, rng,
                 algorithm);
      }
    }
  }
}

TEST_P(Invariants, BFloat16Inputs) {
  sixteen_bit_grid<bfloat16>(3, GetParam());
}
TEST_P(Invariants, Float16Inputs) { sixteen_bit_grid<float16>(4, GetParam()); }

TEST_P(Invariants, SameBitsOnOneAndTwoThreads) {
  const Dims d{2, 4, 2, 133, 170, 40, 24};
  for (const auto& [name, build] : option_sets()) {
    OptionSet opts;
    std::mt19937 rng(5);
    build(opts, d, rng);
    Case<float> c(d, {}, rng);
    const reference::Result ref = c.reference(opts.o);
    const auto one = c.run(opts.o, GetParam(), ref, 1);
    const auto two = c.run(opts.o, GetParam(), ref, 2);
    ASSERT_EQ(one.out.size(), two.out.size());
    for (size_t i = 0; i < one.out.size(); ++i) {
      ASSERT_EQ(std::bit_cast<uint32_t>(one.out[i]),
                std::bit_cast<uint32_t>(two.out[i]))
          << name;
    }
    for (size_t i = 0; i < one.lse.size(); ++i) {
      ASSERT_EQ(std::bit_cast<uint32_t>(one.lse[i]),
                std::bit_cast<uint32_t>(two.lse[i]))
          << name;
    }
  }
}

TEST_P(Invariants, LogitsOfTenThousandStayFinite) {
  // Integer inputs make every score an exact integer up to |1e4| in float32
  // too, so the only error left is the softmax's own.
  const int64_t Sq = 8, Skv = 140;
  std::vector<float> q(Sq), k(Skv), v(Skv);
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> small(-100, 100);
  for (float& x : q) x = small(rng) >= 0 ? 100.0f : -100.0f;
  for (float& x : k) x = static_cast<float>(small(rng));
  for (float& x : v) x = static_cast<float>(small(rng));
  std::vector<float> out(Sq, NAN), lse(Sq, NAN);
  AttentionOptions o;
  o.scale = 1.0f;
  o.algorithm = GetParam();
  const auto qv = TensorView<const float>::bhsd(q.data(), 1, 1, Sq, 1);
  const auto kv = TensorView<const float>::bhsd(k.data(), 1, 1, Skv, 1);
  const auto vv = TensorView<const float>::bhsd(v.data(), 1, 1, Skv, 1);
  const auto ov = TensorView<float>::bhsd(out.data(), 1, 1, Sq, 1);
  const auto lv = TensorView<float>::bhsd(lse.data(), 1, 1, Sq, 1);
  attention(qv, kv, vv, ov, o, lv);
  const auto ref = reference_result(qv, kv, vv, ov, o);
  const ErrorStats e = compare<float>(ref, ov, lv);
  EXPECT_LE(e.max_rel, 1e-6) << e.worst;
  for (int64_t i = 0; i < Sq; ++i) {
    EXPECT_TRUE(std::isfinite(out[i]));
    EXPECT_GE(std::fabs(lse[i]), 1e3f);
  }
}

TEST_P(Invariants, FullyMaskedRowsAreZero) {
  const Dims d{1, 2, 1, 4, 70, 8, 8};
  OptionSet opts;
  std::mt19937 rng(12);
  random_mask(opts, {1, 1, 4, 70}, 1.0, rng);
  for (int64_t j = 0; j < 70; ++j) opts.mask[2 * 70 + j] = false;  // row 2
  Case<float> c(d, {}, rng);
  const auto ref = c.reference(opts.o);
  const auto r = c.run(opts.o, GetParam(), ref);
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t x = 0; x < 8; ++x) EXPECT_EQ(r.out[(h * 4 + 2) * 8 + x], 0.0f);
    EXPECT_EQ(r.lse[h * 4 + 2], -INFINITY);
  }
  EXPECT_LE(r.err.max_rel, 1e-5);
}

TEST_P(Invariants, GarbageBeyondKeyLengthIsNeverRead) {
  // A KV cache whose unfilled slots hold NaN and Inf.
  const Dims d{2, 4, 2, 5, 150, 16, 16};
  std::mt19937 rng(13);
  Case<float> c(d, {Layout::kBSHD, true}, rng);
  const int64_t lens[2] = {70, 129};
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t j = lens[b]; j < d.Skv; ++j)
        for (int64_t x = 0; x < 16; ++x) {
          c.k()(b, h, j, x) = NAN;
          c.v()(b, h, j, x) = (x % 2) ? INFINITY : NAN;
        }
  AttentionOptions o;
  o.key_lengths = lens;
  const auto ref = c.reference(o);
  const auto r = c.run(o, GetParam(), ref);
  EXPECT_LE(r.err.max_rel, 1e-5) << r.err.worst;
}

TEST_P(Invariants, EmptyKeySet) {
  const Dims d{2, 2, 1, 3, 0, 8, 4};
  std::mt19937 rng(14);
  Case<float> c(d, {}, rng);
  const auto ref = c.reference({});
  const auto r = c.run({}, GetParam(), ref);
  for (float x : r.out) EXPECT_EQ(x, 0.0f);
  for (float x : r.lse) EXPECT_EQ(x, -INFINITY);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, Invariants,
                         ::testing::Values(Algorithm::kNaive,
                                           Algorithm::kFlash),
                         [](const auto& info) { return name_of(info.param); });

}  // namespace
}  // namespace attn
