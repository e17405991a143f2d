// The naive float32 path against the float64 reference over a grid of
// shapes, layouts, GQA ratios and every option, with NaN-poisoned outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace attn {
namespace {

using testing::Buffer;
using testing::ErrorStats;
using testing::Layout;

// Owns whatever an option set points into.
struct OptionSet {
  std::string name;
  AttentionOptions o;
  std::unique_ptr<bool[]> mask;
  std::vector<float> bias, slopes;
  std::vector<int64_t> lens;
};

struct Dims {
  int64_t B, Hq, Hkv, Sq, Skv, D, Dv;
};

using OptionBuilder =
    std::function<void(OptionSet&, const Dims&, std::mt19937&)>;

// A boolean mask of the given (broadcast) extents, true with probability p.
void random_mask(OptionSet& s, Extents e, double p, std::mt19937& rng) {
  const int64_t n = e[0] * e[1] * e[2] * e[3];
  s.mask = std::make_unique<bool[]>(n);
  std::bernoulli_distribution keep(p);
  for (int64_t i = 0; i < n; ++i) s.mask[i] = keep(rng);
  s.o.mask = TensorView<const bool>(s.mask.get(), e,
                                    {e[1] * e[2] * e[3], e[2] * e[3], e[3], 1});
}

const std::vector<std::pair<std::string, OptionBuilder>>& option_sets() {
  static const std::vector<std::pair<std::string, OptionBuilder>> sets = {
      {"none", [](OptionSet&, const Dims&, std::mt19937&) {}},
      {"causal",
       [](OptionSet& s, const Dims&, std::mt19937&) { s.o.causal = true; }},
      {"causal_top_left",
       [](OptionSet& s, const Dims&, std::mt19937&) {
         s.o.causal = true;
         s.o.alignment = Alignment::kTopLeft;
       }},
      {"window_16_0",
       [](OptionSet& s, const Dims&, std::mt19937&) {
         s.o.window_left = 16;
         s.o.window_right = 0;
       }},
      {"window_3_5",
       [](OptionSet& s, const Dims&, std::mt19937&) {
         s.o.window_left = 3;
         s.o.window_right = 5;
       }},
      {"window_0_unbounded",
       [](OptionSet& s, const Dims&, std::mt19937&) { s.o.window_left = 0; }},
      {"causal_window_7",
       [](OptionSet& s, const Dims&, std::mt19937&) {
         s.o.causal = true;
         s.o.window_left = 7;
       }},
      {"softcap_2_scale_1",
       [](OptionSet& s, const Dims&, std::mt19937&) {
         s.o.softcap = 2.0f;
         s.o.scale = 1.0f;
       }},
      {"alibi",
       [](OptionSet& s, const Dims& d, std::mt19937&) {
         s.slopes = alibi_slopes(d.Hq);
         s.o.alibi_slopes = s.slopes;
       }},
      {"alibi_causal_top_left",
       [](OptionSet& s, const Dims& d, std::mt19937&) {
         s.slopes = alibi_slopes(d.Hq);
         s.o.alibi_slopes = s.slopes;
         s.o.causal = true;
         s.o.alignment = Alignment::kTopLeft;
       }},
      {"bool_mask_shared",
       [](OptionSet& s, const Dims& d, std::mt19937& rng) {
         random_mask(s, {1, 1, d.Sq, d.Skv}, 0.7, rng);
       }},
      {"bool_mask_per_head_sparse",
       [](OptionSet& s, const Dims& d, std::mt19937& rng) {
         random_mask(s, {d.B, d.Hq, d.Sq, d.Skv}, 0.1, rng);
       }},
      {"bias_padding",
       [](OptionSet& s, const Dims& d, std::mt19937& rng) {
         // [B, 1, 1, Skv]: random bias, with -inf on every fourth key.
         s.bias.resize(d.B * d.Skv);
         std::normal_distribution<float> normal;
         for (size_t i = 0; i < s.bias.size(); ++i) {
           s.bias[i] = (i % 4 == 3) ? -INFINITY : normal(rng);
         }
         s.o.bias = TensorView<const float>(s.bias.data(), {d.B, 1, 1, d.Skv},
                                            {d.Skv, 0, 0, 1});
       }},
      {"key_lengths",
       [](OptionSet& s, const Dims& d, std::mt19937& rng) {
         std::uniform_int_distribution<int64_t> len(0, d.Skv);
         for (int64_t b = 0; b < d.B; ++b)
           s.lens.push_back(b == 1 ? 0 : len(rng));
         s.o.key_lengths = s.lens;
       }},
      {"everything",
       [](OptionSet& s, const Dims& d, std::mt19937& rng) {
         s.o.causal = true;
         s.o.alignment = Alignment::kTopLeft;
         s.o.window_left = 20;
         s.o.window_right = 2;
         s.o.softcap = 3.0f;
         s.o.scale = 0.3f;
         s.slopes = alibi_slopes(d.Hq);
         s.o.alibi_slopes = s.slopes;
         random_mask(s, {d.B, 1, d.Sq, d.Skv}, 0.8, rng);
         s.bias.resize(d.Hq * d.Sq * d.Skv);
         std::normal_distribution<float> normal;
         for (float& x : s.bias) x = normal(rng);
         s.o.bias =
             TensorView<const float>(s.bias.data(), {1, d.Hq, d.Sq, d.Skv},
                                     {0, d.Sq * d.Skv, d.Skv, 1});
         std::uniform_int_distribution<int64_t> len(0, d.Skv);
         for (int64_t b = 0; b < d.B; ++b) s.lens.push_back(len(rng));
         s.o.key_lengths = s.lens;
       }},
  };
  return sets;
}

// How a case lays out its tensors.
struct Placement {
  Layout layout = Layout::kBHSD;
  bool kv_in_larger_buffer = false;  // K/V rows padded, view offset
};

template <class T>
struct RunResult {
  ErrorStats err;
  std::vector<T> out;
  std::vector<float> lse;
};

// Runs `algorithm` on fresh random inputs and compares with the reference.
template <class T>
RunResult<T> run_case(const Dims& d, const OptionSet& opts, Placement place,
                      Algorithm algorithm, int threads, std::mt19937& rng,
                      float input_scale = 1.0f) {
  const int64_t pad = place.kv_in_larger_buffer ? 5 : 0;
  const int64_t lead = place.kv_in_larger_buffer ? 3 : 0;
  Buffer<T> q = testing::make_buffer<T>(d.B, d.Hq, d.Sq, d.D, place.layout);
  Buffer<T> k =
      testing::make_buffer<T>(d.B, d.Hkv, d.Skv, d.D, place.layout, pad, lead);
  Buffer<T> v =
      testing::make_buffer<T>(d.B, d.Hkv, d.Skv, d.Dv, place.layout, pad, lead);
  Buffer<T> out =
      testing::make_buffer<T>(d.B, d.Hq, d.Sq, d.Dv, place.layout, 2, 1);
  testing::poison(k.storage);  // padding stays NaN: reading it would show
  testing::poison(v.storage);
  testing::fill_normal(q.view, rng, input_scale);
  testing::fill_normal(k.view, rng, input_scale);
  testing::fill_normal(v.view, rng);
  testing::poison(out.storage);
  RunResult<T> r;
  r.lse.assign(d.B * d.Hq * d.Sq, NAN);
  const auto lse = TensorView<float>::bhsd(r.lse.data(), d.B, d.Hq, d.Sq, 1);

  AttentionOptions o = opts.o;
  o.algorithm = algorithm;
  o.num_threads = threads;
  const Algorithm ran = attention(q.view, k.view, v.view, out.view, o, lse);
  EXPECT_EQ(ran, algorithm);
  const reference::Result ref =
      testing::reference_result<T>(q.view, k.view, v.view, out.view, opts.o);
  r.err = testing::compare<T>(ref, out.view, lse);
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t h = 0; h < d.Hq; ++h)
      for (int64_t i = 0; i < d.Sq; ++i)
        for (int64_t j = 0; j < d.Dv; ++j)
          r.out.push_back(out.view(b, h, i, j));
  return r;
}

