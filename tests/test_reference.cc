// The float64 reference against hand-computed cases (exact values) and the
// properties the semantics imply. Property tests also run on the naive path.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "tests/test_util.h"

namespace attn {
namespace {

using testing::fill_normal;

// Small float64 problems written out by hand: q, k, v as flat BHSD arrays.
struct Small {
  int64_t B, Hq, Hkv, Sq, Skv, D, Dv;
  std::vector<float> q, k, v;
  std::vector<float> out = {}, lse = {};

  reference::Result run(AttentionOptions o) {
    out.assign(B * Hq * Sq * Dv, NAN);
    lse.assign(B * Hq * Sq, NAN);
    const auto qv = TensorView<const float>::bhsd(q.data(), B, Hq, Sq, D);
    const auto kv = TensorView<const float>::bhsd(k.data(), B, Hkv, Skv, D);
    const auto vv = TensorView<const float>::bhsd(v.data(), B, Hkv, Skv, Dv);
    const auto ov = TensorView<float>::bhsd(out.data(), B, Hq, Sq, Dv);
    o.algorithm = Algorithm::kReference;
    attention(qv, kv, vv, ov, o,
              TensorView<float>::bhsd(lse.data(), B, Hq, Sq, 1));
    return testing::reference_result(qv, kv, vv, ov, o);
  }
};

constexpr double kExact = 1e-12;

TEST(Reference, TwoKeysClosedForm) {
  // s = [0, ln 3] -> p = [1/4, 3/4]; out = 4/4 + 8 * 3/4 = 7; lse = ln 4.
  Small s{1,           1,      1,
          1,           2,      1,
          1,           {1.0f}, {0.0f, static_cast<float>(std::log(3.0))},
          {4.0f, 8.0f}};
  AttentionOptions o;
  o.scale = 1.0f;
  const auto r = s.run(o);
  // k[1] is ln 3 rounded to float; account for it exactly.
  const double e = std::exp(double(float(std::log(3.0))));
  EXPECT_NEAR(r.out[0], (4.0 + 8.0 * e) / (1.0 + e), kExact);
  EXPECT_NEAR(r.lse[0], std::log(1.0 + e), kExact);
  EXPECT_NEAR(r.out[0], 7.0, 1e-6);
  EXPECT_FLOAT_EQ(s.out[0], static_cast<float>(r.out[0]));
  EXPECT_FLOAT_EQ(s.lse[0], static_cast<float>(r.lse[0]));
}

// q = 0 makes every visible key equally likely: out = mean of the visible
// values, lse = log(count). Values 1, 2, 4, 8, ... identify the visible set.
Small uniform(int64_t Sq, int64_t Skv) {
  Small s{1,
          1,
          1,
          Sq,
          Skv,
          1,
          1,
          std::vector<float>(Sq, 0.0f),
          std::vector<float>(Skv, 1.0f),
          {}};
  for (int64_t j = 0; j < Skv; ++j) s.v.push_back(std::ldexp(1.0f, j));
  return s;
}

// Mean of the values 2^j over j in [lo, hi]; NaN marks an empty set.
double mean_pow2(int64_t lo, int64_t hi) {
  double sum = 0;
  for (int64_t j = lo; j <= hi; ++j) sum += std::ldexp(1.0, j);
  return sum / double(hi - lo + 1);
}

TEST(Reference, CausalBottomRightAndTopLeft) {
  Small s = uniform(2, 3);
  AttentionOptions o;
  o.causal = true;
  auto r = s.run(o);  // bottom-right: query i sits at key i + 1
  EXPECT_NEAR(r.out[0], mean_pow2(0, 1), kExact);
  EXPECT_NEAR(r.out[1], mean_pow2(0, 2), kExact);
  EXPECT_NEAR(r.lse[0], std::log(2.0), kExact);
  EXPECT_NEAR(r.lse[1], std::log(3.0), kExact);
  o.alignment = Alignment::kTopLeft;
  r = s.run(o);
  EXPECT_NEAR(r.out[0], mean_pow2(0, 0), kExact);
  EXPECT_NEAR(r.out[1], mean_pow2(0, 1), kExact);
  EXPECT_NEAR(r.lse[0], 0.0, kExact);
}

TEST(Reference, CausalMoreQueriesThanKeysLeavesEmptyRows) {
  // Bottom-right with Sq > Skv: offset -2, rows 0 and 1 see no key.
  Small s = uniform(4, 2);
  AttentionOptions o;
  o.causal = true;
  const auto r = s.run(o);
  for (int i : {0, 1}) {
    EXPECT_EQ(r.out[i], 0.0);
    EXPECT_EQ(r.lse[i], -INFINITY);
    EXPECT_EQ(s.out[i], 0.0f);
    EXPECT_EQ(s.lse[i], -INFINITY);
  }
  EXPECT_NEAR(r.out[2], mean_pow2(0, 0), kExact);
  EXPECT_NEAR(r.out[3], mean_pow2(0, 1), kExact);
}

TEST(Reference, WindowBounds) {
  Small s = uniform(5, 5);
  AttentionOptions o;
  o.window_left = 1;
  o.window_right = 0;
  auto r = s.run(o);
  for (int64_t i = 0; i < 5; ++i) {
    EXPECT_NEAR(r.out[i], mean_pow2(std::max<int64_t>(0, i - 1), i), kExact)
        << i;
  }
  o.window_left = 0;
  o.window_right = 2;
  r = s.run(o);
  for (int64_t i = 0; i < 5; ++i) {
    EXPECT_NEAR(r.out[i], mean_pow2(i, std::min<int64_t>(4, i + 2)), kExact)
        << i;
  }
  o.window_left = -1;  // unbounded left, right bound 0 = causal
  o.window_right = 0;
  r = s.run(o);
  for (int64_t i = 0; i < 5; ++i)
    EXPECT_NEAR(r.out[i], mean_pow2(0, i), kExact);
}

TEST(Reference, SoftcapThenAlibiThenBias) {
  // Scores before changes: key j has q.k = 10 j (scale 1). Softcap 5 gives
  // 5 tanh(2 j); ALiBi slope 0.5 subtracts 0.5 |2 - j| (query at key 2);
  // bias adds [0.25, -0.5, 1].
  Small s{1, 1, 1, 1, 3, 1, 1, {10.0f}, {0.0f, 1.0f, 2.0f}, {1.0f, 2.0f, 4.0f}};
  const float slope[1] = {0.5f};
  const float bias[3] = {0.25f, -0.5f, 1.0f};
  AttentionOptions o;
  o.scale = 1.0f;
  o.softcap = 5.0f;
  o.alibi_slopes = slope;
  o.bias = TensorView<const float>(bias, {1, 1, 1, 3}, {0, 0, 0, 1});
  const auto r = s.run(o);
  double sc[3], m = -INFINITY, l = 0, out = 0;
  for (int j = 0; j < 3; ++j) {
    sc[j] = 5.0 * std::tanh(10.0 * j / 5.0) - 0.5 * std::abs(2 - j) + bias[j];
    m = std::max(m, sc[j]);
  }
  for (int j = 0; j < 3; ++j) l += std::exp(sc[j] - m);
  for (int j = 0; j < 3; ++j) out += std::exp(sc[j] - m) / l * s.v[j];
  EXPECT_NEAR(r.out[0], out, kExact);
  EXPECT_NEAR(r.lse[0], m + std::log(l), kExact);
}

TEST(Reference, MasksAndKeyLengths) {
  // B = 2, q = 0. Batch 0: bool mask hides key 1, bias -inf hides key 3.
  // Batch 1: key length 0 -> no visible key.
  Small s{2,
          1,
          1,
          1,
          4,
          1,
          1,
          {0.0f, 0.0f},
          std::vector<float>(8, 1.0f),
          {1, 2, 4, 8, 1, 2, 4, 8}};
  const bool mask[4] = {true, false, true, true};
  const float bias[4] = {0.0f, 0.0f, 0.0f, -INFINITY};
  const int64_t lens[2] = {4, 0};
  AttentionOptions o;
  o.mask = TensorView<const bool>(mask, {1, 1, 1, 4}, {0, 0, 0, 1});
  o.bias = TensorView<const float>(bias, {1, 1, 1, 4}, {0, 0, 0, 1});
  o.key_lengths = lens;
  const auto r = s.run(o);
  EXPECT_NEAR(r.out[0], (1.0 + 4.0) / 2.0, kExact);
  EXPECT_NEAR(r.lse[0], std::log(2.0), kExact);
  EXPECT_EQ(r.out[1], 0.0);
  EXPECT_EQ(r.lse[1], -INFINITY);
  EXPECT_EQ(s.out[1], 0.0f);
}

TEST(Reference, HiddenKeysAreNeverRead) {
  // NaN and Inf in keys/values beyond the key length must not leak.
  Small s = uniform(1, 4);
  s.k[3] = NAN;
  s.v[3] = INFINITY;
  s.v[2] = NAN;
  const int64_t lens[1] = {2};
  AttentionOptions o;
  o.key_lengths = lens;
  const auto r = s.run(o);
  EXPECT_NEAR(r.out[0], mean_pow2(0, 1), kExact);
}

TEST(Reference, GqaMapsQueryHeadToItsGroup) {
  // Hq 4, Hkv 2: heads 0, 1 read KV head 0 (values 1, 3), heads 2, 3 read
  // KV head 1 (values 10, 30). q = 0 -> means 2 and 20. Dv = 1 != D = 2.
  Small s{1,
          4,
          2,
          1,
          2,
          2,
          1,
          std::vector<float>(8, 0.0f),
          std::vector<float>(8, 0.5f),
          {1, 3, 10, 30}};
  const auto r = s.run({});
  EXPECT_NEAR(r.out[0], 2.0, kExact);
  EXPECT_NEAR(r.out[1], 2.0, kExact);
  EXPECT_NEAR(r.out[2], 20.0, kExact);
  EXPECT_NEAR(r.out[3], 20.0, kExact);
}

TEST(Reference, NoKeysAtAll) {
  Small s{1, 2, 1, 3, 0, 4, 2, std::vector<float>(24, 1.0f), {0.0f}, {0.0f}};
  const auto r = s.run({});
  for (double x : r.out) EXPECT_EQ(x, 0.0);
  for (double x : r.lse) EXPECT_EQ(x, -INFINITY);
  for (float x : s.out) EXPECT_EQ(x, 0.0f);
}

// --- Properties, on random inputs, for reference and naive alike.

class Properties : public ::testing::TestWithParam<Algorithm> {
 protected:
  // Runs the parameter algorithm on BHSD float buffers, returns out.
  std::vector<float> run(const std::vector<float>& q,
                         const std::vector<float>& k,
                         const std::vector<float>& v, int64_t B, int64_t Hq,
                         int64_t Hkv, int64_t Sq, int64_t Skv, int64_t D,
                         int64_t Dv, AttentionOptions o) {
    std::vector<float> out(B * Hq * Sq * Dv, NAN);
    o.algorithm = GetParam();
    attention(TensorView<const float>::bhsd(q.data(), B, Hq, Sq, D),
              TensorView<const float>::bhsd(k.data(), B, Hkv, Skv, D),
              TensorView<const float>::bhsd(v.data(), B, Hkv, Skv, Dv),
              TensorView<float>::bhsd(out.data(), B, Hq, Sq, Dv), o);
    return out;
  }
  static std::vector<float> random(int64_t n, std::mt19937& rng) {
    std::vector<float> x(n);
    std::normal_distribution<float> normal;
    for (float& e : x) e = normal(rng);
    return x;
  }
  std::mt19937 rng_{7};
};

TEST_P(Properties, RowsOfPSumToOne) {
  // With V = identity (Dv = Skv), out_i is row i of P.
  const int64_t Sq = 9, Skv = 13, D = 16;
  const auto q = random(Sq * D, rng_), k = random(Skv * D, rng_);
  std::vector<float> v(Skv * Skv, 0.0f);
  for (int64_t j = 0; j < Skv; ++j) v[j * Skv + j] = 1.0f;
  for (bool causal : {false, true}) {
    AttentionOptions o;
    o.causal = causal;
    o.scale = 0.7f;
    const auto P = run(q, k, v, 1, 1, 1, Sq, Skv, D, Skv, o);
    for (int64_t i = 0; i < Sq; ++i) {
      double sum = 0;
      for (int64_t j = 0; j < Skv; ++j) {
        EXPECT_GE(P[i * Skv + j], 0.0f);
        if (causal && j > i + Skv - Sq) {
          EXPECT_EQ(P[i * Skv + j], 0.0f);
        }
        sum += P[i * Skv + j];
      }
      EXPECT_NEAR(sum, 1.0, 1e-6) << "row " << i;
    }
  }
}

TEST_P(Properties, PermutingKeysAndValuesTogether) {
  const int64_t Sq = 5, Skv = 11, D = 8, Dv = 6;
  const auto q = random(Sq * D, rng_), k = random(Skv * D, rng_),
             v = random(Skv * Dv, rng_);
  std::vector<int64_t> perm(Skv);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng_);
  std::vector<float> kp(k.size()), vp(v.size());
  for (int64_t j = 0; j < Skv; ++j) {
    std::copy_n(&k[perm[j] * D], D, &kp[j * D]);
    std::copy_n(&v[perm[j] * Dv], Dv, &vp[j * Dv]);
  }
  const auto a = run(q, k, v, 1, 1, 1, Sq, Skv, D, Dv, {});
  const auto b = run(q, kp, vp, 1, 1, 1, Sq, Skv, D, Dv, {});
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6);
}

