// Linear attention (attn/linear.h): chunked and naive against the float64
// reference over shapes around the chunk and segment edges, GQA, every
// feature map, causal and not; LinearState fed token by token and in
// chunks equals one causal call; bits do not depend on the thread count;
// errors name the argument.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>

#include "attn/linear.h"
#include "src/reference/linear_reference.h"
#include "tests/test_util.h"

namespace attn::testing {
namespace {

struct LinearDims {
  int64_t B, Hq, Hkv, Sq, Skv, D, Dv;
};

// Error relative to the output's scale, NaN counting as infinite.
template <class T>
double rel_error(const std::vector<double>& ref, TensorView<const T> out) {
  double scale = 1e-6, err = 0.0;
  for (double x : ref) scale = std::max(scale, std::fabs(x));
  int64_t x = 0;
  for (int64_t b = 0; b < out.extent(0); ++b)
    for (int64_t h = 0; h < out.extent(1); ++h)
      for (int64_t i = 0; i < out.extent(2); ++i)
        for (int64_t e = 0; e < out.extent(3); ++e, ++x) {
          const double d = std::fabs(to_float(out(b, h, i, e)) - ref[x]);
          err = std::max(err, std::isnan(d) ? INFINITY : d);
        }
  return err / scale;
}

// A custom feature map: softplus, row by row.
void softplus(const float* x, float* y, int64_t n, const void* context) {
  const float beta = *static_cast<const float*>(context);
  for (int64_t d = 0; d < n; ++d)
    y[d] = std::log1p(std::exp(beta * x[d])) / beta;
}
const float kBeta = 2.0f;

template <class T>
struct LinearCase {
  LinearDims d;
  Buffer<T> q, k, v;
  LinearCase(const LinearDims& dims, std::mt19937& rng,
             Layout layout = Layout::kBHSD)
      : d(dims) {
    q = make_buffer<T>(d.B, d.Hq, d.Sq, d.D, layout);
    k = make_buffer<T>(d.B, d.Hkv, d.Skv, d.D, layout, 3, 1);  // strided view
    v = make_buffer<T>(d.B, d.Hkv, d.Skv, d.Dv, layout);
    poison(k.storage);
    fill_normal(q.view, rng);
    fill_normal(k.view, rng);
    fill_normal(v.view, rng);
  }
  std::vector<double> reference(const LinearOptions& o) {
    detail::LinearProblem<T> p = detail::make_linear_problem<T>(
        o, {d.B, d.Hq, d.Hkv, d.Sq, d.Skv, d.D, d.Dv});
    p.q = q.view;
    p.k = k.view;
    p.v = v.view;
    return reference::linear_attention_f64(p);
  }
  // Runs into a NaN-poisoned output; returns it.
  Buffer<T> run(LinearOptions o, LinearAlgorithm a, int threads = 0) {
    Buffer<T> out = make_buffer<T>(d.B, d.Hq, d.Sq, d.Dv, Layout::kBHSD, 2, 1);
    poison(out.storage);
    o.algorithm = a;
    o.num_threads = threads;
    const LinearAlgorithm ran = linear_attention(
        TensorView<const T>(q.view), TensorView<const T>(k.view),
        TensorView<const T>(v.view), out.view, o);
    EXPECT_EQ(ran, a == LinearAlgorithm::kAuto ? LinearAlgorithm::kChunked : a);
    return out;
  }
};

template <class T>
void check(const LinearDims& d, const LinearOptions& o, std::mt19937& rng,
           Layout layout = Layout::kBHSD) {
  LinearCase<T> c(d, rng, layout);
  const std::vector<double> ref = c.reference(o);
  SCOPED_TRACE("B=" + std::to_string(d.B) + " Hq=" + std::to_string(d.Hq) +
               " Hkv=" + std::to_string(d.Hkv) + " Sq=" + std::to_string(d.Sq) +
               " Skv=" + std::to_string(d.Skv) + " D=" + std::to_string(d.D) +
               " Dv=" + std::to_string(d.Dv) + (o.causal ? " causal" : "") +
               " map=" + std::to_string(int(o.feature_map)));
  const Buffer<T> naive = c.run(o, LinearAlgorithm::kNaive);
  const double naive_err = rel_error<T>(ref, naive.view);
  // float32 sums over <= 300 keys; 16-bit outputs: half an ulp of out.
  const double tol = std::is_same_v<T, float>      ? 1e-5
                     : std::is_same_v<T, bfloat16> ? 1.0 / 128
                                                   : 1.0 / 512;
  EXPECT_LE(naive_err, tol);
  const Buffer<T> fast = c.run(o, LinearAlgorithm::kChunked);
  EXPECT_LE(rel_error<T>(ref, fast.view), 2 * naive_err + 1e-6);
}

const std::vector<LinearDims>& dims() {
  static const std::vector<LinearDims> d = {
      {1, 1, 1, 1, 1, 8, 8},         {2, 4, 2, 63, 63, 16, 16},
      {1, 2, 2, 64, 64, 32, 17},     {1, 6, 3, 65, 65, 33, 40},
      {1, 4, 1, 129, 129, 64, 64},   {2, 2, 1, 300, 300, 16, 24},
      {1, 8, 8, 1100, 1100, 16, 16},  // more than 16 chunks: several per
                                      // segment
  };
  return d;
}

TEST(Linear, MatchesReference) {
  std::mt19937 rng(90);
  for (const LinearDims& d : dims()) {
    for (bool causal : {false, true}) {
      LinearOptions o;
      o.causal = causal;
      check<float>(d, o, rng);
    }
  }
}

TEST(Linear, CrossAttentionLengths) {
  std::mt19937 rng(91);
  for (auto [Sq, Skv] :
       {std::pair<int64_t, int64_t>{1, 300}, {70, 5}, {130, 1000}}) {
    check<float>({2, 4, 2, Sq, Skv, 32, 32}, {}, rng, Layout::kBSHD);
  }
}

TEST(Linear, FeatureMapsAndEps) {
  std::mt19937 rng(92);
  const LinearDims d{1, 4, 2, 130, 130, 32, 32};
  for (bool causal : {false, true}) {
    LinearOptions relu;
    relu.causal = causal;
    relu.feature_map = FeatureMap::kRelu;
    relu.eps = 1e-3f;
    check<float>(d, relu, rng);
    LinearOptions custom;
    custom.causal = causal;
    custom.feature_map = FeatureMap::kCustom;
    custom.custom = softplus;
    custom.custom_context = &kBeta;
    check<float>(d, custom, rng);
  }
}

TEST(Linear, ReluRowsWithNoWeightAreZero) {
  // All-negative queries under relu: every denominator 0, every output 0.
  std::mt19937 rng(93);
  LinearCase<float> c({1, 2, 1, 70, 70, 16, 16}, rng);
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t i = 0; i < 70; ++i)
      for (int64_t x = 0; x < 16; ++x)
        c.q.view(0, h, i, x) = -1.0f - std::fabs(c.q.view(0, h, i, x));
  LinearOptions o;
  o.feature_map = FeatureMap::kRelu;
  for (bool causal : {false, true}) {
    o.causal = causal;
    const Buffer<float> out = c.run(o, LinearAlgorithm::kChunked);
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t i = 0; i < 70; ++i)
        for (int64_t x = 0; x < 16; ++x) ASSERT_EQ(out.view(0, h, i, x), 0.0f);
  }
}