// Tolerances against float64, relative to the output's scale. float32:
// accumulated rounding of dot products and sums over <= 300 keys; 16-bit
// types: dominated by the final rounding of out (half an ulp, 2^-9 for
// bfloat16 and 2^-12 for float16) on top of that.
template <class T>
constexpr double tolerance() {
  if constexpr (std::is_same_v<T, bfloat16>) return 1.0 / 256;
  if constexpr (std::is_same_v<T, float16>) return 1.0 / 1024;
  return 5e-6;  // observed up to 1.8e-6 over this grid
}

std::string describe(const Dims& d, const std::string& opt, Placement p) {
  return "B=" + std::to_string(d.B) + " Hq=" + std::to_string(d.Hq) +
         " Hkv=" + std::to_string(d.Hkv) + " Sq=" + std::to_string(d.Sq) +
         " Skv=" + std::to_string(d.Skv) + " D=" + std::to_string(d.D) +
         " Dv=" + std::to_string(d.Dv) + " options=" + opt +
         (p.layout == Layout::kBSHD ? " bshd" : " bhsd") +
         (p.kv_in_larger_buffer ? " kv-view" : "");
}

template <class T>
void check(const Dims& d, const std::string& name, const OptionBuilder& build,
           Placement place, std::mt19937& rng) {
  OptionSet opts;
  build(opts, d, rng);
  const auto r = run_case<T>(d, opts, place, Algorithm::kNaive, 0, rng);
  SCOPED_TRACE(describe(d, name, place));
  EXPECT_LE(r.err.max_rel, tolerance<T>()) << r.err.worst;
  EXPECT_LE(r.err.lse_max_abs, 1e-5);
  EXPECT_TRUE(r.err.lse_inf_match);
}

