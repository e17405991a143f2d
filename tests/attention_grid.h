// The grid behind the algorithm tests: option sets that exercise every
// rule of docs/semantics.md, shapes, layouts, and one case runner that
// compares any algorithm with the float64 reference on NaN-poisoned outputs.
#ifndef ATTN_TESTS_ATTENTION_GRID_H_
#define ATTN_TESTS_ATTENTION_GRID_H_

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace attn::testing {

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
inline void random_mask(OptionSet& s, Extents e, double p, std::mt19937& rng) {
  const int64_t n = e[0] * e[1] * e[2] * e[3];
  s.mask = std::make_unique<bool[]>(n);
  std::bernoulli_distribution keep(p);
  for (int64_t i = 0; i < n; ++i) s.mask[i] = keep(rng);
  s.o.mask = TensorView<const bool>(s.mask.get(), e,
                                    {e[1] * e[2] * e[3], e[2] * e[3], e[3], 1});
}

inline const std::vector<std::pair<std::string, OptionBuilder>>& option_sets() {
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
      // Logits of std ~8.5 whatever D (a softmax close to one-hot): the
      // score's rounding decides the error here.
      {"large_logits",
       [](OptionSet& s, const Dims& d, std::mt19937&) {
         s.o.scale = 8.5f / std::sqrt(static_cast<float>(d.D));
       }},
      {"large_logits_causal",
       [](OptionSet& s, const Dims& d, std::mt19937&) {
         s.o.causal = true;
         s.o.scale = 8.5f / std::sqrt(static_cast<float>(d.D));
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

inline std::string describe(const Dims& d, const std::string& opt,
                            Placement p) {
  return "B=" + std::to_string(d.B) + " Hq=" + std::to_string(d.Hq) +
         " Hkv=" + std::to_string(d.Hkv) + " Sq=" + std::to_string(d.Sq) +
         " Skv=" + std::to_string(d.Skv) + " D=" + std::to_string(d.D) +
         " Dv=" + std::to_string(d.Dv) + " options=" + opt +
         (p.layout == Layout::kBSHD ? " bshd" : " bhsd") +
         (p.kv_in_larger_buffer ? " kv-view" : "");
}

template <class T>
struct RunResult {
  std::vector<T> out;      // [B, Hq, Sq, Dv] gathered from the view
  std::vector<float> lse;  // [B, Hq, Sq]
  ErrorStats err;
};

// Fresh random inputs for one shape and placement; run() calls any
// algorithm on them into NaN-poisoned outputs and measures its error.
template <class T>
class Case {
 public:
  Case(const Dims& d, Placement place, std::mt19937& rng,
       float input_scale = 1.0f)
      : d_(d), place_(place) {
    const int64_t pad = place.kv_in_larger_buffer ? 5 : 0;
    const int64_t lead = place.kv_in_larger_buffer ? 3 : 0;
    q_ = make_buffer<T>(d.B, d.Hq, d.Sq, d.D, place.layout);
    k_ = make_buffer<T>(d.B, d.Hkv, d.Skv, d.D, place.layout, pad, lead);
    v_ = make_buffer<T>(d.B, d.Hkv, d.Skv, d.Dv, place.layout, pad, lead);
    poison(k_.storage);  // padding stays NaN: reading it would show
    poison(v_.storage);
    fill_normal(q_.view, rng, input_scale);
    fill_normal(k_.view, rng, input_scale);
    fill_normal(v_.view, rng);
  }

  const Dims& dims() const { return d_; }
  TensorView<T> q() { return q_.view; }
  TensorView<T> k() { return k_.view; }
  TensorView<T> v() { return v_.view; }

  reference::Result reference(const AttentionOptions& o) {
    Buffer<T> out = make_buffer<T>(d_.B, d_.Hq, d_.Sq, d_.Dv, place_.layout);
    return reference_result<T>(q_.view, k_.view, v_.view, out.view, o);
  }

  RunResult<T> run(const AttentionOptions& options, Algorithm algorithm,
                   const reference::Result& ref, int threads = 0) {
    Buffer<T> out =
        make_buffer<T>(d_.B, d_.Hq, d_.Sq, d_.Dv, place_.layout, 2, 1);
    poison(out.storage);
    RunResult<T> r;
    r.lse.assign(d_.B * d_.Hq * d_.Sq, NAN);
    const auto lse =
        TensorView<float>::bhsd(r.lse.data(), d_.B, d_.Hq, d_.Sq, 1);
    AttentionOptions o = options;
    o.algorithm = algorithm;
    o.num_threads = threads;
    EXPECT_EQ(attention(q_.view, k_.view, v_.view, out.view, o, lse),
              algorithm);
    r.err = compare<T>(ref, out.view, lse);
    for (int64_t b = 0; b < d_.B; ++b)
      for (int64_t h = 0; h < d_.Hq; ++h)
        for (int64_t i = 0; i < d_.Sq; ++i)
          for (int64_t j = 0; j < d_.Dv; ++j)
            r.out.push_back(out.view(b, h, i, j));
    return r;
  }

 private:
  Dims d_;
  Placement place_;
  Buffer<T> q_, k_, v_;
};

// Runs naive and, unless it is naive, `algorithm` on one case. Naive must
// meet tolerance<T>(); a fast path may have at most twice naive's error
// plus 1e-6 (docs/testing.md).
template <class T>
void check(const Dims& d, const std::string& name, const OptionBuilder& build,
           Placement place, std::mt19937& rng, Algorithm algorithm) {
  OptionSet opts;
  build(opts, d, rng);
  Case<T> c(d, place, rng);
  const reference::Result ref = c.reference(opts.o);
  SCOPED_TRACE(describe(d, name, place));
  const RunResult<T> naive = c.run(opts.o, Algorithm::kNaive, ref);
  EXPECT_LE(naive.err.max_rel, tolerance<T>()) << "naive: " << naive.err.worst;
  EXPECT_LE(naive.err.lse_max_abs, 1e-5);
  EXPECT_TRUE(naive.err.lse_inf_match);
  if (algorithm == Algorithm::kNaive) return;
  const RunResult<T> fast = c.run(opts.o, algorithm, ref);
  EXPECT_LE(fast.err.max_rel, 2 * naive.err.max_rel + 1e-6)
      << algorithm_name(algorithm) << ": " << fast.err.worst;
  EXPECT_LE(fast.err.lse_max_abs, 2 * naive.err.lse_max_abs + 1e-6);
  EXPECT_TRUE(fast.err.lse_inf_match);
}

}  // namespace attn::testing

#endif  // ATTN_TESTS_ATTENTION_GRID_H_