TEST(Linear, SixteenBitInputs) {
  std::mt19937 rng(94);
  for (bool causal : {false, true}) {
    LinearOptions o;
    o.causal = causal;
    check<bfloat16>({1, 4, 2, 200, 200, 64, 64}, o, rng);
    check<float16>({1, 4, 2, 200, 200, 64, 64}, o, rng);
  }
}

TEST(Linear, SameBitsOnOneAndTwoThreads) {
  std::mt19937 rng(95);
  LinearCase<float> c({1, 4, 2, 1100, 1100, 32, 32}, rng);
  for (bool causal : {false, true}) {
    LinearOptions o;
    o.causal = causal;
    const Buffer<float> one = c.run(o, LinearAlgorithm::kChunked, 1);
    const Buffer<float> two = c.run(o, LinearAlgorithm::kChunked, 2);
    ASSERT_EQ(one.storage.size(), two.storage.size());
    EXPECT_EQ(std::memcmp(one.storage.data(), two.storage.data(),
                          one.storage.size() * sizeof(float)),
              0);
  }
}

// Token by token, in uneven chunks, or all at once: the same outputs as one
// causal call, within the tolerance rule; and the state holds the sums.
TEST(LinearState, DecodingEqualsCausalPrefill) {
  std::mt19937 rng(96);
  const LinearDims d{2, 4, 2, 150, 150, 16, 24};
  LinearCase<float> c(d, rng);
  LinearOptions o;
  o.causal = true;
  const std::vector<double> ref = c.reference(o);
  const double naive_err =
      rel_error<float>(ref, c.run(o, LinearAlgorithm::kNaive).view);
  for (const std::vector<int64_t>& steps :
       {std::vector<int64_t>(150, 1),
        std::vector<int64_t>{1, 63, 64, 2, 20},
        {150}}) {
    LinearState state(d.B, d.Hkv, d.D, d.Dv);
    Buffer<float> out =
        make_buffer<float>(d.B, d.Hq, d.Sq, d.Dv, Layout::kBHSD);
    poison(out.storage);
    int64_t at = 0;
    for (int64_t n : steps) {
      const auto rows = [&](auto view, int64_t H) {
        return decltype(view)(view.row(0, 0, at), {d.B, H, n, view.extent(3)},
                              view.strides());
      };
      state.append(TensorView<const float>(rows(c.q.view, d.Hq)),
                   TensorView<const float>(rows(c.k.view, d.Hkv)),
                   TensorView<const float>(rows(c.v.view, d.Hkv)),
                   rows(out.view, d.Hq));
      at += n;
    }
    EXPECT_EQ(state.length(), 150);
    EXPECT_LE(rel_error<float>(ref, out.view), 2 * naive_err + 1e-6)
        << steps.size() << " steps";
    // z of (b = 1, kv head 1) is the sum of phi(k) over every token.
    const float* st = state.state(1, 1);
    for (int64_t x = 0; x < d.D; ++x) {
      double want = 0;
      for (int64_t j = 0; j < d.Skv; ++j) {
        const double kv = c.k.view(1, 1, j, x);
        want += kv > 0 ? kv + 1 : std::exp(kv);
      }
      EXPECT_NEAR(st[d.D * d.Dv + x], want, 1e-4 * want);
    }
    state.reset();
    EXPECT_EQ(state.length(), 0);
    EXPECT_EQ(state.state(0, 0)[0], 0.0f);
  }
}