constexpr int64_t kLengths[] = {1, 2, 17, 63, 64, 65, 300};
constexpr std::pair<int64_t, int64_t> kHeadDims[] = {
    {1, 1},     {3, 3},     {8, 8},   {64, 64}, {72, 72},
    {128, 128}, {256, 256}, {64, 32}, {3, 8},   {128, 72}};

// Shapes x options: every (Sq, Skv) pair for one (D, Dv); options, layout,
// GQA ratio and batch cycle with the case number.
class NaiveGrid : public ::testing::TestWithParam<int> {};

TEST_P(NaiveGrid, MatchesReference) {
  const auto [D, Dv] = kHeadDims[GetParam()];
  std::mt19937 rng(1000 + GetParam());
  const auto& sets = option_sets();
  int n = GetParam() * 7;
  for (int64_t Sq : kLengths) {
    for (int64_t Skv : kLengths) {
      ++n;
      const int64_t G = int64_t{1} << ((n / 3) % 3);  // 1, 2, 4
      const int64_t Hkv = 1 + (n / 9) % 2;
      const Dims d{1 + n % 2, Hkv * G, Hkv, Sq, Skv, D, Dv};
      const Placement place{n % 3 == 0 ? Layout::kBHSD : Layout::kBSHD,
                            n % 3 == 2};
      const auto& [name, build] = sets[n % sets.size()];
      check<float>(d, name, build, place, rng);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(HeadDims, NaiveGrid,
                         ::testing::Range(0, int(std::size(kHeadDims))),
                         [](const auto& info) {
                           const auto dims = kHeadDims[info.param];
                           return "D" + std::to_string(dims.first) + "_Dv" +
                                  std::to_string(dims.second);
                         });

// Every option set on awkward shapes, both layouts, K/V as views.
class NaiveOptions : public ::testing::TestWithParam<size_t> {};

TEST_P(NaiveOptions, MatchesReference) {
  const auto& [name, build] = option_sets()[GetParam()];
  std::mt19937 rng(2000 + GetParam());
  const Dims shapes[] = {
      {1, 1, 1, 1, 1, 8, 8},      {2, 4, 1, 1, 65, 64, 64},
      {1, 2, 2, 17, 63, 3, 5},    {2, 8, 2, 64, 64, 72, 72},
      {1, 4, 4, 65, 17, 128, 64}, {1, 3, 1, 300, 300, 16, 16}};
  for (const Dims& d : shapes) {
    for (Placement place :
         {Placement{Layout::kBHSD, false}, Placement{Layout::kBSHD, true}}) {
      check<float>(d, name, build, place, rng);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sets, NaiveOptions,
                         ::testing::Range(size_t{0}, option_sets().size()),
                         [](const auto& info) {
                           return option_sets()[info.param].first;
                         });

// 16-bit inputs: compared with the reference on the same rounded inputs.
template <class T>
void sixteen_bit_grid(unsigned seed) {
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
                 {n % 2 ? Layout::kBSHD : Layout::kBHSD, n % 3 == 0}, rng);
      }
    }
  }
}

TEST(Naive, BFloat16Inputs) { sixteen_bit_grid<bfloat16>(3); }
TEST(Naive, Float16Inputs) { sixteen_bit_grid<float16>(4); }

TEST(Naive, SameBitsOnOneAndTwoThreads) {
  const Dims d{2, 4, 2, 33, 70, 40, 24};
  OptionSet opts;
  option_sets().back().second(opts, d, *std::make_unique<std::mt19937>(5));
  std::mt19937 rng_a(9), rng_b(9);
  const auto one = run_case<float>(d, opts, {}, Algorithm::kNaive, 1, rng_a);
  const auto two = run_case<float>(d, opts, {}, Algorithm::kNaive, 2, rng_b);
  ASSERT_EQ(one.out.size(), two.out.size());
  for (size_t i = 0; i < one.out.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(one.out[i]),
              std::bit_cast<uint32_t>(two.out[i]));
  }
  for (size_t i = 0; i < one.lse.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(one.lse[i]),
              std::bit_cast<uint32_t>(two.lse[i]));
  }
}

