// The decode algorithm (flash with split-KV and a log-sum-exp merge) on
// contiguous K/V views: every option set, GQA ratios 1 / 4 / 8, key lengths
// around tile and split edges, every split count. Each split count must be
// within twice naive's error of the float64 reference (plus 1e-6); one split
// must be flash, bit for bit. The KV-cache paths are in test_kv_cache.cc.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tests/attention_grid.h"

namespace attn {
namespace {

using namespace attn::testing;  // NOLINT: test-local helpers

constexpr int kSplits[] = {0, 1, 2, 3, 7, 1000};

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

class DecodeOptions : public ::testing::TestWithParam<size_t> {};

TEST_P(DecodeOptions, EverySplitCountMatchesReference) {
  const auto& [name, build] = option_sets()[GetParam()];
  std::mt19937 rng(3000 + GetParam());
  const Dims shapes[] = {{2, 4, 4, 1, 1, 16, 16},
                         {1, 4, 1, 1, 700, 64, 64},
                         {2, 8, 1, 3, 1300, 40, 24},
                         {1, 8, 2, 16, 129, 128, 128},
                         {2, 2, 2, 1, 65, 72, 80}};
  for (const Dims& d : shapes) {
    OptionSet opts;
    build(opts, d, rng);
    const Placement place{d.Sq % 2 ? Layout::kBSHD : Layout::kBHSD, d.B == 2};
    Case<float> c(d, place, rng);
    const reference::Result ref = c.reference(opts.o);
    SCOPED_TRACE(describe(d, name, place));
    const RunResult<float> naive = c.run(opts.o, Algorithm::kNaive, ref);
    const RunResult<float> flash = c.run(opts.o, Algorithm::kFlash, ref);
    for (int splits : kSplits) {
      SCOPED_TRACE("kv_splits=" + std::to_string(splits));
      AttentionOptions o = opts.o;
      o.kv_splits = splits;
      const RunResult<float> dec = c.run(o, Algorithm::kDecode, ref);
      EXPECT_LE(dec.err.max_rel, 2 * naive.err.max_rel + 1e-6) << dec.err.worst;
      EXPECT_LE(dec.err.lse_max_abs, 2 * naive.err.lse_max_abs + 1e-6);
      EXPECT_TRUE(dec.err.lse_inf_match);
      if (splits == 1) {
        EXPECT_TRUE(same_bits(dec.out, flash.out));
        EXPECT_TRUE(same_bits(dec.lse, flash.lse));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sets, DecodeOptions,
                         ::testing::Range(size_t{0}, option_sets().size()),
                         [](const auto& info) {
                           return option_sets()[info.param].first;
                         });

template <class T>
void sixteen_bit(unsigned seed) {
  std::mt19937 rng(seed);
  const auto& sets = option_sets();
  int n = 0;
  for (int64_t G : {1, 4, 8}) {
    for (int64_t Skv : {64, 577}) {
      ++n;
      const Dims d{1, 2 * G, 2, 1 + n % 3, Skv, 128, 128};
      const auto& [name, build] = sets[(3 * n) % sets.size()];
      check<T>(d, name, build, {Layout::kBSHD, n % 2 == 0}, rng,
               Algorithm::kDecode);
    }
  }
}

TEST(Decode, BFloat16Inputs) { sixteen_bit<bfloat16>(31); }
TEST(Decode, Float16Inputs) { sixteen_bit<float16>(32); }

TEST(Decode, SameBitsOnOneAndTwoThreads) {
  std::mt19937 rng(33);
  const Dims d{1, 8, 2, 1, 3000, 64, 64};
  Case<float> c(d, {}, rng);
  const reference::Result ref = c.reference({});
  const RunResult<float> one = c.run({}, Algorithm::kDecode, ref, 1);
  const RunResult<float> two = c.run({}, Algorithm::kDecode, ref, 2);
  EXPECT_TRUE(same_bits(one.out, two.out));
  EXPECT_TRUE(same_bits(one.lse, two.lse));
}

TEST(Decode, AutoPicksDecodeForFewQueries) {
  std::vector<float> q(4 * 8, 0.1f), k(2 * 100 * 8, 0.2f), v(2 * 100 * 8, 1.0f);
  std::vector<float> out(4 * 17 * 8);
  const auto kv = [](std::vector<float>& x) {
    return TensorView<const float>::bhsd(x.data(), 1, 2, 100, 8);
  };
  EXPECT_EQ(
      attention(TensorView<const float>::bhsd(q.data(), 1, 4, 1, 8), kv(k),
                kv(v), TensorView<float>::bhsd(out.data(), 1, 4, 1, 8)),
      Algorithm::kDecode);
  std::vector<float> q17(4 * 17 * 8, 0.1f);
  EXPECT_EQ(
      attention(TensorView<const float>::bhsd(q17.data(), 1, 4, 17, 8), kv(k),
                kv(v), TensorView<float>::bhsd(out.data(), 1, 4, 17, 8)),
      Algorithm::kFlash);
}

}  // namespace
}  // namespace attn