TEST(Linear, BadArgumentsAreErrors) {
  std::vector<float> x(2 * 4 * 8 * 16), y(x.size());
  const auto in = TensorView<const float>::bhsd(x.data(), 2, 4, 8, 16);
  const auto out = TensorView<float>::bhsd(y.data(), 2, 4, 8, 16);
  const auto expect = [](const std::function<void()>& f,
                         const std::string& what) {
    try {
      f();
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos)
          << e.what();
    }
  };
  LinearOptions o;
  o.feature_map = FeatureMap::kCustom;
  expect([&] { linear_attention(in, in, in, out, o); },
         "options.custom: kCustom needs");
  o = {};
  o.eps = -1.0f;
  expect([&] { linear_attention(in, in, in, out, o); }, "options.eps");
  o = {};
  o.causal = true;
  const auto k5 = TensorView<const float>::bhsd(x.data(), 2, 4, 5, 16);
  expect([&] { linear_attention(in, k5, k5, out, o); },
         "attn::linear_attention: q: causal linear attention needs as many "
         "queries");
  const auto k3 = TensorView<const float>::bhsd(x.data(), 2, 3, 8, 16);
  expect([&] { linear_attention(in, k3, k3, out, {}); },
         "attn::linear_attention: q: query heads");
  expect([&] { LinearState(0, 1, 16, 16); }, "attn::LinearState: batch");
  LinearState s(2, 2, 16, 16);
  expect([&] { s.append(in, in, in, out); },
         "attn::LinearState::append: k: expected KV heads 2");
  expect([&] { s.state(2, 0); }, "outside");
}

}  // namespace
}  // namespace attn::testing