TEST(Naive, LogitsOfTenThousandStayFinite) {
  // Integer inputs make every score an exact integer up to |1e4| in float32
  // too, so the only error left is the softmax's own.
  const int64_t Sq = 8, Skv = 40;
  std::vector<float> q(Sq), k(Skv), v(Skv);
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> small(-100, 100);
  for (float& x : q) x = small(rng) >= 0 ? 100.0f : -100.0f;
  for (float& x : k) x = static_cast<float>(small(rng));
  for (float& x : v) x = static_cast<float>(small(rng));
  for (Algorithm a : {Algorithm::kReference, Algorithm::kNaive}) {
    std::vector<float> out(Sq, NAN), lse(Sq, NAN);
    AttentionOptions o;
    o.scale = 1.0f;
    o.algorithm = a;
    const auto qv = TensorView<const float>::bhsd(q.data(), 1, 1, Sq, 1);
    const auto kv = TensorView<const float>::bhsd(k.data(), 1, 1, Skv, 1);
    const auto vv = TensorView<const float>::bhsd(v.data(), 1, 1, Skv, 1);
    const auto ov = TensorView<float>::bhsd(out.data(), 1, 1, Sq, 1);
    const auto lv = TensorView<float>::bhsd(lse.data(), 1, 1, Sq, 1);
    attention(qv, kv, vv, ov, o, lv);
    const auto ref = testing::reference_result(qv, kv, vv, ov, o);
    const ErrorStats e = testing::compare<float>(ref, ov, lv);
    EXPECT_LE(e.max_rel, 1e-6) << algorithm_name(a) << " " << e.worst;
    for (int64_t i = 0; i < Sq; ++i) {
      EXPECT_TRUE(std::isfinite(out[i]));
      EXPECT_GE(std::fabs(lse[i]), 1e3f);
    }
  }
}

TEST(Naive, FullyMaskedRowsAreZero) {
  const Dims d{1, 2, 1, 4, 6, 8, 8};
  OptionSet opts;
  random_mask(opts, {1, 1, 4, 6}, 1.0, *std::make_unique<std::mt19937>(1));
  for (int64_t j = 0; j < 6; ++j) opts.mask[2 * 6 + j] = false;  // row 2
  std::mt19937 rng(12);
  const auto r = run_case<float>(d, opts, {}, Algorithm::kNaive, 0, rng);
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t c = 0; c < 8; ++c) EXPECT_EQ(r.out[(h * 4 + 2) * 8 + c], 0.0f);
    EXPECT_EQ(r.lse[h * 4 + 2], -INFINITY);
  }
  EXPECT_LE(r.err.max_rel, 1e-5);
}

}  // namespace
}  // namespace attn