TEST_P(Properties, CausalRowIgnoresLaterKeys) {
  const int64_t Sq = 6, Skv = 10, D = 4, Dv = 3, offset = Skv - Sq;
  const auto q = random(Sq * D, rng_);
  auto k = random(Skv * D, rng_), v = random(Skv * Dv, rng_);
  AttentionOptions o;
  o.causal = true;
  for (int64_t i = 0; i < Sq; ++i) {
    const auto before = run(q, k, v, 1, 1, 1, Sq, Skv, D, Dv, o);
    auto k2 = k, v2 = v;
    for (int64_t j = i + offset + 1; j < Skv; ++j) {
      for (int64_t d = 0; d < D; ++d) k2[j * D + d] = 1e3f;
      for (int64_t d = 0; d < Dv; ++d) v2[j * Dv + d] = -1e3f;
    }
    const auto after = run(q, k2, v2, 1, 1, 1, Sq, Skv, D, Dv, o);
    for (int64_t d = 0; d < Dv; ++d) {
      EXPECT_EQ(before[i * Dv + d], after[i * Dv + d]) << "row " << i;
    }
  }
}

TEST_P(Properties, GqaEqualsMhaWithRepeatedKv) {
  const int64_t B = 2, Hq = 6, Hkv = 2, G = 3, Sq = 7, Skv = 9, D = 5, Dv = 4;
  const auto q = random(B * Hq * Sq * D, rng_),
             k = random(B * Hkv * Skv * D, rng_),
             v = random(B * Hkv * Skv * Dv, rng_);
  std::vector<float> kr, vr;  // K/V with each head repeated G times
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t src = b * Hkv + h / G;
      kr.insert(kr.end(), &k[src * Skv * D], &k[(src + 1) * Skv * D]);
      vr.insert(vr.end(), &v[src * Skv * Dv], &v[(src + 1) * Skv * Dv]);
    }
  AttentionOptions o;
  o.causal = true;
  const auto a = run(q, k, v, B, Hq, Hkv, Sq, Skv, D, Dv, o);
  const auto b = run(q, kr, vr, B, Hq, Hq, Sq, Skv, D, Dv, o);
  EXPECT_EQ(a, b);
}

TEST_P(Properties, AlignmentsAgreeWhenSquare) {
  const int64_t S = 12, D = 8;
  const auto q = random(S * D, rng_), k = random(S * D, rng_),
             v = random(S * D, rng_);
  AttentionOptions o;
  o.causal = true;
  o.window_left = 3;
  const float slope[1] = {0.3f};
  o.alibi_slopes = slope;
  const auto a = run(q, k, v, 1, 1, 1, S, S, D, D, o);
  o.alignment = Alignment::kTopLeft;
  const auto b = run(q, k, v, 1, 1, 1, S, S, D, D, o);
  EXPECT_EQ(a, b);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, Properties,
                         ::testing::Values(Algorithm::kReference,
                                           Algorithm::kNaive),
                         [](const auto& info) {
                           return std::string(algorithm_name(info.param));
                         });

}  // namespace
}  // namespace attn
